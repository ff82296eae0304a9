"""Training precision: float32, or a mixed policy (bfloat16 or float16 compute, float32
variables), chosen by `--precision auto|float32|mixed_bfloat16|mixed_float16`.

- `float32`: everything in float32.
- `mixed_bfloat16`: Keras's mixed policy with bfloat16 compute. oneDNN runs bfloat16
  convolutions and matmuls natively on CPUs with `avx512_bf16` or `amx_bf16`
  (bench/bench_ceiling.py measured 6.1x a float32 3x3 conv and 4.3x a matmul on this
  Xeon, but 1.18x a depthwise conv), and TPUs and recent GPUs have it too.
- `mixed_float16`: float16 compute with loss scaling (Keras wraps the optimizer in a
  `LossScaleOptimizer` at compile time): what GPUs with tensor cores (compute capability
  7.0 and up) run fastest.
- `auto` (the default) decides per run, in `resolve`:
  - a GPU with compute capability >= 7.0: `mixed_float16`;
  - a run that trains no base layer (`small-similar`): `float32`, since the base only
    computes features once, and the frozen path is already at 1.1x its floor;
  - a run under tf.distribute on CPUs: `float32` (no probe: the workers must agree);
  - a CPU without native bfloat16: `float32`;
  - otherwise a probe times a few training steps of the run's own base in both policies
    (`probe`: seconds for a small base, ~30 s for ResNet50 at 96 px) and keeps bfloat16
    only when it is at least `PROBE_MIN_SPEEDUP` faster; the decision is cached by CPU,
    versions, base and batch (`cache_path`), so a later run of the same shape decides in a
    millisecond. The winner depends on the base, not on the image size: on this Xeon
    (bench/results/precision.json) bfloat16 trained the demo's 28 px VGG at 2.1x and
    MobileNetV2 at 96 px at 0.44x (its depthwise convolutions gain nothing from bfloat16,
    and the casts cost), so a rule by size or by device alone would be wrong one way.

In every policy the softmax and the loss stay float32 (the output layer `predictions` is
float32, as Keras's mixed-precision guide advises), and `to_float32` turns the trained
model back into float32 layers before it is evaluated and saved: the `.h5`/`.keras` and
every export are float32 for deployment.

Example:
    >>> from tlkit.training import precision
    >>> precision.resolve("float32", trains_base=True).policy
    'float32'
    >>> precision.resolve("auto", trains_base=False).policy
    'float32'
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import statistics
import time

import keras
import numpy as np

from tlkit.core import fileio
from tlkit.core.choices import PRECISIONS
from tlkit.core.errors import check_choice

MIXED = ("mixed_bfloat16", "mixed_float16")
OUTPUT_LAYER = "predictions"  # stays float32 under a mixed policy (tlkit.models.blocks)
PROBE_MIN_SPEEDUP = 1.1  # bfloat16 must beat float32 by this much to be chosen
PROBE_STEPS = 5  # timed training steps per policy, after 2 warm-up steps; the median counts
GPU_MIN_CAPABILITY = (7, 0)  # tensor cores: Volta and later


@dataclasses.dataclass(frozen=True)
class Choice:
    """The policy a run trains under, and why (recorded in report.json as `precision`)."""

    policy: str
    requested: str
    reason: str
    seconds_per_step: dict = None  # the probe's medians, {policy: seconds}, when it ran

    def to_dict(self):
        """The report's `precision` entry."""
        out = {"policy": self.policy, "requested": self.requested, "reason": self.reason}
        if self.seconds_per_step:
            out["probe_seconds_per_step"] = dict(self.seconds_per_step)
        return out


def check(precision):
    """Refuse a precision tlkit does not have (one line naming the flag and the choices)."""
    return check_choice("precision", precision, PRECISIONS)


@contextlib.contextmanager
def policy_scope(policy):
    """Set Keras's global dtype policy for the block, then restore the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def policy_of(model):
    """The compute policy of a model's layers: a mixed policy if any layer has one."""
    names = {getattr(getattr(layer, "dtype_policy", None), "name", "float32")
             for layer in _all_layers(model)}
    return next((p for p in MIXED if p in names), "float32")


def with_policy(model, policy):
    """A copy of `model` whose layers compute under `policy`, with the same weights.

    The layers' configs are rewritten (nested models included) and the model is rebuilt from
    them; the output layer `predictions` stays float32 under a mixed policy. Variables are
    float32 under every policy, so the weights carry over exactly.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
        >>> with_policy(m, "mixed_bfloat16").get_layer("d").compute_dtype
        'bfloat16'
    """
    if policy not in ("float32",) + MIXED:
        raise ValueError(f"policy must be one of float32, {', '.join(MIXED)}. "
                         f"Received: policy={policy!r}")
    if policy_of(model) == policy and policy == "float32":
        return model
    return _copy(model, policy)


def _copy(model, policy):
    """A new model from `model`'s config with every layer under `policy`, same weights."""
    config = _rewrite(model.get_config(), policy)
    with policy_scope(policy):
        clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def to_float32(model):
    """`model` with float32 layers (itself when it has no mixed layer): for evaluation,
    saving and export after training under a mixed policy."""
    return model if policy_of(model) == "float32" else with_policy(model, "float32")


def _rewrite(config, policy):
    """A copy of a (nested) model config with every DTypePolicy set to `policy`."""
    if isinstance(config, list):
        return [_rewrite(c, policy) for c in config]
    if not isinstance(config, dict):
        return config
    out = {k: _rewrite(v, policy) for k, v in config.items()}
    dtype = out.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") in ("DTypePolicy",
                                                               "FloatDTypePolicy"):
        keep = policy != "float32" and out.get("name") == OUTPUT_LAYER
        name = "float32" if keep else policy
        out["dtype"] = {**dtype, "config": {**dtype.get("config", {}), "name": name}}
    return out


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


# -- auto ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_info():
    """`(model name, native bfloat16)` of this CPU, from /proc/cpuinfo (Linux; else unknown)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", False
    flags, model = set(), "unknown"
    for line in text.splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
    return model, bool(flags & {"avx512_bf16", "amx_bf16"})


def gpu_capabilities():
    """Compute capabilities `(major, minor)` of the visible GPUs (empty on CPU-only hosts)."""
    import tensorflow as tf  # only here: listing devices initialises TensorFlow's runtime

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def cache_path():
    """Where `auto`'s probe decisions are kept: `$TLKIT_CACHE_DIR/precision.json`, by default
    `~/.cache/tlkit/precision.json` (`$XDG_CACHE_HOME` respected)."""
    root = os.environ.get("TLKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tlkit")
    return pathlib.Path(root) / "precision.json"


def resolve(precision, *, trains_base, model=None, batch_size=32, distributed=False,
            verbose=0, run=None):
    """The policy a run trains under (a `Choice`).

    Args:
        precision: one of `PRECISIONS`; anything but `auto` is taken as it is.
        trains_base: whether any phase trains base layers on images (not `small-similar`).
        model: the base (`keras.Model`, float32) for `auto`'s probe.
        batch_size: the run's batch size (the probe's, and part of the cache key).
        distributed: the run trains under tf.distribute: no probe (each worker could
            decide differently; every replica must compute alike), so float32 on CPUs.
        verbose: 1 prints the probe's result.
        run: the run folder (`tlkit.training.runs.RunFolder`): the choice is recorded in it,
            and a resumed `auto` run keeps the policy it recorded rather than probe again (a
            probe on another machine, or with the cache cleared, could choose the other one
            for the rest of the run).
    """
    choice = _resolve(precision, trains_base, model, batch_size, distributed, verbose,
                      run.recalled("precision") if run is not None else None)
    if run is not None:
        run.remember("precision", choice.to_dict())
    return choice


def _resolve(precision, trains_base, model, batch_size, distributed, verbose, recalled):
    check(precision)
    if precision != "auto":
        return Choice(precision, precision, "requested")
    if recalled and recalled.get("policy") in PRECISIONS[1:]:
        return Choice(recalled["policy"], "auto",
                      f"resumed run: {recalled.get('reason', 'its recorded choice')}",
                      recalled.get("probe_seconds_per_step"))
    gpus = gpu_capabilities()
    if gpus:
        if min(gpus) >= GPU_MIN_CAPABILITY:
            return Choice("mixed_float16", "auto", f"GPU with tensor cores (compute "
                                                   f"capability {min(gpus)[0]}.{min(gpus)[1]})")
        return Choice("float32", "auto", "GPU without tensor cores")
    if not trains_base:
        return Choice("float32", "auto", "no base layer trains: features are computed once")
    if distributed:
        return Choice("float32", "auto", "tf.distribute: every worker must train alike, so "
                                         "no probe")
    cpu, native = cpu_info()
    if not native:
        return Choice("float32", "auto", "this CPU has no native bfloat16 (avx512_bf16/amx)")
    if model is None:
        return Choice("float32", "auto", "no model to probe")
    key = _key(cpu, model, batch_size)
    cached = _read_cache().get(key)
    if cached is None:
        cached = probe(model, batch_size)
        _write_cache(key, cached)
    speedup = cached["float32"] / cached["mixed_bfloat16"]
    policy = "mixed_bfloat16" if speedup >= PROBE_MIN_SPEEDUP else "float32"
    choice = Choice(policy, "auto", f"probe: bfloat16 trains at {speedup:.2f}x float32 "
                                    f"(chosen at >= {PROBE_MIN_SPEEDUP}x)", cached)
    if verbose:
        print(f"tlkit: --precision auto: {choice.policy} ({choice.reason})")
    return choice


def probe(model, batch_size=32, steps=PROBE_STEPS):
    """Median seconds of one training step of `model` (every layer training, random images)
    under float32 and under mixed_bfloat16: `{policy: seconds}`. A base (a feature-map
    output) gets a new 10-way head; a classifier trains as it is.

    Steps are timed one by one with `train_on_batch` (two warm-up steps first, which trace
    and build oneDNN's primitives), so a stall at the end of an epoch cannot enter them.
    They train copies: `model`'s own weights and BN statistics are left as they were.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, *model.input_shape[1:])).astype("float32")
    classifier = len(model.output_shape) == 2
    classes = model.output_shape[-1] if classifier else 10
    y = rng.integers(0, max(classes, 2), batch_size) if classes > 1 else np.zeros(batch_size)
    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        base = _copy(model, policy)  # never the model itself: the steps change weights
        trainer = base
        if not classifier:
            with policy_scope(policy):
                inputs = keras.Input(model.input_shape[1:])
                h = keras.layers.GlobalAveragePooling2D()(base(inputs))
                head = keras.layers.Dense(10, activation="softmax", dtype="float32")(h)
                trainer = keras.Model(inputs, head)
        trainer.compile(optimizer=keras.optimizers.SGD(1e-3),
                        loss="binary_crossentropy" if classes == 1 else
                        "sparse_categorical_crossentropy")
        times = []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            trainer.train_on_batch(x, y)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[policy] = statistics.median(times)
        del trainer, base
    return out


def _key(cpu, model, batch_size):
    import tensorflow as tf

    text = json.dumps([cpu, tf.__version__, keras.__version__, model.name,
                       int(model.count_params()), list(model.input_shape[1:]),
                       int(batch_size)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_cache():
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key, value):
    """Keep a probe's result (best effort: an unwritable cache only costs a probe later)."""
    try:
        data = _read_cache()
        data[key] = value
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        fileio.write_json(data, cache_path())
    except OSError:
        pass
