"""precision: what `--precision auto` measures and decides here, and whether bfloat16 changes
accuracy.

Two parts, in one process:

1. The probe (`tlkit.training.precision.probe`, the one `auto` runs): the median seconds of
   a training step (batch 32, every layer training, `train_on_batch` steps timed one by one
   after two warm-up steps, so an end-of-epoch stall cannot enter them) in float32 and in
   mixed_bfloat16, for MobileNetV2 at 96 and 160 px, ResNet50 at 96 px (random weights: the
   speed does not depend on them) and the demo's VGG at 28 px. Reported: bfloat16's speedup
   (float32 s / bfloat16 s) and what `auto` would choose from it (bfloat16 at >= 1.1x).
2. Accuracy: `tlkit.finetune` with `precision="float32"` and `"mixed_bfloat16"` on the
   demo's large situations (Fashion-MNIST classes 2,3,6,7,9, 1,000 training images per
   class, 200 val and 500 test per class, the cached source model as the base) with
   `large-similar` and `large-dissimilar`, 3 seeds; the difference of the mean test
   accuracies (target: within 0.3 pp), and the whole-call seconds as float32 s / bfloat16 s.

Run: `.venv/bin/python bench/bench_precision.py` (`--quick`: one seed, small sizes).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import statistics
import time

NAME = "precision"
PROBES = (("mobilenet_v2", 96), ("mobilenet_v2", 160), ("resnet50", 96))
SEEDS = (0, 1, 2)
STRATEGIES = ("large-similar", "large-dissimilar")
ACCURACY_PP = 0.3


def probes(quick, source):
    import keras

    from tlkit.models import backbones
    from tlkit.training import precision

    out = []
    cases = [(name, size, None) for name, size in PROBES] + [("demo_vgg (source)", 28, source)]
    for name, size, path in (cases[:1] + cases[-1:] if quick else cases):
        bb = backbones.build(str(path) if path else name, (size, size, 3 if not path else 1),
                             weights=None)
        got = precision.probe(bb.model, 32, steps=2 if quick else 8)
        speedup = got["float32"] / got["mixed_bfloat16"]
        auto = "mixed_bfloat16" if speedup >= precision.PROBE_MIN_SPEEDUP else "float32"
        out.append({"model": name, "image_size": size,
                    "seconds_per_step": {k: round(v, 4) for k, v in got.items()},
                    "bf16_speedup": round(speedup, 2), "auto_chooses": auto})
        print(f"  {name} {size} px: float32 {got['float32'] * 1e3:.0f} ms/step, bfloat16 "
              f"{got['mixed_bfloat16'] * 1e3:.0f} ms/step ({speedup:.2f}x): auto -> {auto}",
              flush=True)
        keras.backend.clear_session()
    return out


def accuracy(fashion, source, quick):
    import keras

    import tlkit

    per_class, seeds = (200, SEEDS[:1]) if quick else (1000, SEEDS)
    runs = []
    for strategy in STRATEGIES:
        for seed in seeds:
            ds = common.subset(fashion, common.TARGET_CLASSES, per_class, 200, 500, seed)
            for policy in ("float32", "mixed_bfloat16"):
                t0 = time.perf_counter()
                res = tlkit.finetune(data=ds, backbone=str(source), weights=None,
                                     strategy=strategy, seed=seed, precision=policy,
                                     calibrate="none", verbose=0)
                runs.append({"strategy": strategy, "seed": seed, "policy": policy,
                             "accuracy": res.report["accuracy"],
                             "seconds": round(time.perf_counter() - t0, 2)})
                print(f"  {strategy} seed {seed} {policy}: accuracy "
                      f"{res.report['accuracy']:.4f} ({runs[-1]['seconds']:.1f} s)", flush=True)
                del res
                keras.backend.clear_session()
    return runs


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    fashion = common.fashion()
    source, source_info = common.source_model(
        fashion, common.QUICK_SOURCE if args.quick else common.SourceConfig())
    load = common.wait_for_quiet(args)
    print("probe (train_on_batch steps, batch 32):")
    probe_rows = probes(args.quick, source)
    print("accuracy (tlkit.finetune, float32 vs mixed_bfloat16):")
    runs = accuracy(fashion, source, args.quick)
    rows = [common.row(NAME, f"{p['model']} {p['image_size']} px training step: float32 s / "
                             f"mixed_bfloat16 s", p["bf16_speedup"], "report", None,
                       note=f"auto: {p['auto_chooses']}") for p in probe_rows]
    for strategy in STRATEGIES:
        mine = {pol: [r for r in runs if r["strategy"] == strategy and r["policy"] == pol]
                for pol in ("float32", "mixed_bfloat16")}
        acc = {pol: statistics.mean(r["accuracy"] for r in rs) for pol, rs in mine.items()}
        secs = {pol: statistics.mean(r["seconds"] for r in rs) for pol, rs in mine.items()}
        diff = 100 * (acc["mixed_bfloat16"] - acc["float32"])
        rows.append(common.row(
            NAME, f"{strategy}, 1,000 per class: float32 s / mixed_bfloat16 s (whole call)",
            secs["float32"] / secs["mixed_bfloat16"], f"accuracy within {ACCURACY_PP} pp",
            abs(diff) <= ACCURACY_PP,
            f"float32 {acc['float32']:.4f} / bfloat16 {acc['mixed_bfloat16']:.4f} "
            f"({diff:+.2f} pp)", f"{len(mine['float32'])} seed(s), demo_vgg source at 28 px"))
    common.print_rows(rows)
    path = common.write(NAME, {"description": "--precision: the probe's step times and auto's "
                                              "choice, and bfloat16's accuracy",
                               "source": source_info, "load": load, "probes": probe_rows,
                               "runs": runs, "rows": rows}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
