"""ceiling: what this CPU can compute, float32 against bfloat16, and how close training comes.

Issue 26's first step: measure before choosing a precision. Two parts, in one process:

- the ceiling: sustained GFLOP/s of a matmul (2048^3) and of the convolutions MobileNetV2 and
  ResNet50 run at 96 px (a 3x3 conv, a 1x1 pointwise conv and a depthwise 3x3), each in
  float32 and in bfloat16, on all cores (TensorFlow's oneDNN kernels; `tf.function`, a warm-up
  call, then the median of 5 timed calls of 10 repeats);
- training throughput: plain Keras `model.fit` steps (Adam, all layers training, the loop a
  user writes) of MobileNetV2 at 96 and 160 px and ResNet50 at 96 px (`weights=None`, batch
  32, random images, 10 classes), under the `float32` and the `mixed_bfloat16` dtype policies
  (the softmax in float32, as Keras's mixed-precision guide says). Images/s is the median of 3
  timed chunks of steps after a warm-up; achieved GFLOP/s counts the forward pass's FLOPs from
  the graph (TensorFlow's profiler on the model's concrete function) times 3 for a training
  step (the backward pass is about twice the forward: the usual rule, not a count). Both
  policies' models are built once and their timed fits alternate (A B A B ...).

It prints and stores ratios: bfloat16 / float32 for each kernel and each model, and each
training run's achieved GFLOP/s as a share of the float32 (or bfloat16) conv ceiling. CPU
flags (`avx512_bf16`, `amx_bf16`) are recorded: oneDNN runs bfloat16 natively only with them.

Open problem (2026-12-04): many timed fits take exactly 5.15 s or 10.3 s for their 256
images (49.7 / 24.6-24.9 images/s) whatever the model and policy: MobileNetV2 at 160 px and
ResNet50 at 96 px, in both policies, and MobileNetV2 at 96 px in bfloat16, while other fits of
the same models run faster (ResNet50 bfloat16: 40.9 and 40.2; MobileNetV2 160 px float32:
41.2-41.7). A stall quantised in ~5 s steps, not compute, sets these rows; a standalone
MobileNetV2 96 px float32 run (numpy, tf.data, train_on_batch) showed none. With a float32 and
a bfloat16 model alternating, the stall sits after the last batch (its callback) and before
`fit` returns, ~2 s, so that the fit lasts 5.1-5.2 s; it comes with numpy and with tf.data
input alike (per-step times: float32 0.29 s, bfloat16 0.38 s). py-spy shows the main thread
in one more `train_function` call after the last batch: the end-of-data detection of the
exhausted iterator. With `dataset.repeat()` and `steps_per_epoch` (how the rows fit now) one
standalone run showed no stall, but the bench still does: fits last 2.55, 5.1 or 10.2 s
(100.5, 50.1, 25.0 images/s) far more often than chance, i.e. durations snap to 2.55 s x 2^k,
as if a backing-off wait (2.55 s, doubling) held `fit` until its next check. Whether tlkit's
own fits lose time to it is the next thing to measure.

Run: `.venv/bin/python bench/bench_ceiling.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import statistics
import sys
import time

NAME = "ceiling"


def cpu_flags():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                  if ln.startswith("model name")), None)
    return {"model": model, **{f: f in flags for f in ("avx2", "avx512f", "avx512_bf16",
                                                       "amx_bf16", "amx_tile")}}


def _timed(fn, repeats, calls=5):
    fn()  # warm-up (tracing, oneDNN primitive creation)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        _ = out.numpy() if hasattr(out, "numpy") else out
        times.append((time.perf_counter() - t0) / repeats)
    return statistics.median(times)


def kernels(quick):
    """GFLOP/s of each kernel in float32 and bfloat16."""
    import tensorflow as tf

    n = 512 if quick else 2048
    batch = 4 if quick else 32
    cases = {
        f"matmul {n}^3": (lambda d: (tf.random.normal((n, n), dtype=d),
                                     tf.random.normal((n, n), dtype=d)),
                          lambda a, b: tf.matmul(a, b), 2 * n ** 3),
        "conv 3x3 24x24x128->128": (
            lambda d: (tf.random.normal((batch, 24, 24, 128), dtype=d),
                       tf.random.normal((3, 3, 128, 128), dtype=d)),
            lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), 2 * batch * 24 * 24 * 128 * 128 * 9),
        "conv 1x1 12x12x576->96": (
            lambda d: (tf.random.normal((batch, 12, 12, 576), dtype=d),
                       tf.random.normal((1, 1, 576, 96), dtype=d)),
            lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), 2 * batch * 12 * 12 * 576 * 96),
        "depthwise 3x3 24x24x144": (
            lambda d: (tf.random.normal((batch, 24, 24, 144), dtype=d),
                       tf.random.normal((3, 3, 144, 1), dtype=d)),
            lambda x, w: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME"),
            2 * batch * 24 * 24 * 144 * 9),
    }
    rows = []
    for name, (make, op, flops) in cases.items():
        rates = {}
        for dtype in (tf.float32, tf.bfloat16):
            a, b = make(dtype)
            fn = tf.function(lambda a=a, b=b: op(a, b))
            rates[dtype.name] = flops / _timed(fn, 3 if quick else 10) / 1e9
        rows.append({"kernel": name, "gflops_float32": round(rates["float32"], 1),
                     "gflops_bfloat16": round(rates["bfloat16"], 1),
                     "bf16_over_f32": round(rates["bfloat16"] / rates["float32"], 2)})
        print(f"  {name}: float32 {rates['float32']:.1f} GFLOP/s, bfloat16 "
              f"{rates['bfloat16']:.1f} GFLOP/s ({rates['bfloat16'] / rates['float32']:.2f}x)",
              flush=True)
    return rows


def forward_flops(model, size):
    """FLOPs of one image's forward pass, counted by TensorFlow's profiler on the graph."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, size, size, 3), tf.float32)).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops


POLICIES = ("float32", "mixed_bfloat16")


def _build(name, size, policy):
    import keras

    keras.config.set_dtype_policy(policy)  # layers take the policy when they are created
    try:
        app = {"mobilenet_v2": keras.applications.MobileNetV2,
               "resnet50": keras.applications.ResNet50}[name]
        base = app(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
        out = keras.layers.Dense(10, activation="softmax", dtype="float32")(base.output)
        model = keras.Model(base.input, out)
        model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        return model
    finally:
        keras.config.set_dtype_policy("float32")


def training(name, size, quick, batch=32):
    """Images/s of plain Keras fit calls for each policy, and the forward FLOPs per image.

    Both models are built first; after a warm-up fit each, their timed fits alternate
    (A B A B ...: 2 rounds with --quick, else 6) and each side's figure is its median, so a
    slow spell of the machine hits both sides alike.
    """
    import keras
    import numpy as np

    models = {p: _build(name, size, p) for p in POLICIES}
    steps = 2 if quick else 8
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch * steps, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, batch * steps)
    import tensorflow as tf

    # A repeated dataset and `steps_per_epoch`, so that no fit runs into the end of its data
    # (one suspect for the stall in the module doc; it did not remove it).
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)
    for m in models.values():
        m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing
    times = {p: [] for p in POLICIES}
    for _ in range(2 if quick else 6):
        for p, m in models.items():
            t0 = time.perf_counter()
            m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
            times[p].append(time.perf_counter() - t0)
    flops = forward_flops(models["float32"], size)
    ips = {p: len(x) / statistics.median(t) for p, t in times.items()}
    spread = {p: [round(len(x) / v, 1) for v in t] for p, t in times.items()}
    del models
    keras.backend.clear_session()
    return ips, flops, spread


def main():
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    flags = cpu_flags()
    print(f"bench {NAME}: {flags}")
    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    print("kernels:")
    kern = kernels(args.quick)
    conv = [r for r in kern if r["kernel"].startswith("conv 3x3")][0]
    ceiling = {"float32": conv["gflops_float32"], "mixed_bfloat16": conv["gflops_bfloat16"]}
    configs = ([("mobilenet_v2", 32)] if args.quick else
               [("mobilenet_v2", 96), ("mobilenet_v2", 160), ("resnet50", 96)])
    runs, checks = [], []
    print("training (plain Keras fit, every layer training, batch 32):")
    for name, size in configs:
        ips, flops, spread = training(name, size, args.quick)
        for policy in POLICIES:
            achieved = ips[policy] * flops * 3 / 1e9
            runs.append({"model": name, "image_size": size, "policy": policy,
                         "images_per_second": round(ips[policy], 1),
                         "images_per_second_each_fit": spread[policy],
                         "forward_gflops_per_image": round(flops / 1e9, 3),
                         "achieved_gflops": round(achieved, 1),
                         "share_of_conv_ceiling": round(achieved / ceiling[policy], 3)})
            print(f"  {name} {size}px {policy}: {ips[policy]:.1f} images/s (each fit: "
                  f"{spread[policy]}), {achieved:.1f} GFLOP/s ({achieved / ceiling[policy]:.0%} "
                  f"of the {policy} 3x3-conv ceiling)", flush=True)
        ratio = ips["mixed_bfloat16"] / ips["float32"]
        checks.append(common.row(NAME, f"{name} {size}px training: mixed_bfloat16 / float32 "
                                       f"images/s", ratio, "report", True))
    for r in kern:
        checks.append(common.row(NAME, f"{r['kernel']}: bfloat16 / float32 GFLOP/s",
                                 r["bf16_over_f32"], "report", True))
    load = {**quiet, **watch.stop()}
    path = common.write(NAME, {"cpu": flags, "kernels": kern, "training": runs,
                               "checks": checks, "load": load}, args)
    common.print_rows(checks)
    print(f"-> {path}")


if __name__ == "__main__":
    sys.exit(main())
