"""Benchmark of tlkit.tuning: flat memory over many trials, and shared features vs plain KerasTuner.

Two measurements, each in its own Python process so that neither sees the other's memory:

1. memory: 20 small trials (zoo:fashion_cnn on digits, 1 epoch each) with tlkit's trial loop;
   RSS (VmRSS of /proc/self/status) after every trial, after tlkit released the trial. The
   figure is RSS after trial 20 minus RSS after trial 2 (target: within 50 MB). The same
   run without tlkit's release of TensorFlow's per-trace gradient registrations (only
   KerasTuner's own clear_session) shows what the release buys.
2. speed: `small-similar` on a frozen ResNet50 (random weights: no internet here), the same
   search space and oracle seed twice: tlkit (the base's features computed once per search,
   every trial trains a head on them) against plain KerasTuner (a `keras_tuner.HyperModel`
   that builds base + head and fits on images, `keras_tuner.RandomSearch`). Prints the
   speed ratio (target >= 5x) and both best scores.

Results go to bench/results/tuning.json (with the summary rows `bench/run_all.py` prints).
It waits for a quiet machine first, as the other benchmarks do (`--no-wait` skips that;
`--quick` is a tiny smoke run). Benchmarks are not tests.

Usage:
    .venv/bin/python bench/bench_tuning.py                  # both parts
    .venv/bin/python bench/bench_tuning.py --part speed --trials 10 --epochs 5 --image-size 48
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def rss_mb():
    """Resident set size of this process in MB (VmRSS from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# 1. memory


def memory_part(trials, release=True):
    """RSS after each of `trials` small trials; returns a dict of the figures."""
    import contextlib

    import keras

    from tlkit import data, tuning

    if not release:
        @contextlib.contextmanager
        def clear_only():
            yield
            keras.backend.clear_session()

        tuning.release_trial_memory = clear_only
    ds = data.load("digits", image_size=16, channels=1, seed=0).select(per_class=40, seed=0)
    hm = tuning.make_hypermodel(model="zoo:fashion_cnn", image_size=16, epochs=1,
                                fix=["filters=16"])
    hm.set_data(ds)
    out = tempfile.mkdtemp(prefix="tlkit_bench_mem_")
    tuner = tuning.make_tuner(hm, max_trials=trials, epochs=1, directory=out, verbose=0)
    rss = []
    end = tuner.on_trial_end

    def record(trial):
        end(trial)
        rss.append(round(rss_mb(), 1))
        print(f"  trial {len(rss):2d}: RSS {rss[-1]:7.1f} MB", flush=True)

    tuner.on_trial_end = record
    started = time.perf_counter()
    tuner.search(epochs=1)
    return {"trials": len(rss), "release": release, "rss_mb": rss,
            "rss_after_2_mb": rss[1], "rss_after_last_mb": rss[-1],
            "growth_2_to_last_mb": round(rss[-1] - rss[1], 1),
            "seconds": round(time.perf_counter() - started, 1),
            "setup": "zoo:fashion_cnn (filters 16) on digits 16x16x1, 400 train images, "
                     "1 epoch per trial, random search"}


# ---------------------------------------------------------------------------------------------
# 2. speed


def plain_hypermodel_class():
    """A plain KerasTuner HyperModel over the same space as tlkit's small-similar one."""
    import keras
    import keras_tuner as kt

    from tlkit import data as data_lib
    from tlkit.models.blocks import BN_PLACEMENTS, classifier_head
    from tlkit.tuning import DROPOUTS, HEAD_WIDTHS, LEARNING_RATES

    class PlainSmallSimilar(kt.HyperModel):
        """Frozen base + head built every trial, trained on images every epoch."""

        def __init__(self, base, num_classes, dataset, batch_size, seed):
            super().__init__(name="plain")
            self.base, self.num_classes, self.dataset = base, num_classes, dataset
            self.batch_size, self.seed = batch_size, seed

        def build(self, hp):
            keras.utils.set_random_seed(self.seed)
            dropout = hp.Choice("dropout", list(DROPOUTS), default=0.2)
            width = hp.Choice("head_width", list(HEAD_WIDTHS), default=0)
            bn = hp.Choice("head_bn", list(BN_PLACEMENTS), default="none",
                           parent_name="head_width", parent_values=list(HEAD_WIDTHS[1:]))
            lr = hp.Float("learning_rate", *LEARNING_RATES, sampling="log", default=1e-3)
            self.base.trainable = False
            inputs = keras.Input(self.base.input_shape[1:], name="image")
            x = self.base(inputs, training=False)
            outputs = classifier_head(x, self.num_classes, dense=(width,) if width else (),
                                      dropout=dropout, bn=bn or "none", name="head")
            model = keras.Model(inputs, outputs)
            model.compile(optimizer=keras.optimizers.Adam(lr),
                          loss=keras.losses.SparseCategoricalCrossentropy(),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
            return model

        def fit(self, hp, model, *args, **kwargs):
            ds = self.dataset
            train = data_lib.pipeline(ds.x_train, ds.y_train, batch_size=self.batch_size,
                                      shuffle=True, seed=self.seed, autotune=False)
            val = data_lib.pipeline(ds.x_val, ds.y_val, batch_size=self.batch_size,
                                    autotune=False)
            return model.fit(train, validation_data=val, shuffle=False, verbose=0, **kwargs)

    return PlainSmallSimilar


def speed_part(backbone, image_size, trials, epochs, per_class, batch_size=32, seed=0):
    """Time the same small-similar search with shared features (tlkit) and plain KerasTuner."""
    import keras_tuner as kt

    from tlkit import data, tuning

    ds = data.load("digits", image_size=image_size, channels=3, seed=seed)
    if per_class:
        ds = ds.select(per_class=per_class, seed=seed)
    common = dict(backbone=backbone, strategy="small-similar", weights=None,
                  image_size=image_size, epochs=epochs, batch_size=batch_size, seed=seed)
    out = pathlib.Path(tempfile.mkdtemp(prefix="tlkit_bench_speed_"))

    # tlkit: features once per search, heads on features.
    hm = tuning.make_hypermodel(**common)
    hm.set_data(ds)
    t0 = time.perf_counter()
    tuner = tuning.make_tuner(hm, max_trials=trials, epochs=epochs, directory=out / "tlkit",
                              seed=seed, verbose=1)
    tuner.search(epochs=epochs)
    tlkit_seconds = time.perf_counter() - t0
    tlkit_best = tuner.oracle.get_best_trials(1)[0]
    tlkit_rows = tuning.trials_table(tuner.oracle)
    base = hm.backbone.model

    # Plain KerasTuner: the same space and oracle seed, base + head on images.
    plain_cls = plain_hypermodel_class()
    t0 = time.perf_counter()
    plain = kt.RandomSearch(plain_cls(base, ds.num_classes, ds, batch_size, seed),
                            objective=kt.Objective("val_accuracy", "max"), max_trials=trials,
                            seed=tuning.oracle_seed(seed), directory=str(out / "plain"),
                            project_name="plain")
    plain.oracle.verbose = 0
    plain.search(epochs=epochs)
    plain_seconds = time.perf_counter() - t0
    plain_best = plain.oracle.get_best_trials(1)[0]
    plain_rows = tuning.trials_table(plain.oracle)
    same = [a["hyperparameters"] == b["hyperparameters"] for a, b in zip(tlkit_rows, plain_rows)]
    return {
        "setup": f"small-similar, {backbone} (random weights) at {image_size}x{image_size}, "
                 f"digits ({len(ds.x_train)} train / {len(ds.x_val)} val images), {trials} "
                 f"random-search trials x {epochs} epochs, batch {batch_size}",
        "tlkit_shared_features": {"seconds": round(tlkit_seconds, 1),
                                  "best_val_accuracy": round(float(tlkit_best.score), 4),
                                  "best_hyperparameters": tlkit_best.hyperparameters.values,
                                  "scores": [r["score"] for r in tlkit_rows]},
        "plain_kerastuner": {"seconds": round(plain_seconds, 1),
                             "best_val_accuracy": round(float(plain_best.score), 4),
                             "best_hyperparameters": plain_best.hyperparameters.values,
                             "scores": [r["score"] for r in plain_rows]},
        "speed_ratio": round(plain_seconds / tlkit_seconds, 2),
        "same_hyperparameters_per_trial": all(same),
    }


# ---------------------------------------------------------------------------------------------


def run_child(args):
    """Run one part in a fresh Python process; return its JSON result."""
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, __file__, "--child", *args, "--json-out", path]
    subprocess.run(cmd, check=True)
    result = json.loads(pathlib.Path(path).read_text())
    os.remove(path)
    return result


def main(argv=None):
    """Run the benchmark parts, print the figures and write bench/results/tuning.json."""
    import common

    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--part", choices=("memory", "speed", "all"), default="all")
    p.add_argument("--memory-trials", type=int, default=20)
    p.add_argument("--backbone", default="resnet50",
                   help="resnet50: its random-weight features are informative (logistic "
                        "regression ~0.97 on digits); MobileNetV2's are ~1e-12 in scale")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--per-class", type=int, default=80, help="training images per class")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--no-release", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.memory_trials, args.trials, args.epochs = 4, 3, 2
        args.per_class, args.image_size = 20, 32

    if args.child:
        if args.part == "memory":
            result = memory_part(args.memory_trials, release=not args.no_release)
        else:
            result = speed_part(args.backbone, args.image_size, args.trials, args.epochs,
                                args.per_class, seed=args.seed)
        pathlib.Path(args.json_out).write_text(json.dumps(result, default=str))
        return 0

    load = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    payload, rows = {"load": load}, []
    if args.part in ("memory", "all"):
        mem = []
        for release in (True, False):
            print(f"memory: {args.memory_trials} trials, "
                  f"{'with' if release else 'WITHOUT'} tlkit's release of trial graphs")
            child = ["--part", "memory", "--memory-trials", str(args.memory_trials)]
            mem.append(run_child(child + ([] if release else ["--no-release"])))
        growth, plain = mem[0]["growth_2_to_last_mb"], mem[1]["growth_2_to_last_mb"]
        payload["memory"] = {"tlkit": mem[0], "clear_session_only": mem[1], "target_mb": 50,
                             "ok": growth <= 50}
        print(f"memory: RSS after trial 2 {mem[0]['rss_after_2_mb']:.0f} MB, after trial "
              f"{mem[0]['trials']} {mem[0]['rss_after_last_mb']:.0f} MB: {growth:+.0f} MB "
              f"with tlkit (clear_session only: {plain:+.0f} MB)")
        rows.append(common.row(
            "tuning-memory", f"RSS growth from trial 2 to trial {mem[0]['trials']} "
            f"(tlkit {growth:+.0f} MB, clear_session only {plain:+.0f} MB)", None,
            "<= 50 MB", growth <= 50, None, mem[0]["setup"]))
    if args.part in ("speed", "all"):
        print(f"speed: {args.trials} trials x {args.epochs} epochs, small-similar, "
              f"{args.backbone} at {args.image_size}px")
        sp = run_child(["--part", "speed", "--backbone", args.backbone, "--image-size",
                        str(args.image_size), "--trials", str(args.trials), "--epochs",
                        str(args.epochs), "--per-class", str(args.per_class),
                        "--seed", str(args.seed)])
        sp["target_ratio"] = 5
        sp["ok"] = sp["speed_ratio"] >= 5
        payload["speed"] = sp
        t, pl = sp["tlkit_shared_features"], sp["plain_kerastuner"]
        print(f"speed: tlkit shared features {t['seconds']:.1f} s (best val_accuracy "
              f"{t['best_val_accuracy']:.4f}), plain KerasTuner {pl['seconds']:.1f} s (best "
              f"val_accuracy {pl['best_val_accuracy']:.4f}): {sp['speed_ratio']:.1f}x faster")
        rows.append(common.row(
            "tuning-small-similar", "KerasTuner search, features shared by all trials vs "
            "plain KerasTuner (base + head on images), same space and seed", sp["speed_ratio"],
            ">= 5x", sp["ok"], f"{t['best_val_accuracy']:.3f} vs {pl['best_val_accuracy']:.3f}",
            sp["setup"]))
    payload["load"].update(watch.stop())
    payload["rows"] = rows
    path = common.write("tuning", payload, args)
    common.print_rows(rows)
    print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
