"""`tlkit.curve`: how many images do I need? Test accuracy against training images per class.

For each size k (images per class), each seed and each strategy, `curve` trains one model with
`tlkit.finetune` on k training images of every class and evaluates it on the data's whole test
split, the same images for every run, so the points differ only in what they trained on.

- **Nested, seeded draws.** For one seed the images of each class are shuffled once and the
  size-k draw is the first k of them: the draw of 5 holds the draw of 2, and the same seed
  draws the same files whatever sizes are asked for (`nested_draws`). Seed i of a curve is
  `seed + i`; it also seeds the run's initial weights and shuffling. The data's own split
  (a folder without `train/ val/ test/`) is made once, by `seed`.
- **Validation as a user with k images would have it.** Each run validates (early stopping,
  the best checkpoint) on a draw of k per class from the val split, nested the same way and
  capped at what the val split holds per class, not on the whole val split.
- **`scratch`** is the same network from random weights, trained whole: `large-dissimilar`
  with `weights=None`. For a classifier file as `backbone` (whose weights `backbones.build`
  keeps whatever `weights` says) it is the file's architecture re-initialised by
  `keras.models.clone_model`, one initialisation per seed, saved in the curve's work folder;
  layers without trainable weights (fixed preprocessing) keep theirs.
- The frozen strategies share a feature cache within the curve (a work folder inside `out`,
  removed at the end, as are the re-initialised files).

Every argument is checked before the first run (sizes, strategies, seeds, the output folder,
the data, the sizes against the smallest class, the backbone); an error leaves no files.

Example:
    >>> import tlkit
    >>> from tlkit import data
    >>> ds = data.load("digits", image_size=16, channels=1).select(["0", "1"], per_class=6)
    >>> res = tlkit.curve(ds, "zoo:simple_cnn", sizes="2,4", strategies="scratch", seeds=2,
    ...                   epochs=1, augment=False, verbose=0)
    >>> [(r["images_per_class"], r["seed"]) for r in res.rows]
    [(2, 0), (2, 1), (4, 0), (4, 1)]
    >>> all(0.0 <= r["accuracy"] <= 1.0 for r in res.rows), res.json is None
    (True, True)
"""

import contextlib
import dataclasses
import gc
import pathlib
import re
import shutil
import tempfile
import time
import warnings

import numpy as np

from tlkit import data as data_lib
from tlkit.config.settings import CURVE, DATA, MODEL, RUN
from tlkit.core import fileio
from tlkit.core.choices import STRATEGIES
from tlkit.core.errors import TlkitError, suggest
from tlkit.core.logs import quiet_tf_logs
from tlkit.deploy import saving
from tlkit.evaluation import curve_plot
from tlkit.models import backbones
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.workflows import checks
# transfer.finetune is looked up at each run: tests/workflows/test_curve.py spies on it
from tlkit.workflows import finetune as transfer

SCRATCH = "scratch"
METHODS = STRATEGIES + (SCRATCH,)  # what `strategies` may name
FILES = {"json": "curve.json", "png": "curve.png", "md": "curve.md"}


@dataclasses.dataclass
class CurveResult:
    """The rows of a curve (one per strategy x size x seed) and the files written.

    `json`, `png` and `md` are None when `curve` ran without `out`.
    """

    rows: list
    strategies: tuple
    sizes: tuple
    seeds: tuple
    chance: float
    test_images: int
    out: pathlib.Path = None
    json: pathlib.Path = None
    png: pathlib.Path = None
    md: pathlib.Path = None
    seconds: float = 0.0
    label: str = ""  # what was measured: the data and the backbone

    def table(self):
        """The printed table: sizes x strategies, mean ± sd over the seeds."""
        return curve_plot.format_table(self)

    def markdown(self):
        """curve.md's text: a caption line and a Markdown table."""
        return curve_plot.format_markdown(self)


def parse_sizes(sizes):
    """Images per class as sorted distinct ints from `"2,5,20"` or a sequence (at least 2).

    Example:
        >>> parse_sizes("20,2, 5")
        (2, 5, 20)
        >>> parse_sizes("5")
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: A curve needs at least 2 sizes (images per class), e.g. sizes='2,5,20'. Received: sizes='5'.
    """
    items = sizes.split(",") if isinstance(sizes, str) else sizes
    try:
        tokens = [str(s).strip() for s in items]
    except TypeError:
        tokens = None
    if tokens is None or not all(re.fullmatch(r"[+-]?\d+", t) for t in tokens if t) or \
            any(isinstance(s, (bool, float)) for s in items):
        raise TlkitError(f"sizes must be comma-separated whole numbers of images per class, "
                         f"e.g. 2,5,20. Received: sizes={sizes!r}.")
    values = [int(t) for t in tokens if t]
    if any(v < 1 for v in values):
        raise TlkitError(f"sizes must be positive (images per class, at least 1). "
                         f"Received: sizes={sizes!r}.")
    values = tuple(sorted(set(values)))
    if len(values) < 2:
        raise TlkitError(f"A curve needs at least 2 sizes (images per class), e.g. "
                         f"sizes='2,5,20'. Received: sizes={sizes!r}.")
    return values


def parse_strategies(strategies):
    """Strategy names from `"small-similar,scratch"` or a sequence, checked, in order given.

    Example:
        >>> parse_strategies("small-similar, scratch")
        ('small-similar', 'scratch')
    """
    items = strategies.split(",") if isinstance(strategies, str) else list(strategies)
    names = []
    for s in (str(s).strip() for s in items):
        if s and s not in METHODS:
            raise suggest(s, METHODS, "strategy")
        if s and s not in names:
            names.append(s)
    if not names:
        raise TlkitError(f"strategies names no strategy. Valid: {', '.join(METHODS)}. "
                         f"Received: strategies={strategies!r}.")
    return tuple(names)


def check_seeds(seeds):
    """The number of seeds, an int >= 2 (a curve's spread needs at least two runs)."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 2:
        raise TlkitError(f"A curve needs at least 2 seeds per point, to show the spread "
                         f"between runs. Received: seeds={seeds!r}.")
    return int(seeds)


def nested_draws(labels, num_classes, sizes, seed, cap=False):
    """{k: sorted positions of k items per class}, nested: a smaller draw is in a larger one.

    Args:
        labels: int labels of one split.
        num_classes: classes 0 .. num_classes - 1.
        sizes: the k's.
        seed: the draw's seed: one shuffle per class, each k takes its first k items.
        cap: take all a class has when it has fewer than k (else that is the caller's error).

    Example:
        >>> labels = np.array([0, 0, 0, 1, 1, 1, 1])
        >>> d = nested_draws(labels, 2, (1, 3), seed=0)
        >>> set(d[1]) <= set(d[3]), np.bincount(labels[d[3]]).tolist()
        (True, [3, 3])
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    draws = {}
    for k in sizes:
        if not cap and any(len(o) < k for o in order):
            raise TlkitError(f"size {k} is more than a class has ({min(map(len, order))}).")
        draws[k] = np.sort(np.concatenate([o[:k] for o in order]))
    return draws


def check_sizes(dataset, sizes):
    """Refuse a size larger than the training split's smallest class, naming it and its count."""
    counts = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    smallest = int(np.argmin(counts))
    if sizes[-1] > counts[smallest]:
        raise TlkitError(f"size {sizes[-1]} is more images per class than the training split "
                         f"has of class {dataset.class_names[smallest]!r} ({counts[smallest]}): "
                         f"give sizes up to {counts[smallest]}. Received: sizes="
                         f"{','.join(map(str, sizes))}.")


def curve(data, backbone=MODEL.backbone, *, sizes=CURVE.sizes, strategies=CURVE.strategies,
          seeds=CURVE.seeds, out=None, weights=MODEL.weights, image_size=DATA.image_size,
          seed=RUN.seed, epochs=None, batch_size=None, learning_rate=None, augment=None,
          patience=None, val_fraction=DATA.val_fraction, test_fraction=DATA.test_fraction,
          on_bad_image=DATA.on_bad_image, download=DATA.download, resize=DATA.resize,
          verbose=1, **finetune_options):
    """Train each strategy on k images per class for each size and seed; evaluate on one test set.

    Args:
        data: a source string for `tlkit.data.load` or a loaded `tlkit.data.Dataset`.
        backbone: as for `tlkit.finetune` (a registry name, `zoo:NAME`, a classifier file).
        sizes: images per class, `"2,5,20"` or a sequence (at least 2, each >= 1, at most the
            training split's smallest class).
        strategies: `"small-similar,scratch"` or a sequence of `METHODS` (the four strategies
            and `scratch`).
        seeds: seeds per point (>= 2): seeds `seed`, `seed + 1`, ...
        out: folder for curve.json, curve.png and curve.md (created); None writes no files.
        weights: the transfer strategies' base weights (`scratch` always starts random).
        image_size, val_fraction, test_fraction, on_bad_image, download, resize: see
            `tlkit.data.load` (the data is loaded once, split by `seed`).
        seed: the first seed, and the seed of the data's split.
        epochs, batch_size, learning_rate, augment, patience: passed to every run; None
            keeps `tlkit.finetune`'s default.
        verbose: 1 prints one line per run and the table; 0 is silent. Keras stays quiet.
        **finetune_options: other `tlkit.finetune` arguments (e.g. `dropout`, `schedule`).

    Returns:
        A `CurveResult`: `rows` of `{"strategy", "images_per_class", "seed", "accuracy",
        "seconds", ...}` (also the 95% interval, macro F1, train/val/test counts and the
        epochs each phase ran) and the paths written.
    """
    sizes, strategies, seeds = parse_sizes(sizes), parse_strategies(strategies), check_seeds(seeds)
    for name in ("data", "backbone", "strategy", "out", "report_dir", "cache_dir", "verbose"):
        if name in finetune_options:
            raise TlkitError(f"curve sets {name} for each run itself; leave it out.")
    options = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size,
                                     learning_rate=learning_rate, augment=augment,
                                     patience=patience).items() if v is not None}
    options.update(finetune_options)
    lr = options.get("learning_rate", RUN.learning_rate)
    checks.check_settings(epochs=options.get("epochs", RUN.epochs),
                            batch_size=options.get("batch_size", RUN.batch_size),
                            learning_rate=1e-3 if lr == "auto" else lr,
                            patience=options.get("patience", RUN.patience))
    if out is not None:
        out = fileio.check_folder_writable(out, "--out")
        fileio.check_outside(out, data_lib.data_folder(data), "--out")
    input_shape = resolve_input_shape(backbone, image_size)
    load = {} if isinstance(data, data_lib.Dataset) else dict(
        val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        on_bad_image=on_bad_image, download=download, verbose=0)
    dataset = data_lib.load_for(data, input_shape, resize=resize, **load)
    checks.check_splits(dataset)
    check_sizes(dataset, sizes)
    _check_backbone(backbone, input_shape, weights, strategies)
    created = fileio.created_folders(out) if out is not None else []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=".curve-work-", dir=out))
    try:
        result = _run(dataset, backbone, weights, sizes, strategies, seeds, seed, options,
                      work, verbose)
        if out is not None:
            _write(result, out, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for folder in reversed(created):  # the folders this call made, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    if verbose:
        print(result.table())
        for path in (result.json, result.png, result.md):
            if path is not None:
                print(f"wrote {path}")
    return result


def _check_backbone(backbone, input_shape, weights, strategies):
    """Build the base once, so a bad name, size or weights fails before the first run."""
    import keras

    transfer_weights = weights if any(s != SCRATCH for s in strategies) else None
    backbones.build(backbone, input_shape, weights=transfer_weights)
    keras.backend.clear_session()


def _is_file(backbone):
    return str(backbone).lower().endswith((".h5", ".keras"))


def scratch_file(path, seed, folder):
    """A copy of classifier file `path` with re-initialised weights (seeded); returns its path.

    `keras.models.clone_model` builds the same architecture with fresh weights from each
    layer's initialisers; layers without trainable weights (fixed preprocessing such as
    Rescaling or Normalization statistics) keep the file's values.
    """
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.models.load_model(path, compile=False)
    fresh = keras.models.clone_model(model)
    for old, new in zip(_leaves(model), _leaves(fresh), strict=True):
        if old.weights and not old.trainable_weights:
            new.set_weights(old.get_weights())
    target = pathlib.Path(folder) / f"scratch-seed{seed}{pathlib.Path(path).suffix}"
    saving.save(fresh, target, {"note": f"{path} re-initialised (seed {seed}) for scratch",
                                "untrained": True})  # finetune: random weights (its rates)
    keras.backend.clear_session()
    return target


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaves(layer)
        else:
            yield layer


def _run(dataset, backbone, weights, sizes, strategies, seeds, seed, options, work, verbose):
    t_start = time.perf_counter()
    run_seeds = tuple(seed + i for i in range(seeds))
    total = len(sizes) * len(run_seeds) * len(strategies)
    rows, notes = [], {}
    for s in run_seeds:
        train = nested_draws(dataset.y_train, dataset.num_classes, sizes, [s, 0])
        val = nested_draws(dataset.y_val, dataset.num_classes, sizes, [s, 1], cap=True)
        init = (scratch_file(backbone, s, work)
                if SCRATCH in strategies and _is_file(backbone) else None)
        for k in sizes:
            part = dataset.subset(train=train[k], val=val[k])
            for strategy in strategies:
                scratch = strategy == SCRATCH
                base = init if scratch and init is not None else backbone  # transfer: the file
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught, quiet_tf_logs():
                    warnings.simplefilter("always")
                    res = transfer.finetune(data=part, backbone=str(base),
                                            strategy="large-dissimilar" if scratch else strategy,
                                            weights=None if scratch else weights, out=None,
                                            report_dir=None, seed=s, cache_dir=work / "features",
                                            verbose=0, **options)
                secs = time.perf_counter() - t0
                own = [str(w.message) for w in caught if "tlkit" in str(w.filename)]
                row = _row(strategy, k, s, res, part, secs, own)
                for note in row["warnings"]:  # grouped by kind: the numbers differ per run
                    notes.setdefault(re.sub(r"[\d.]+", "#", note), []).append(note)
                rows.append(row)
                if verbose:
                    print(f"[{len(rows)}/{total}] {strategy} k={k} seed {s}: accuracy "
                          f"{row['accuracy']:.3f} ({secs:.1f} s)", flush=True)
                del res
                _free()
    for same in notes.values():  # once each kind, not once per run
        more = (f" ({len(same)} of the {total} runs, each in its row's warnings)"
                if len(same) > 1 else "")
        warnings.warn(same[0] + more, stacklevel=3)
    rows.sort(key=lambda r: (strategies.index(r["strategy"]), r["images_per_class"], r["seed"]))
    return CurveResult(rows, strategies, sizes, run_seeds, 1.0 / dataset.num_classes,
                       len(dataset.y_test), seconds=round(time.perf_counter() - t_start, 2),
                       label=f"{dataset.source}, backbone {backbone}")


def _row(strategy, k, seed, res, part, secs, notes):
    rep = res.report
    phases = [{key: p[key] for key in ("name", "epochs_run", "steps", "seconds") if key in p}
              for p in rep.get("fit", {}).get("phases", [])]
    return {"strategy": strategy, "images_per_class": int(k), "seed": int(seed),
            "accuracy": float(rep["accuracy"]), "seconds": round(secs, 2),
            "accuracy_ci95": rep.get("accuracy_ci95"), "macro_f1": rep.get("macro_f1"),
            "train_images": len(part.y_train), "val_images": len(part.y_val),
            "test_images": len(part.y_test), "trained_strategy": res.plan.strategy,
            "phases": phases, "warnings": notes}


def _free():
    import keras

    keras.backend.clear_session()
    gc.collect()


def _write(result, out, work):
    """Write the three files in the work folder, then move them into `out` together."""
    import os

    staged = {key: work / name for key, name in FILES.items()}
    fileio.write_json(result.rows, staged["json"])
    curve_plot.save_curve_figure(result, staged["png"])
    with fileio.atomic_path(staged["md"], ".md") as tmp:
        pathlib.Path(tmp).write_text(result.markdown() + "\n", encoding="utf-8")
    for key, name in FILES.items():
        os.replace(staged[key], out / name)
    result.out = out
    result.json, result.png, result.md = (out / FILES[k] for k in ("json", "png", "md"))
