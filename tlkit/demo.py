"""`tlkit demo`: the size-versus-similarity matrix, reproduced on real data, offline.

`run_demo` does five things, printing a line at every step:

1. Pretrains a source network with tlkit: `demo_vgg`, a small VGG of three `vgg_block`s
   (32, 64 and 128 filters, BatchNormalization, so three stages), then Flatten, dropout and a
   softmax, trained from random weights on the *source classes* of Fashion-MNIST (read from
   Debian's `dataset-fashion-mnist` files). It is saved as `source.h5`.
2. Builds four target situations:

   - *similar*: the *target classes* of Fashion-MNIST (same domain, classes the source never
     saw); *dissimilar*: scikit-learn's bundled 8x8 handwritten digits, resized to 28x28
     (another image domain; the only other image set that ships offline here);
   - *small*: `small_per_class` training images per class (a few dozen); *large*:
     `large_per_class` (thousands in all for Fashion-MNIST; for the digits, all there are).

3. In each situation trains the four strategies on `backbone=source.h5` (the source cut below
   its head, with its trained weights) and `scratch` (the same network from random weights,
   trained whole), all with the same epochs, batch size and seed, and evaluates every model on
   the situation's held-out test images. Augmentation is off: these are small, centred
   28x28 images, and off keeps the frozen strategies on cached features.
4. Trains the zoo's `fashion_cnn` on all ten Fashion-MNIST classes (the seeds' baseline: DNN
   ~86%, CNN ~90%; the full demo reaches 91% or more).
5. Prints the table (situation x strategy: test accuracy and seconds, `*` marks the best per
   situation) and writes, under `out_dir`:

   - `matrix.json`: a list of records `{"situation", "strategy", "test_accuracy", "seconds",
     ...}` (situations and strategies named as on the command line, `scratch` for the
     baseline); `matrix.png`: the heatmap; `matrix.md`: the table as Markdown;
   - `baseline.json`: the `fashion_cnn` record; `demo.json`: settings, class split, source
     accuracy, baseline and timings;
   - `source.h5` (+ `source/` report), `source_init.h5` (the random start that `scratch`
     shares), `runs/<situation>/<strategy>.h5` with a report folder beside each
     (`report.json`, `confusion_matrix.png`, `curves.png`, `history.csv`), and
     `baseline/fashion_cnn.h5` with its report.

`--quick` (`quick=True`) runs the same steps on reduced sizes and epochs (`QUICK`).

Example:
    >>> from tlkit import demo
    >>> demo.resolve_classes("Sandal,Bag", None)  # the target side defaults to the rest
    ([5, 8], [0, 1, 2, 3, 4, 6, 7, 9])
    >>> result = demo.run_demo("/tmp/tlkit-demo", quick=True)  # doctest: +SKIP
    >>> sorted({r["situation"] for r in result.records})  # doctest: +SKIP
    ['large-dissimilar', 'large-similar', 'small-dissimilar', 'small-similar']
"""

import contextlib
import dataclasses
import gc
import logging
import os
import pathlib
import shutil
import sys
import time

import numpy as np

from tlkit import data as data_lib
from tlkit.errors import TlkitError
from tlkit.strategies import STRATEGIES

SITUATIONS = ("small-similar", "small-dissimilar", "large-similar", "large-dissimilar")
METHODS = STRATEGIES + ("auto", "scratch")  # auto: tlkit.advise measures, then chooses
FASHION_CLASSES = tuple(data_lib.FASHION_MNIST_CLASSES)
# Both halves hold tops and footwear, so the target classes are new but related.
DEFAULT_SOURCE_CLASSES = ("T-shirt/top", "Trouser", "Coat", "Sandal", "Bag")  # ids 0, 1, 4, 5, 8
DEFAULT_TARGET_CLASSES = ("Pullover", "Dress", "Shirt", "Sneaker", "Ankle boot")  # 2, 3, 6, 7, 9
DEFAULT_OUT = "saved_models/demo"
BASELINE_TARGET = 0.91
IMAGE_SHAPE = (28, 28, 1)
BN_MOMENTUM = 0.9
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes and budgets of a demo run (`FULL` or `QUICK`; `dataclasses.replace` for others).

    Attributes:
        name: `"full"` or `"quick"` (recorded in the outputs).
        widths: filters of the source net's `vgg_block`s (one stage each).
        convs: convolutions per block.
        source_per_class: training images per source class (None: all, 5,400).
        source_epochs: epochs of the source pretraining.
        small_per_class: training images per class in the small situations.
        large_per_class: training images per Fashion-MNIST class in large-similar (None: all);
            large-dissimilar always uses every digit there is.
        small_val_per_class: validation images per class in the small situations.
        large_val_per_class: validation images per class in large-similar (None: all 600).
        test_per_class: Fashion-MNIST test images per class (None: all 1,000).
        small_epochs, large_epochs: the epoch budget of every run in a small / large situation.
        small_batch, large_batch: batch sizes.
        patience: EarlyStopping patience (on val_loss, best weights restored).
        baseline_per_class: `fashion_cnn` training images per class (None: all; 0 skips it).
        baseline_epochs: its epoch budget (EarlyStopping may end it sooner).
        baseline_batch: its batch size.
        pooling: how every head (source, transferred, scratch) reads the last feature map:
            `"flatten"` keeps the 3x3 layout (1,152 features), which the frozen strategies
            need here; global average pooling (128 features) left their linear heads
            underfitting (train accuracy ~0.72 on small-similar).
    """

    name: str = "full"
    widths: tuple = (32, 64, 128)
    convs: int = 1
    source_per_class: int = None
    source_epochs: int = 8
    small_per_class: int = 30
    large_per_class: int = 1500
    small_val_per_class: int = 10
    large_val_per_class: int = 200
    test_per_class: int = None
    small_epochs: int = 30
    large_epochs: int = 12
    small_batch: int = 16
    large_batch: int = 64
    patience: int = 6
    baseline_per_class: int = None
    baseline_epochs: int = 10
    baseline_batch: int = 128
    pooling: str = "flatten"


FULL = DemoConfig()
QUICK = DemoConfig(name="quick", source_per_class=300, source_epochs=2, small_per_class=20,
                   large_per_class=200, small_val_per_class=5, large_val_per_class=20,
                   test_per_class=100, small_epochs=4, large_epochs=2, patience=2,
                   baseline_per_class=300, baseline_epochs=1)


@dataclasses.dataclass
class DemoResult:
    """What `run_demo` returns.

    Attributes:
        records: one dict per (situation, strategy), as written to `matrix.json`.
        baseline: the `fashion_cnn` record (`baseline.json`), or None when skipped.
        source: facts about the source net (classes, test accuracy, seconds, path).
        out_dir: the output folder.
        seconds: wall time of the whole demo.
        files: the main output files by kind.
    """

    records: list
    baseline: dict
    source: dict
    out_dir: pathlib.Path
    seconds: float
    files: dict


# ---------------------------------------------------------------------------------------------
# validation


def _norm(name):
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def parse_classes(spec, arg="source_classes"):
    """Fashion-MNIST class ids from names or ids: `"0,1,Coat"`, `["Sandal", 8]`, ...

    Names match case-insensitively, ignoring spaces and punctuation (`ankle-boot`,
    `T-shirt/top`, `tshirttop`).

    Args:
        spec: a comma-separated string, or a list of names and ids.
        arg: the argument name for error messages (`source_classes` or `target_classes`).

    Returns:
        A list of class ids (0..9), in the order given.

    Raises:
        TlkitError: empty, unknown or repeated classes.

    Example:
        >>> parse_classes("ankle boot, 0,Coat")
        [9, 0, 4]
    """
    flag = "--" + arg.replace("_", "-")
    tokens = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not tokens or any(isinstance(t, str) and not t for t in tokens):
        raise TlkitError(f"{flag} must list Fashion-MNIST classes, comma-separated (names or "
                         f"ids 0-9). Received: {spec!r}.")
    lookup = {_norm(n): i for i, n in enumerate(FASHION_CLASSES)}
    ids = []
    for t in tokens:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool) or (
                isinstance(t, str) and t.isdigit()):
            i = int(t)
            if not 0 <= i < len(FASHION_CLASSES):
                raise TlkitError(f"{flag}: no Fashion-MNIST class id {i}; ids are 0-9 "
                                 f"({_listing()}).")
        elif isinstance(t, str) and _norm(t) in lookup:
            i = lookup[_norm(t)]
        else:
            import difflib

            close = difflib.get_close_matches(str(t), FASHION_CLASSES, n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TlkitError(f"{flag}: unknown Fashion-MNIST class {t!r}.{hint} "
                             f"Valid: {_listing()}.")
        if i in ids:
            raise TlkitError(f"{flag} lists {FASHION_CLASSES[i]!r} (id {i}) twice.")
        ids.append(i)
    return ids


def _listing():
    return ", ".join(f"{i} {n}" for i, n in enumerate(FASHION_CLASSES))


def resolve_classes(source_classes=None, target_classes=None):
    """The (source ids, target ids) of the demo's Fashion-MNIST class split.

    Defaults: source = `DEFAULT_SOURCE_CLASSES` and target = `DEFAULT_TARGET_CLASSES`; when
    only one side is given, the other side is every class it leaves out.

    Args:
        source_classes: names/ids (see `parse_classes`) the source net is pretrained on.
        target_classes: names/ids of the similar target situations.

    Returns:
        `(source_ids, target_ids)`, two lists of ids.

    Raises:
        TlkitError: unknown or repeated classes, the two sides overlap, or a side has fewer
            than two classes.

    Example:
        >>> resolve_classes()
        ([0, 1, 4, 5, 8], [2, 3, 6, 7, 9])
        >>> resolve_classes(None, "Shirt,Bag")
        ([0, 1, 2, 3, 4, 5, 7, 9], [6, 8])
    """
    if source_classes is None and target_classes is None:
        source_classes, target_classes = DEFAULT_SOURCE_CLASSES, DEFAULT_TARGET_CLASSES
    src = parse_classes(source_classes, "source_classes") if source_classes is not None else None
    tgt = parse_classes(target_classes, "target_classes") if target_classes is not None else None
    every = range(len(FASHION_CLASSES))
    if src is None:
        src = [i for i in every if i not in tgt]
    if tgt is None:
        tgt = [i for i in every if i not in src]
    both = [i for i in src if i in tgt]
    if both:
        raise TlkitError(f"--source-classes and --target-classes overlap: "
                         f"{', '.join(FASHION_CLASSES[i] for i in both)}. A class belongs to "
                         f"one side only.")
    for flag, ids in (("--source-classes", src), ("--target-classes", tgt)):
        if len(ids) < 2:
            names = ", ".join(FASHION_CLASSES[i] for i in ids) or "none"
            raise TlkitError(f"The class split leaves {len(ids)} class on the {flag[2:8]} side "
                             f"({names}); each side needs at least two (set {flag}).")
    return src, tgt


def check_fashion_mnist():
    """The folder with the Fashion-MNIST files, or a `TlkitError` saying how to install them.

    Looks in Debian's `/usr/share/datasets/fashion-mnist` (`data.FASHION_MNIST_DEBIAN`), then
    in the Keras cache (`~/.keras/datasets/fashion-mnist`); never downloads.
    """
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    for folder in (data_lib.FASHION_MNIST_DEBIAN,
                   os.path.join(keras_home, "datasets", "fashion-mnist")):
        if all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_FILES):
            return folder
    raise TlkitError(f"Fashion-MNIST files not found in {data_lib.FASHION_MNIST_DEBIAN}: install "
                     f"them with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu, as "
                     f"root; 'make data' does it).")


def _check_out_dir(out_dir):
    from tlkit import saving

    return saving.check_folder_writable(out_dir, "--out")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise TlkitError(f"seed must be an int >= 0. Received: seed={seed!r}.")
    return int(seed)


# ---------------------------------------------------------------------------------------------
# the source network and the data


def build_source_net(num_classes, widths=FULL.widths, convs=FULL.convs,
                     input_shape=IMAGE_SHAPE, pooling=FULL.pooling, name="demo_vgg"):
    """The demo's source classifier: a small VGG from `vgg_block`, raw pixels in.

    `Rescaling(1/255)` (named `preprocess_rescale`, so backbones treat it as preprocessing),
    one `vgg_block` per entry of `widths` (BN before ReLU; each block is one stage), then
    `classifier_head` (`pooling`, dropout 0.2, softmax). Standard layers only.
    BatchNormalization uses momentum `BN_MOMENTUM` (0.9, PyTorch's default) instead of Keras's
    0.99, so that the moving statistics are usable after the few hundred steps of a small or
    quick run (with 0.99 a 40-step run evaluates with nearly its initial statistics).

    Args:
        num_classes: output classes.
        widths: filters per block, e.g. (32, 64, 128).
        convs: 3x3 convolutions per block.
        input_shape: (height, width, channels).
        pooling: `"flatten"`, `"avg"` or `"max"` (the head's first layer).
        name: the model name.

    Returns:
        An uncompiled Functional `keras.Model`.

    Example:
        >>> build_source_net(5).output_shape
        (None, 5)
    """
    import keras

    from tlkit.blocks import classifier_head, vgg_block

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    for i, filters in enumerate(widths, start=1):
        x = vgg_block(x, int(filters), int(convs), bn="before", name=f"block{i}")
    outputs = classifier_head(x, num_classes, pooling=pooling, dropout=0.2, name="head")
    model = keras.Model(inputs, outputs, name=name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def _subset(ds, ids, per_class, val_per_class, test_per_class, seed):
    """`ds` restricted to classes `ids`, with caps per class on train, val and test."""
    out = ds.select(ids, per_class=per_class, seed=seed)
    if val_per_class is not None:
        v = ds.select(ids, eval_per_class=val_per_class, seed=seed + 1)
        out = dataclasses.replace(out, x_val=v.x_val, y_val=v.y_val)
    if test_per_class is not None:
        t = ds.select(ids, eval_per_class=test_per_class, seed=seed + 2)
        out = dataclasses.replace(out, x_test=t.x_test, y_test=t.y_test)
    return out


def situations(fashion, digits, target_ids, config, seed=0):
    """The four target data sets, by situation name.

    Args:
        fashion: Fashion-MNIST as a `tlkit.data.Dataset` (all ten classes, 28x28x1).
        digits: scikit-learn's digits at 28x28x1.
        target_ids: the Fashion-MNIST target class ids (the similar situations).
        config: a `DemoConfig`.
        seed: seed of the subsets.

    Returns:
        `{situation: Dataset}` in `SITUATIONS` order.
    """
    c = config
    all_digits = list(range(digits.num_classes))
    return {
        "small-similar": _subset(fashion, target_ids, c.small_per_class, c.small_val_per_class,
                                 c.test_per_class, seed),
        "small-dissimilar": _subset(digits, all_digits, c.small_per_class,
                                    c.small_val_per_class, None, seed),
        "large-similar": _subset(fashion, target_ids, c.large_per_class, c.large_val_per_class,
                                 c.test_per_class, seed),
        "large-dissimilar": digits,
    }


# ---------------------------------------------------------------------------------------------
# the demo


class _Progress:
    """Timestamped progress lines: `[mm:ss] message`."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start

    def __call__(self, message=""):
        if self.verbose:
            print(f"[{_clock(self.elapsed())}] {message}", flush=True)


def _clock(seconds):
    m, s = divmod(int(round(seconds)), 60)
    return f"{m:02d}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


def run_demo(out_dir=DEFAULT_OUT, source_classes=None, target_classes=None, quick=False, seed=0,
             *, config=None, verbose=1):
    """Reproduce the size-versus-similarity matrix on Fashion-MNIST and digits, offline.

    See the module docstring for the steps and the files. Everything is validated before any
    data is read or any model is trained.

    Args:
        out_dir: output folder (created; files in it are overwritten).
        source_classes: Fashion-MNIST classes (names or ids, a list or a comma-separated
            string) to pretrain the source net on. Default `DEFAULT_SOURCE_CLASSES`, or the
            classes `target_classes` leaves out.
        target_classes: the Fashion-MNIST classes of the similar situations. Default
            `DEFAULT_TARGET_CLASSES`, or the classes `source_classes` leaves out.
        quick: use `QUICK` (reduced sizes and epochs, under 3 minutes on 2 cores) instead of
            `FULL` (under 20 minutes).
        seed: seeds the data subsets, the initialisations and the shuffling.
        config: a `DemoConfig` that replaces `FULL`/`QUICK` (e.g. smaller knobs for tests).
        verbose: 1 prints progress (one line per run, Keras epoch lines for the source net
            and the baseline) and the table; 0 is silent.

    Returns:
        A `DemoResult`; `records` is what `matrix.json` holds.

    Raises:
        TlkitError: bad classes or class split, Fashion-MNIST files missing, bad `out_dir`
            or `seed`.
    """
    src_ids, tgt_ids = resolve_classes(source_classes, target_classes)
    seed = _check_seed(seed)
    config = config or (QUICK if quick else FULL)
    check_fashion_mnist()
    out = _check_out_dir(out_dir)
    with _quiet_logs():
        return _run(out, src_ids, tgt_ids, config, seed, verbose)


@contextlib.contextmanager
def _quiet_logs():
    """Keep TensorFlow's and absl's WARNING lines (the legacy-.h5 note on every save,
    tf.function retracing across the 20 models) out of the progress output."""
    loggers = [logging.getLogger(n) for n in ("absl", "tensorflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _run(out, src_ids, tgt_ids, config, seed, verbose):
    """The body of `run_demo`, on validated arguments."""
    import keras

    from tlkit import report as report_lib
    from tlkit import saving

    log = _Progress(verbose)
    n_runs = len(SITUATIONS) * len(METHODS)
    log(f"tlkit demo ({config.name}, seed {seed}) -> {out}/")
    log(f"source classes: {_names(src_ids)}")
    log(f"target classes (similar): {_names(tgt_ids)}; dissimilar: scikit-learn digits 0-9 "
        f"resized 8x8 -> 28x28")

    fashion = data_lib.load("fashion_mnist", seed=seed)
    digits = data_lib.load("digits", image_size=IMAGE_SHAPE[:2], channels=IMAGE_SHAPE[2],
                           val_fraction=0.1, test_fraction=0.2, seed=seed)
    source_ds = _subset(fashion, src_ids, config.source_per_class, None, config.test_per_class,
                        seed)
    targets = situations(fashion, digits, tgt_ids, config, seed)
    log("data: " + "; ".join(f"{k} {_counts(v)}" for k, v in
                             [("source", source_ds), *targets.items()]))

    # 1. the source net --------------------------------------------------------------------
    keras.utils.set_random_seed(seed)
    init_path = saving.save(build_source_net(len(src_ids), config.widths, config.convs,
                                             pooling=config.pooling),
                            out / "source_init.h5",
                            {"class_names": _names(src_ids, sep=None),
                             "note": "random initial weights of the demo's source net; the "
                                     "scratch runs start from them"})
    keras.backend.clear_session()
    widths = "-".join(map(str, config.widths))
    log(f"1/3 pretraining the source net demo_vgg ({len(config.widths)} vgg_blocks, "
        f"{widths} filters) on {len(src_ids)} Fashion-MNIST classes, "
        f"{len(source_ds.y_train)} images, {config.source_epochs} epochs")
    source_path = out / "source.h5"
    res, secs = _finetune(source_ds, init_path, "large-dissimilar", config.source_epochs,
                          config.large_batch, config.patience, seed, source_path,
                          config.pooling, verbose=2 if verbose else 0)
    source = {"classes": _names(src_ids, sep=None), "class_ids": src_ids,
              "train_images": len(source_ds.y_train), "test_images": len(source_ds.y_test),
              "epochs": config.source_epochs, "epochs_run": len(res.history.get("loss", [])),
              "test_accuracy": res.report["accuracy"], "seconds": round(secs, 2),
              "model": str(source_path), "report": str(out / "source")}
    log(f"source net: test accuracy {source['test_accuracy']:.4f} on its "
        f"{len(src_ids)} classes ({secs:.0f} s) -> {source_path}")
    del res
    _free()

    # 2. the matrix ------------------------------------------------------------------------
    log(f"2/3 the matrix: {len(SITUATIONS)} situations x {len(METHODS)} runs "
        f"({', '.join(METHODS)}), same epochs, batch size and seed per situation")
    records = []
    # One feature cache for all runs: the frozen-head phases of the three strategies that start
    # from source.h5 see the same base and images, so they share one entry per situation.
    cache_dir = out / "feature_cache"
    for situation in SITUATIONS:
        ds = targets[situation]
        small = situation.startswith("small")
        epochs = config.small_epochs if small else config.large_epochs
        batch = config.small_batch if small else config.large_batch
        log(f"{situation}: {_counts(ds)}, {ds.num_classes} classes, {epochs} epochs, "
            f"batch {batch}")
        for method in METHODS:
            backbone = init_path if method == "scratch" else source_path
            strategy = "large-dissimilar" if method == "scratch" else method  # auto stays
            path = out / "runs" / situation / f"{method}.h5"
            res, secs = _finetune(ds, backbone, strategy, epochs, batch, config.patience, seed,
                                  path, config.pooling, cache_dir=cache_dir)
            rec = {"situation": situation, "strategy": method,
                   "test_accuracy": float(res.report["accuracy"]), "seconds": round(secs, 2),
                   "macro_f1": float(res.report["macro_f1"]),
                   "data": "fashion_mnist" if situation.endswith("-similar") else "digits",
                   "classes": list(ds.class_names), "train_images": len(ds.y_train),
                   "val_images": len(ds.y_val), "test_images": len(ds.y_test),
                   "epochs": epochs, "epochs_run": len(res.history.get("loss", [])),
                   "batch_size": batch, "seed": seed,
                   "train_seconds": round(sum(p["seconds"] for p in res.report["fit"]["phases"]),
                                          2),
                   "backbone": "random init (same network)" if method == "scratch"
                   else "source.h5",
                   "textbook": method == situation, "model": str(path),
                   "report": str(path.with_suffix(""))}
            if method == "auto":
                rec["chosen"] = res.plan.strategy
                rec["reasons"] = res.report.get("reasons", [])
            records.append(rec)
            log(f"[{len(records):2d}/{n_runs}] {situation:<16} {method:<16} "
                f"test accuracy {rec['test_accuracy']:.4f}  {secs:6.1f} s")
            del res
            _free()
    mark_best(records)
    score_auto(records)
    shutil.rmtree(cache_dir, ignore_errors=True)  # tens of MB, only useful within this run

    # 3. the fashion_cnn baseline ----------------------------------------------------------
    baseline = None
    if config.baseline_per_class != 0:
        baseline = train_baseline(fashion, config, seed, out / "baseline", log,
                                  verbose=2 if verbose else 0)
        _free()

    # outputs ------------------------------------------------------------------------------
    total = log.elapsed()
    files = {"matrix_json": out / "matrix.json", "matrix_png": out / "matrix.png",
             "matrix_md": out / "matrix.md", "baseline_json": out / "baseline.json",
             "demo_json": out / "demo.json", "source": source_path}
    report_lib.write_json(records, files["matrix_json"])
    title = (f"tlkit demo ({config.name}, seed {seed}): source net pretrained on "
             f"{len(src_ids)} Fashion-MNIST classes")
    plot_matrix(records, files["matrix_png"], title=title)
    files["matrix_md"].write_text(format_markdown(records) + "\n")
    if baseline is not None:
        report_lib.write_json(baseline, files["baseline_json"])
    else:
        files.pop("baseline_json").unlink(missing_ok=True)  # no stale baseline from a past run
    summary = {"config": dataclasses.asdict(config), "seed": seed, "quick": config.name == "quick",
               "source_classes": source["classes"], "target_classes": _names(tgt_ids, sep=None),
               "source": source, "baseline": baseline, "seconds": round(total, 1),
               "command": _command(src_ids, tgt_ids, config, seed, out),
               "files": {k: str(v) for k, v in files.items()}}
    report_lib.write_json(summary, files["demo_json"])
    if verbose:
        print()
        print(format_table(records))
        for r in records:
            if r["strategy"] == "auto":
                print(f"auto in {r['situation']}: chose {r.get('chosen')}, "
                      f"{r['gap_to_best_pp']:+.1f} pp from the row's best strategy, cost "
                      f"{r.get('cost_ratio', float('nan')):.2f}x the chosen strategy alone")
        if baseline is not None:
            print()
            print(format_baseline(baseline))
        print()
        for key in ("matrix_png", "matrix_json", "matrix_md", "baseline_json", "demo_json"):
            if key in files:
                print(f"wrote {files[key]}")
        print(f"models: {source_path}, {out / 'runs'}/<situation>/<strategy>.h5 (reports beside "
              f"them)")
        print(f"total {_clock(total)} ({total:.0f} s)")
        sys.stdout.flush()
    return DemoResult(records, baseline, source, out, round(total, 1), files)


def _finetune(ds, backbone, strategy, epochs, batch, patience, seed, path, pooling,
              cache_dir=None, verbose=0):
    """One tlkit.finetune run; returns (FinetuneResult, wall seconds)."""
    from tlkit.transfer import finetune

    t0 = time.perf_counter()
    res = finetune(data=ds, backbone=str(backbone), strategy=strategy, epochs=epochs,
                   weights=None, out=path, batch_size=batch, augment=False, seed=seed,
                   patience=patience, pooling=pooling, autotune=False, cache_dir=cache_dir,
                   verbose=verbose)
    return res, time.perf_counter() - t0


def _free():
    import keras

    keras.backend.clear_session()
    gc.collect()


def _names(ids, sep=", "):
    names = [FASHION_CLASSES[i] for i in ids]
    return names if sep is None else sep.join(names) + f" (ids {', '.join(map(str, ids))})"


def _counts(ds):
    return f"{len(ds.y_train)} train / {len(ds.y_val)} val / {len(ds.y_test)} test"


def _command(src_ids, tgt_ids, config, seed, out):
    parts = ["tlkit demo"]
    if config.name == "quick":
        parts.append("--quick")
    if (src_ids, tgt_ids) != resolve_classes():
        parts += [f"--source-classes {','.join(map(str, src_ids))}",
                  f"--target-classes {','.join(map(str, tgt_ids))}"]
    if seed:
        parts.append(f"--seed {seed}")
    if str(out) != DEFAULT_OUT:
        parts.append(f"--out {out}")
    return " ".join(parts)


def train_baseline(fashion, config, seed, out_dir, log=print, verbose=0):
    """Train the zoo's `fashion_cnn` on all ten Fashion-MNIST classes; return its record.

    The model is `Rescaling(1/255)` then `fashion_cnn` as registered in `tlkit.zoo`
    (conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, FC 600-120), trained with Adam (lr 1e-3) for up
    to `config.baseline_epochs` epochs (the learning rate drops x0.3 when the validation loss
    stalls; EarlyStopping keeps the epoch with the best validation accuracy), then evaluated on
    the 10,000 test images.

    Args:
        fashion: Fashion-MNIST as a `tlkit.data.Dataset`.
        config: a `DemoConfig` (`baseline_per_class`, `baseline_epochs`, `baseline_batch`,
            `test_per_class`).
        seed: seeds the subset, the initialisation and the shuffling.
        out_dir: folder for `fashion_cnn.h5` and its report.
        log: a function that prints a progress line.
        verbose: Keras verbosity of `fit` (2: one line per epoch).

    Returns:
        A JSON-able dict: model, test_accuracy, seconds, epochs, images, file paths.
    """
    import keras

    from tlkit import report as report_lib
    from tlkit import saving, zoo

    t0 = time.perf_counter()
    ds = _subset(fashion, None, config.baseline_per_class, None, config.test_per_class, seed)
    log(f"3/3 the seeds' baseline: fashion_cnn on all {ds.num_classes} Fashion-MNIST classes, "
        f"{_counts(ds)}, up to {config.baseline_epochs} epochs")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(ds.image_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    model = keras.Model(inputs, zoo.entry("fashion_cnn").fn(x, ds.num_classes),
                        name="fashion_cnn")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    out_dir = pathlib.Path(out_dir)
    (out_dir / "fashion_cnn").mkdir(parents=True, exist_ok=True)
    # Accuracy is the target here: keep the epoch with the best validation accuracy.
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                               restore_best_weights=True),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1,
                                                   min_lr=1e-5),
                 keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.CSVLogger(str(out_dir / "fashion_cnn" / "history.csv"))]
    train_ds = data_lib.pipeline(ds.x_train, ds.y_train, batch_size=config.baseline_batch,
                                 shuffle=True, seed=seed, autotune=False)
    val_ds = data_lib.pipeline(ds.x_val, ds.y_val, batch_size=512, autotune=False)
    h = model.fit(train_ds, validation_data=val_ds, epochs=config.baseline_epochs,
                  callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles
    history = {k: [float(v) for v in vs] for k, vs in h.history.items()}
    history["phase"] = ["full"] * len(history.get("loss", []))
    rep = report_lib.evaluate(model, ds.x_test, ds.y_test, ds.class_names,
                              out_dir=out_dir / "fashion_cnn", history=history, batch_size=512,
                              extra={"data": ds.summary()})
    path = saving.save(model, out_dir / "fashion_cnn.h5",
                       {"class_names": ds.class_names, "backbone": "zoo:fashion_cnn",
                        "data": ds.summary(), "metrics": {"accuracy": rep["accuracy"],
                                                          "macro_f1": rep["macro_f1"]}})
    secs = time.perf_counter() - t0
    record = {"model": "fashion_cnn", "data": "fashion_mnist", "classes": ds.num_classes,
              "test_accuracy": float(rep["accuracy"]), "macro_f1": float(rep["macro_f1"]),
              "seconds": round(secs, 2), "epochs": config.baseline_epochs,
              "epochs_run": len(history.get("loss", [])),
              "train_images": len(ds.y_train), "test_images": len(ds.y_test),
              "target": BASELINE_TARGET, "meets_target": bool(rep["accuracy"] >= BASELINE_TARGET),
              "seed_figures": {"dnn": 0.86, "cnn": 0.90}, "config": config.name,
              "file": str(path), "report": str(out_dir / "fashion_cnn")}
    log(f"fashion_cnn: test accuracy {record['test_accuracy']:.4f} ({secs:.0f} s) -> {path}")
    return record


# ---------------------------------------------------------------------------------------------
# table, Markdown and heatmap


def mark_best(records):
    """Set `best` on every record: True for the highest test accuracy of its situation (ties
    all count). Returns `records`."""
    for situation in {r["situation"] for r in records}:
        rows = [r for r in records if r["situation"] == situation]
        top = max(r["test_accuracy"] for r in rows)
        for r in rows:
            r["best"] = r["test_accuracy"] == top
    return records


def score_auto(records):
    """Add to each `auto` record how it compares with its row: the chosen strategy's own
    run (accuracy, seconds, cost ratio) and the gap to the row's best strategy."""
    for r in records:
        if r["strategy"] != "auto":
            continue
        row = {x["strategy"]: x for x in records if x["situation"] == r["situation"]}
        chosen = row.get(r.get("chosen"))
        best = max(x["test_accuracy"] for k, x in row.items() if k in STRATEGIES)
        r["gap_to_best_pp"] = round(100 * (best - r["test_accuracy"]), 2)
        r["within_1pp_of_best"] = r["gap_to_best_pp"] <= 1.0
        if chosen is not None:
            r["chosen_alone_seconds"] = chosen["seconds"]
            r["cost_ratio"] = round(r["seconds"] / max(chosen["seconds"], 1e-9), 3)
    return records


def _grid(records):
    """{(situation, strategy): record} and the situations / strategies present, in order."""
    cells = {(r["situation"], r["strategy"]): r for r in records}
    rows = [s for s in SITUATIONS if any(k[0] == s for k in cells)]
    cols = [m for m in METHODS if any(k[1] == m for k in cells)]
    return cells, rows, cols


def format_table(records):
    """The printed table: situations as rows, strategies as columns, "accuracy  seconds",
    `*` after the best of each row.

    Example:
        >>> recs = mark_best([{"situation": "small-similar", "strategy": "scratch",
        ...                    "test_accuracy": 0.5, "seconds": 2.0}])
        >>> print(format_table(recs).splitlines()[-1])
        small-similar     0.500     2s *
    """
    cells, rows, cols = _grid(records)
    width = max(17, *(len(c) + 2 for c in cols))
    lines = ["test accuracy and seconds per run; * = best in the row; the strategy named like "
             "the situation is the textbook choice",
             f"{'situation':<17} " + "".join(f"{c:<{width}}" for c in cols).rstrip()]
    for s in rows:
        parts = []
        for c in cols:
            r = cells.get((s, c))
            text = "-" if r is None else (f"{r['test_accuracy']:.3f} {r['seconds']:5.0f}s"
                                          + (" *" if r.get("best") else ""))
            parts.append(f"{text:<{width}}")
        lines.append(f"{s:<17} " + "".join(parts).rstrip())
    return "\n".join(lines)


def format_baseline(baseline):
    """One line about the `fashion_cnn` baseline and the 91% target."""
    verdict = "meets" if baseline["meets_target"] else "is below"
    note = "" if baseline.get("config") != "quick" else " (quick run: reduced data and epochs)"
    return (f"baseline: fashion_cnn on all 10 Fashion-MNIST classes: test accuracy "
            f"{baseline['test_accuracy']:.4f} ({baseline['train_images']} training images, "
            f"{baseline['epochs_run']} epochs, {baseline['seconds']:.0f} s); {verdict} the "
            f"{baseline['target']:.0%} target (seed figures: DNN ~86%, CNN ~90%){note}")


def format_markdown(records):
    """The table as Markdown (best per row in bold, textbook cell marked with a dagger)."""
    cells, rows, cols = _grid(records)
    lines = ["| situation | " + " | ".join(f"`{c}`" for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for s in rows:
        any_r = next(cells[(s, c)] for c in cols if (s, c) in cells)
        label = f"`{s}` ({any_r.get('train_images', '?')} train images)"
        parts = []
        for c in cols:
            r = cells.get((s, c))
            if r is None:
                parts.append("-")
                continue
            text = f"{100 * r['test_accuracy']:.1f}% ({r['seconds']:.0f} s)"
            if r.get("best"):
                text = f"**{text}**"
            if c == s:
                text += " †"
            parts.append(text)
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def plot_matrix(records, path, title=None):
    """Save the matrix as a heatmap PNG: situations as rows, strategies as columns.

    Each cell shows the test accuracy (large) and the run's seconds; its colour is how many
    points it is below the best of its row (green = best). A thick black frame marks the best
    of each row, a dashed blue frame the textbook strategy of the situation.

    Args:
        records: the `run_demo` records (with `best` set by `mark_best`).
        path: the PNG file to write.
        title: the figure title.

    Returns:
        The path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tlkit.report import save_figure

    cells, rows, cols = _grid(records)
    acc = np.full((len(rows), len(cols)), np.nan)
    for i, s in enumerate(rows):
        for j, c in enumerate(cols):
            if (s, c) in cells:
                acc[i, j] = cells[(s, c)]["test_accuracy"]
    gap = 100 * (acc - np.nanmax(acc, axis=1, keepdims=True))
    span = float(np.clip(-np.nanmin(gap) if np.isfinite(gap).any() else 10, 5, 30))
    fig, ax = plt.subplots(figsize=(2.3 * len(cols) + 3.2, 1.2 * len(rows) + 1.6))
    im = ax.imshow(gap, cmap="RdYlGn", vmin=-span, vmax=0, aspect="auto")
    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("points below the row's best", fontsize=11)
    ax.set_xticks(range(len(cols)), cols, fontsize=12)
    ylabels = []
    for s in rows:
        r = next(cells[(s, c)] for c in cols if (s, c) in cells)
        where = {"fashion_mnist": "Fashion-MNIST", "digits": "digits"}.get(r.get("data"), "")
        ylabels.append(f"{s}\n{r.get('train_images', '?')} train imgs, {where}")
    ax.set_yticks(range(len(rows)), ylabels, fontsize=12)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("strategy (scratch = the same network from random weights)", fontsize=12,
                  labelpad=10)
    for i, s in enumerate(rows):
        for j, c in enumerate(cols):
            r = cells.get((s, c))
            if r is None:
                continue
            ax.text(j, i - 0.1, f"{100 * r['test_accuracy']:.1f}%", ha="center", va="center",
                    fontsize=16, fontweight="bold" if r.get("best") else "normal")
            ax.text(j, i + 0.27, f"{r['seconds']:.0f} s" + ("  best" if r.get("best") else ""),
                    ha="center", va="center", fontsize=10)
            if r.get("best"):
                ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False,
                                       edgecolor="black", linewidth=3))
            if c == s:
                ax.add_patch(Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False,
                                       edgecolor="#1f4e9c", linewidth=2, linestyle="--"))
    ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set_title(title or "tlkit demo: test accuracy per situation and strategy", fontsize=13,
                 pad=12)
    fig.text(0.01, 0.01, "black frame: best in the row    dashed blue frame: the textbook "
                         "strategy for the situation    cell: test accuracy, training+eval "
                         "seconds", fontsize=9.5, color="#333333")
    return save_figure(fig, pathlib.Path(path))


__all__ = ["run_demo", "DemoResult", "DemoConfig", "FULL", "QUICK", "SITUATIONS", "METHODS",
           "DEFAULT_SOURCE_CLASSES", "DEFAULT_TARGET_CLASSES", "parse_classes",
           "resolve_classes", "check_fashion_mnist", "build_source_net", "situations",
           "train_baseline", "mark_best", "format_table", "format_baseline", "format_markdown",
           "plot_matrix"]
