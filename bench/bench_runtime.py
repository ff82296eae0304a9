"""runtime: the same tlkit fine-tuning runs under each runtime choice tlkit could default to:
the Keras backend (TensorFlow or JAX), XLA (`jit_compile`), and TensorFlow's thread pools.

Issue 26 asks to re-measure `jit_compile` per strategy and the intra/inter-op threads on 2
cores, making the winner the default, and whether JAX trains at least 1.3x faster with equal
accuracy (then the README says so and offers `--backend`). Every run is a child process
(a process fixes its backend and thread pools once, when TensorFlow or JAX starts) calling
`tlkit.finetune` on the same data, the same source model (`common.source_model`: the demo's
VGG trained on Fashion-MNIST classes 0,1,4,5,8, as `backbone=source.h5`), the same seed,
`precision="float32"` and no augmentation. Target data: classes 2,3,6,7,9, `--per-class`
training images each (default 500), 200 validation and 500 test images per class (an `npz:`
file every child reads).

Configurations (`CONFIGS`), each against tlkit's defaults (TensorFlow, no XLA, TensorFlow's
own thread pools) in A B B A order, so a slow spell of the machine hits both alike; each
side's figure is the mean of its two runs:
- `jax`: `KERAS_BACKEND=jax` (Keras compiles every step with XLA there);
- `xla`: `jit_compile=True`;
- `threads 1+1`, `threads 2+1`: intra-op + inter-op threads set before TensorFlow starts
  (`tf.config.threading`); the default lets TensorFlow size both pools from the cores.
For `large-similar` (head, then the last stage) and `large-dissimilar` (everything).
Reported: the training seconds (the phases' `seconds` in report.json, feature caching
included) as default s / configuration s (above 1: the configuration is faster), the
whole-call seconds likewise (start-up and tracing included), and both accuracies.

Run: `.venv/bin/python bench/bench_runtime.py` (`--only jax,xla` to choose; `--quick`: 100
images per class, 2 epochs).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import json
import os
import subprocess
import sys
import tempfile

NAME = "runtime"
STRATEGIES = ("large-similar", "large-dissimilar")
CONFIGS = {"jax": {"env": {"KERAS_BACKEND": "jax"}},
           "xla": {"kwargs": {"jit_compile": True}},
           "threads 1+1": {"threads": (1, 1)},
           "threads 2+1": {"threads": (2, 1)}}
DEFAULT = {}
BACKEND_TARGET = 1.3  # a backend this much faster, at equal accuracy, is worth a --backend

CHILD = """
import json, sys, time
t0 = time.perf_counter()
request = json.loads(sys.argv[1])
if request.get("threads"):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(request["threads"][0])
    tf.config.threading.set_inter_op_parallelism_threads(request["threads"][1])
import tlkit
res = tlkit.finetune(data=request["data"], backbone=request["source"], weights=None,
                     strategy=request["strategy"], epochs=request["epochs"],
                     seed=request["seed"], augment=False, calibrate="none",
                     precision="float32", verbose=0, **request.get("kwargs", {}))
import keras
fit_seconds = sum(p["seconds"] for p in res.report["fit"]["phases"])
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "fit_seconds": fit_seconds,
                              "call_seconds": time.perf_counter() - t0,
                              "accuracy": res.report["accuracy"]}))
"""


def child(config, request):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           **config.get("env", {})}
    request = {**request, "kwargs": config.get("kwargs", {}),
               "threads": config.get("threads")}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(request)], env=env,
                          capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"run {config} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(line[0][len("RESULT "):])
    assert out["backend"] == env["KERAS_BACKEND"], out
    return out


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--only", default=",".join(CONFIGS),
                   help=f"configurations to run, comma-separated (of {', '.join(CONFIGS)})")
    args = p.parse_args()
    if args.quick:
        args.per_class, args.epochs = 100, 2
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"--only: unknown configuration(s) {unknown}; valid: {list(CONFIGS)}")
    import numpy as np

    fashion = common.fashion()
    source, source_info = common.source_model(
        fashion, common.QUICK_SOURCE if args.quick else common.SourceConfig())
    ds = common.subset(fashion, common.TARGET_CLASSES, args.per_class, 200, 500, args.seed)
    load = common.wait_for_quiet(args)
    rows, runs = [], []
    note = (f"{len(ds.y_train):,} training images, {args.epochs} epochs, source demo_vgg at "
            f"28 px, float32, mean of 2 runs each (A B B A)")
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "target.npz")
        np.savez(npz, x=np.asarray(ds.x_train), y=ds.y_train, x_val=np.asarray(ds.x_val),
                 y_val=ds.y_val, x_test=np.asarray(ds.x_test), y_test=ds.y_test,
                 class_names=np.array(ds.class_names))
        for name in names:
            for strategy in STRATEGIES:
                request = {"data": f"npz:{npz}", "source": str(source), "strategy": strategy,
                           "epochs": args.epochs, "seed": args.seed}
                got = {"default": [], name: []}
                for side in ("default", name, name, "default"):  # A B B A
                    r = child(DEFAULT if side == "default" else CONFIGS[side], request)
                    got[side].append(r)
                    runs.append({"configuration": side, "strategy": strategy, **r})
                    print(f"  {strategy}, {side}: fit {r['fit_seconds']:.1f} s, call "
                          f"{r['call_seconds']:.1f} s, accuracy {r['accuracy']:.4f}",
                          flush=True)
                mean = {s: {k: float(np.mean([r[k] for r in got[s]]))
                            for k in ("fit_seconds", "call_seconds", "accuracy")}
                        for s in got}
                acc = (f"default {mean['default']['accuracy']:.4f} / {name} "
                       f"{mean[name]['accuracy']:.4f}")
                target = (f"report; >= {BACKEND_TARGET}x gets --backend" if name == "jax"
                          else "> 1 would become the default")
                rows.append(common.row(
                    NAME, f"{strategy} training: default s / {name} s",
                    mean["default"]["fit_seconds"] / mean[name]["fit_seconds"], target, None,
                    acc, note))
                rows.append(common.row(
                    NAME, f"{strategy} whole call (start-up, tracing): default s / {name} s",
                    mean["default"]["call_seconds"] / mean[name]["call_seconds"], "report",
                    None, acc, note))
    common.print_rows(rows)
    path = common.write(NAME, {"description": "tlkit fine-tuning under each runtime choice "
                                              "(backend, XLA, threads) against the defaults",
                               "source": source_info, "load": load, "runs": runs,
                               "rows": rows}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
