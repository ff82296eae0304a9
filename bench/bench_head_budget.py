"""What converging costs: small-similar's default budget by steps on 3,000 images against the
floor (start-up + one forward pass of the base) and against the old fixed 10 epochs.

Issue 22's target: the head phase under the default budget costs at most 1.2x the floor, so
that training the head to convergence does not give back the speed of caching the features.
The three sides run in one process, interleaved three times (floor, default, 10 epochs),
after a warm-up; each figure is the median of its three runs. Training time = wall time
minus the test evaluation, as in bench_small_similar.py, whose sides this reuses.

Run: `.venv/bin/python bench/bench_head_budget.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)
import bench_small_similar as side

NAME = "head-budget"
TARGET = 1.2
BATCH = 64


def main():
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    per_class = 20 if args.quick else 600
    fashion = common.fashion()
    source, info = common.source_model(fashion, common.source_config(args))
    ds = common.subset(fashion, common.TARGET_CLASSES, per_class, max(5, per_class // 10),
                       40 if args.quick else 200, args.seed)
    print(f"bench {NAME}: small-similar, default budget vs 10 epochs vs the floor; "
          f"{common.counts(ds)}")
    tiny = common.subset(fashion, common.TARGET_CLASSES, 20, 10, 10, args.seed)
    side.run_tlkit(tiny, source, 1, BATCH, args.seed)  # warm-up
    side.run_floor(tiny, source, BATCH)
    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    floors, defaults, fixed = [], [], []
    for _ in range(side.REPEATS):
        floors.append(common.watched(side.run_floor, ds, source, BATCH))
        defaults.append(common.watched(lambda: side.run_tlkit(ds, source, None, BATCH,
                                                              args.seed)[0]))
        fixed.append(common.watched(lambda: side.run_tlkit(ds, source, 10, BATCH,
                                                           args.seed)[0]))
    load = {**quiet, **watch.stop()}
    floor = side.median_of(floors, "total_s")
    default_s = side.median_of(defaults, "train_s")
    fixed_s = side.median_of(fixed, "train_s")
    ratio = default_s / floor
    steps = [ph.get("steps") for ph in defaults[0]["phases"]]
    note = (f"default {default_s:.1f} s ({steps} steps, {defaults[0]['epochs_run']} epochs, "
            f"accuracy {defaults[0]['accuracy']:.4f}); 10 epochs {fixed_s:.1f} s (accuracy "
            f"{fixed[0]['accuracy']:.4f}); floor {floor:.1f} s")
    checks = [common.row(NAME, f"small-similar default budget on {len(ds.y_train):,} images: "
                               f"training time / floor", ratio, f"<= {TARGET:g}x",
                         ratio <= TARGET, note=note),
              common.row(NAME, "default budget / the old 10 epochs: training time",
                         default_s / fixed_s, "report", True,
                         note=f"accuracy {defaults[0]['accuracy']:.4f} vs "
                              f"{fixed[0]['accuracy']:.4f}")]
    for c in checks:
        print(f"  {c['comparison']}: {c['ratio']}x (target {c['target']}); {c['note']}")
    path = common.write(NAME, {"source": info, "data": common.counts(ds), "batch_size": BATCH,
                               "checks": checks, "load": load,
                               "seconds": {"floor": floors, "default": defaults,
                                           "ten_epochs": fixed}}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
