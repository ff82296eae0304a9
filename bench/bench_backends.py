"""backends: the same tlkit fine-tuning runs on Keras's TensorFlow and JAX backends.

Issue 26 asks whether one backend trains at least 1.3x faster with equal accuracy (then the
README says so and offers `--backend`). A process chooses its Keras backend once, at import,
so every run is a child process (`KERAS_BACKEND=tensorflow` or `jax`) calling
`tlkit.finetune` on the same data, the same source model (`common.source_model`: the demo's
VGG trained on Fashion-MNIST classes 0,1,4,5,8, as `backbone=source.h5`), the same seed and
settings. Target: classes 2,3,6,7,9, `--per-class` training images each (default 500), 200
validation and 500 test images per class (an `npz:` file both backends read).

For each strategy that trains base layers (`large-similar`: head, then the last stage;
`large-dissimilar`: everything), the two backends run in A B B A order, so a slow spell of
the machine hits both alike; each side's figure is the mean of its two runs. Reported: the
training seconds (`report["fit"]["seconds"]`: the phases, feature caching included) as
TensorFlow s / JAX s (above 1: JAX is faster), the whole-call seconds likewise (start-up and
tracing included), and the test accuracy of each.

Run: `.venv/bin/python bench/bench_backends.py` (`--quick`: 100 images per class, 2 epochs).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import json
import os
import subprocess
import sys
import tempfile

NAME = "backends"
BACKENDS = ("tensorflow", "jax")
STRATEGIES = ("large-similar", "large-dissimilar")
TARGET = 1.3  # a backend this much faster, at equal accuracy, is worth a --backend flag

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import tlkit
request = json.loads(sys.argv[1])
res = tlkit.finetune(data=request["data"], backbone=request["source"], weights=None,
                     strategy=request["strategy"], epochs=request["epochs"],
                     seed=request["seed"], augment=False, calibrate="none",
                     precision="float32", verbose=0)
import keras
fit_seconds = sum(p["seconds"] for p in res.report["fit"]["phases"])
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "fit_seconds": fit_seconds,
                              "call_seconds": time.perf_counter() - t0,
                              "accuracy": res.report["accuracy"]}))
"""


def child(backend, request):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(request)], env=env,
                          capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{backend} run failed:\n{proc.stderr[-3000:]}")
    out = json.loads(line[0][len("RESULT "):])
    assert out["backend"] == backend, out
    return out


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    if args.quick:
        args.per_class, args.epochs = 100, 2
    import numpy as np

    fashion = common.fashion()
    source, source_info = common.source_model(
        fashion, common.QUICK_SOURCE if args.quick else common.SourceConfig())
    ds = common.subset(fashion, common.TARGET_CLASSES, args.per_class, 200, 500, args.seed)
    load = common.wait_for_quiet(args)
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "target.npz")
        np.savez(npz, x=np.asarray(ds.x_train), y=ds.y_train, x_val=np.asarray(ds.x_val),
                 y_val=ds.y_val, x_test=np.asarray(ds.x_test), y_test=ds.y_test,
                 class_names=np.array(ds.class_names))
        for strategy in STRATEGIES:
            request = {"data": f"npz:{npz}", "source": str(source), "strategy": strategy,
                       "epochs": args.epochs, "seed": args.seed}
            got = {b: [] for b in BACKENDS}
            for backend in BACKENDS + BACKENDS[::-1]:  # A B B A
                r = child(backend, request)
                got[backend].append(r)
                runs.append({"strategy": strategy, **r})
                print(f"  {strategy} on {backend}: fit {r['fit_seconds']:.1f} s, call "
                      f"{r['call_seconds']:.1f} s, accuracy {r['accuracy']:.4f}", flush=True)
            mean = {b: {k: float(np.mean([r[k] for r in got[b]]))
                        for k in ("fit_seconds", "call_seconds", "accuracy")} for b in BACKENDS}
            fit_ratio = mean["tensorflow"]["fit_seconds"] / mean["jax"]["fit_seconds"]
            call_ratio = mean["tensorflow"]["call_seconds"] / mean["jax"]["call_seconds"]
            acc = (f"tensorflow {mean['tensorflow']['accuracy']:.4f} / jax "
                   f"{mean['jax']['accuracy']:.4f}")
            note = (f"{len(ds.y_train):,} training images, {args.epochs} epochs, source "
                    f"demo_vgg at 28 px, mean of 2 runs each (A B B A)")
            rows.append(common.row(NAME, f"{strategy} training: TensorFlow s / JAX s",
                                   fit_ratio, f"report; a backend >= {TARGET}x faster gets "
                                   f"--backend", None, acc, note))
            rows.append(common.row(NAME, f"{strategy} whole call (start-up, tracing): "
                                   f"TensorFlow s / JAX s", call_ratio, "report", None, acc,
                                   note))
    common.print_rows(rows)
    path = common.write(NAME, {"description": "the same tlkit fine-tuning runs on Keras's "
                                              "TensorFlow and JAX backends",
                               "source": source_info, "load": load, "runs": runs,
                               "rows": rows}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
