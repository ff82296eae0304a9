"""Shared helpers of the benchmarks: quiet-machine wait, timing, data, the source model, JSON.

Benchmarks are not tests. Each one runs tlkit and a plain-Keras baseline written the way the
Keras documentation teaches, in the same process, on the same data, backbone and initial
weights, and reports the RATIO of the two (absolute seconds go to the JSON only: they depend on
the machine and on whatever else runs on it).

No ImageNet weights exist offline, so the backbone with meaningful features is a *source model*
trained here with tlkit: the demo's `demo_vgg` (`tlkit.experiments.demo.build_source_net`, a small VGG of
`vgg_block`s with BatchNormalization) trained on five Fashion-MNIST classes (the demo's source
split) and saved as `.h5`; the target task is the other five classes (similar domain, classes
the source never saw), used as `backbone=source.h5`. The file is cached (by a key of its
settings) outside the repository, in `$TLKIT_BENCH_CACHE` or the system temp folder.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
warnings.filterwarnings("ignore", message=".*saving your model as an HDF5 file.*")
warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))
# TensorFlow's Python logger warns about retracing: every benchmark builds fresh models.
logging.getLogger("tensorflow").setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)  # "model was *not* compiled" on load

# The demo's class split: both halves hold tops and footwear, so the target is similar.
SOURCE_CLASSES = (0, 1, 4, 5, 8)  # T-shirt/top, Trouser, Coat, Sandal, Bag
TARGET_CLASSES = (2, 3, 6, 7, 9)  # Pullover, Dress, Shirt, Sneaker, Ankle boot
QUIET_LOAD = 1.0  # 1-minute load average below which the machine counts as quiet
QUIET_BUSY = 0.3  # or: other processes' CPU (cores), sampled over 5 s twice in a row


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """The source model: `demo_vgg` trained with tlkit on the source classes."""

    widths: tuple = (32, 64, 128)
    convs: int = 2
    per_class: int = 3000
    epochs: int = 3
    batch_size: int = 64
    seed: int = 0


QUICK_SOURCE = SourceConfig(per_class=200, epochs=1)


def source_config(args):
    """The `SourceConfig` for `--quick` and `--source-widths` (when the script has it)."""
    cfg = QUICK_SOURCE if args.quick else SourceConfig()
    widths = getattr(args, "source_widths", None)
    if widths:
        cfg = dataclasses.replace(cfg, widths=tuple(int(w) for w in str(widths).split(",")))
    return cfg


# ---------------------------------------------------------------------------------------------
# command line


def parser(description):
    """An argparse parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for development (numbers are not meaningful)")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for a quiet machine before measuring")
    p.add_argument("--max-wait", type=float, default=900.0,
                   help="seconds to wait at most for a quiet machine (default 900)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="result JSON (default bench/results/<name>.json)")
    return p


def command_line():
    """How this benchmark was started, for the JSON."""
    return " ".join([".venv/bin/python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------
# load: wait for a quiet machine, and watch other processes while measuring


def loadavg():
    """The 1-, 5- and 15-minute load averages."""
    with open("/proc/loadavg") as f:
        return tuple(float(v) for v in f.read().split()[:3])


def _cpu_jiffies():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuWatch:
    """CPU time used by OTHER processes (in cores) between `start()` and `stop()`."""

    def start(self):
        self.t0, self.own0, (self.busy0, self.total0) = (time.perf_counter(), _own_cpu_seconds(),
                                                         _cpu_jiffies())
        self.load0 = loadavg()
        return self

    def stop(self):
        wall = time.perf_counter() - self.t0
        busy, _ = _cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        system_busy = (busy - self.busy0) / hz
        own = _own_cpu_seconds() - self.own0
        return {"wall_s": round(wall, 2), "loadavg_start": self.load0, "loadavg_end": loadavg(),
                "own_cpu_cores": round(own / wall, 2) if wall else None,
                "other_cpu_cores": round(max(0.0, system_busy - own) / wall, 2) if wall else None}


def watched(fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, a dict, with `other_cpu_cores` (others' CPU while it ran) added."""
    w = CpuWatch().start()
    out = fn(*args, **kwargs)
    out["other_cpu_cores"] = w.stop()["other_cpu_cores"]
    return out


def other_busy_cores(seconds=5.0):
    """Cores' worth of CPU used by other processes over the next `seconds`."""
    w = CpuWatch().start()
    time.sleep(seconds)
    return w.stop()["other_cpu_cores"]


_LOCK = []  # the open lock file, held until the process exits


def _take_measure_lock(deadline, log):
    """Hold a machine-wide lock so that two benchmark processes never measure at once.

    Every benchmark that calls `wait_for_quiet` (all of bench/, bench_tuning.py included) takes
    it before measuring and keeps it until it exits. Returns how it went, for the JSON.
    """
    import fcntl

    if _LOCK:
        return "held"
    f = open(cache_dir() / "measure.lock", "a+")
    announced = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _LOCK.append(f)
            return "taken"
        except OSError:
            if time.perf_counter() > deadline:
                f.close()
                return "NOT taken (another benchmark kept it): numbers may be polluted"
            if not announced:
                log("  another benchmark is measuring: waiting for it to finish ...")
                announced = True
            time.sleep(2.0)


def wait_for_quiet(args, log=print):
    """Wait (up to `--max-wait` s) until the machine is quiet; return what was seen.

    First takes the benchmarks' machine-wide lock (another benchmark process measuring keeps
    this one waiting), then waits until the 1-minute load average is below `QUIET_LOAD`, or two
    5-second samples in a row show other processes using less than `QUIET_BUSY` cores (the
    load average lags by about a minute, e.g. right after the previous benchmark ended).
    `--no-wait` / `--quick` skip both.
    """
    t0 = time.perf_counter()
    max_wait = getattr(args, "max_wait", 900.0)
    info = {"loadavg_before_wait": loadavg(), "waited_s": 0.0, "quiet": None}
    if args.no_wait or args.quick:
        info["quiet"] = "not checked (--no-wait/--quick)"
        return info
    info["lock"] = _take_measure_lock(t0 + max_wait, log)
    calm = 0
    announced = False
    while True:
        load1 = loadavg()[0]
        busy = other_busy_cores(5.0)
        calm = calm + 1 if busy < QUIET_BUSY else 0
        if load1 < QUIET_LOAD or calm >= 2:
            info["quiet"] = (f"load1 {load1:.2f} < {QUIET_LOAD}" if load1 < QUIET_LOAD else
                             f"other processes < {QUIET_BUSY} cores for 10 s (load1 {load1:.2f})")
            break
        waited = time.perf_counter() - t0
        if waited > max_wait:
            info["quiet"] = (f"NOT QUIET: gave up after {waited:.0f} s (load1 {load1:.2f}, "
                             f"others {busy:.2f} cores): numbers may be polluted")
            log(f"  machine still busy after {waited:.0f} s; measuring anyway")
            break
        if not announced:
            log(f"  waiting for a quiet machine (load1 {load1:.2f}, others {busy:.2f} cores; "
                f"up to {max_wait:.0f} s) ...")
            announced = True
        time.sleep(5.0)
    info["waited_s"] = round(time.perf_counter() - t0, 1)
    info["loadavg_at_start"] = loadavg()
    return info


# ---------------------------------------------------------------------------------------------
# timing


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def median(values):
    return float(statistics.median(values))


def epoch_timer():
    """A Keras callback that records every epoch's duration (seconds) in `.times`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.gaps, self._end = [], [], None

        def on_epoch_begin(self, epoch, logs=None):
            now = time.perf_counter()
            if self._end is not None:
                self.gaps.append(now - self._end)
            self._t = now

        def on_epoch_end(self, epoch, logs=None):
            self._end = time.perf_counter()
            self.times.append(self._end - self._t)

    return EpochTimer()


@contextlib.contextmanager
def timed_calls(module, name, record):
    """Time every call of `module.name` into `record` (a list of seconds) while inside."""
    original = getattr(module, name)

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            record.append(time.perf_counter() - t0)

    setattr(module, name, wrapper)
    try:
        yield record
    finally:
        setattr(module, name, original)


# ---------------------------------------------------------------------------------------------
# data and the source model


def fashion():
    """Fashion-MNIST (Debian's files) as a tlkit Dataset: 54,000 train / 6,000 val / 10,000 test."""
    from tlkit import data as data_lib

    return data_lib.load("fashion_mnist", seed=0)


def subset(ds, classes, per_class, val_per_class, test_per_class, seed=0):
    """`ds` restricted to `classes`, with caps per class on train, val and test (None: all)."""
    out = ds.select(list(classes), per_class=per_class, seed=seed)
    if val_per_class is not None:
        v = ds.select(list(classes), eval_per_class=val_per_class, seed=seed + 1)
        out = dataclasses.replace(out, x_val=v.x_val, y_val=v.y_val)
    if test_per_class is not None:
        t = ds.select(list(classes), eval_per_class=test_per_class, seed=seed + 2)
        out = dataclasses.replace(out, x_test=t.x_test, y_test=t.y_test)
    return out


def counts(ds):
    return {"train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test)}


def cache_dir():
    d = pathlib.Path(os.environ.get("TLKIT_BENCH_CACHE",
                                    pathlib.Path(tempfile.gettempdir()) / "tlkit-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def source_model(fashion_ds, cfg=SourceConfig(), log=print, classes=SOURCE_CLASSES):
    """The source `.h5` (demo_vgg trained with tlkit on `SOURCE_CLASSES`), trained once, cached.

    Returns:
        (path, info dict for the JSON).
    """
    import keras

    import tlkit
    from tlkit.experiments import demo
    from tlkit.deploy import saving

    key = hashlib.sha1(json.dumps(["init untrained", dataclasses.asdict(cfg), list(classes),
                                   tlkit.__version__, keras.__version__],
                                  default=str).encode()).hexdigest()[:12]
    path = cache_dir() / f"source-demo_vgg-{key}.h5"
    info_path = path.with_suffix(".json")
    desc = (f"demo_vgg ({len(cfg.widths)} vgg_blocks {'-'.join(map(str, cfg.widths))}, "
            f"{cfg.convs} conv(s) each, BN), trained with tlkit (large-dissimilar, "
            f"{cfg.epochs} epochs) on Fashion-MNIST classes {list(classes)}")
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        info["reused"] = True
        return path, info
    log(f"training the source model once: {desc} ...")
    src = subset(fashion_ds, classes, cfg.per_class, None, 200, cfg.seed)
    keras.utils.set_random_seed(cfg.seed)
    init = saving.save(demo.build_source_net(len(classes), cfg.widths, cfg.convs),
                       cache_dir() / f"source-init-{key}.h5",
                       {"note": "bench source init", "untrained": True})
    keras.backend.clear_session()
    t0 = time.perf_counter()
    res = tlkit.finetune(data=src, backbone=str(init), strategy="large-dissimilar",
                         epochs=cfg.epochs, weights=None, batch_size=cfg.batch_size,
                         augment=False, autotune=False, seed=cfg.seed, patience=cfg.epochs,
                         out=str(path), verbose=0)
    info = {"description": desc, "file": str(path), "train_images": len(src.y_train),
            "source_classes": list(classes),
            "test_accuracy": round(float(res.report["accuracy"]), 4),
            "train_seconds": round(time.perf_counter() - t0, 1), "config": dataclasses.asdict(cfg)}
    info_path.write_text(json.dumps(info, indent=2))
    log(f"  source model: test accuracy {info['test_accuracy']:.4f} on its 5 classes "
        f"({info['train_seconds']:.0f} s) -> {path}")
    del res
    keras.backend.clear_session()
    info["reused"] = False
    return path, info


def nested_base(model):
    """The nested base model inside a classifier (plain Keras: the first sub-Model)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name} has no nested base model")


def keras_io_dataset(x, y, batch_size, *, shuffle=False, seed=0, autotune=False, prefetch=2):
    """Plain tf.data input for the baselines: slices -> [shuffle] -> batch -> float32 -> prefetch.

    The same steps and settings as `tlkit.data.pipeline`, written out, so both sides read the
    same batches at the same cost and the ratio measures the training method.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if y is not None:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b),
                    num_parallel_calls=tf.data.AUTOTUNE if autotune else None)
    else:
        ds = ds.map(lambda a: tf.cast(a, tf.float32),
                    num_parallel_calls=tf.data.AUTOTUNE if autotune else None)
    if autotune:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options).prefetch(prefetch)


def accuracy(model, x, y, batch_size=64):
    """Test accuracy of a softmax classifier on uint8 images."""
    import numpy as np

    probs = model.predict(keras_io_dataset(x, None, batch_size), verbose=0)
    return float((np.argmax(probs, axis=1) == np.asarray(y)).mean())


def accuracy_check(acc_tlkit, acc_keras, tolerance_pp=0.5):
    diff = 100.0 * (acc_tlkit - acc_keras)
    return {"tlkit": round(acc_tlkit, 4), "keras": round(acc_keras, 4),
            "diff_pp": round(diff, 2), "tolerance_pp": tolerance_pp,
            "within_tolerance": (None if tolerance_pp is None
                                 else abs(diff) <= tolerance_pp + 1e-9)}


def free():
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


# ---------------------------------------------------------------------------------------------
# results


def environment():
    import keras
    import numpy as np
    import tensorflow as tf

    import tlkit

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"tlkit": tlkit.__version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "device": "CPU only"}


def row(benchmark, comparison, ratio, target, met, accuracy=None, note=""):
    """One line of the summary table (what run_all.py prints)."""
    return {"benchmark": benchmark, "comparison": comparison,
            "ratio": None if ratio is None else round(float(ratio), 2), "target": target,
            "met": met, "accuracy": accuracy, "note": note}


def results_dir(quick=False):
    """bench/results/, or for --quick runs a folder in the cache (kept out of the repository)."""
    return cache_dir() / "quick-results" if quick else RESULTS


def write(name, payload, args=None):
    """Write `payload` to bench/results/<name>.json (atomically) and return the path.

    `--quick` results go to `results_dir(quick=True)` instead, so they never replace real ones.
    """
    quick = bool(args is not None and args.quick)
    path = (pathlib.Path(args.out) if args is not None and args.out
            else results_dir(quick) / f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "command": command_line(),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "quick": bool(args.quick) if args is not None else False, **payload,
               "environment": environment()}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_rows(rows):
    for r in rows:
        status = "met" if r["met"] else ("NOT met" if r["met"] is False else "-")
        acc = f"; accuracy {r['accuracy']}" if r.get("accuracy") else ""
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"  {r['comparison']}: {ratio} (target {r['target']}: {status}){acc}")
