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
    >>> from tlkit.experiments import demo
    >>> demo.resolve_classes("Sandal,Bag", None)  # the target side defaults to the rest
    ([5, 8], [0, 1, 2, 3, 4, 6, 7, 9])
    >>> result = demo.run_demo("/tmp/tlkit-demo", quick=True)  # doctest: +SKIP
    >>> sorted({r["situation"] for r in result.records})  # doctest: +SKIP
    ['large-dissimilar', 'large-similar', 'small-dissimilar', 'small-similar']
"""

import dataclasses
import gc
import pathlib
import shutil
import sys
import time

from tlkit import data as data_lib
from tlkit.core import fileio
from tlkit.experiments.classes import (
    _check_out_dir, _check_seed, check_fashion_mnist, parse_classes, resolve_classes,
)
from tlkit.experiments.config import (
    DEFAULT_OUT, DEFAULT_SOURCE_CLASSES, DEFAULT_TARGET_CLASSES, FASHION_CLASSES, FULL,
    IMAGE_SHAPE, METHODS, QUICK, SITUATIONS, STRATEGIES, DemoConfig, DemoResult,
)
from tlkit.experiments import reuse
from tlkit.experiments.matrix_plot import plot_matrix
from tlkit.experiments.networks import build_source_net, train_baseline
from tlkit.experiments.situations import _counts, _names, _subset, situations
from tlkit.experiments.table import (
    format_baseline, format_markdown, format_table, mark_best, score_auto,
)
from tlkit.core.logs import quiet_tf_logs
from tlkit.deploy import saving
from tlkit.experiments.config import CURVE_STRATEGIES
from tlkit.workflows.curve import curve
# finetune_lib.finetune is looked up at each run: bench/bench_recipes.py wraps it
from tlkit.workflows import finetune as finetune_lib


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
    with quiet_tf_logs():
        return _run(out, src_ids, tgt_ids, config, seed, verbose)


def _run(out, src_ids, tgt_ids, config, seed, verbose):
    """The body of `run_demo`, on validated arguments."""
    import keras

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
    source_path, init_path = out / "source.h5", out / "source_init.h5"
    key = reuse.source_key(src_ids, config, seed)
    cached = reuse.cached(out, reuse.SOURCE_RECORD, key, [source_path, init_path])
    widths = "-".join(map(str, config.widths))
    if cached is not None:
        source = cached
        log(f"1/4 the source net demo_vgg: reusing {source_path} (same classes, settings and "
            f"seed; test accuracy {source['test_accuracy']:.4f}); delete it to retrain")
    else:
        keras.utils.set_random_seed(seed)
        saving.save(build_source_net(len(src_ids), config.widths, config.convs,
                                     pooling=config.pooling), init_path,
                    {"class_names": _names(src_ids, sep=None), "untrained": True,
                     "note": "random initial weights of the demo's source net; the scratch "
                             "runs start from them"})
        keras.backend.clear_session()
        log(f"1/4 pretraining the source net demo_vgg ({len(config.widths)} vgg_blocks, "
            f"{widths} filters) on {len(src_ids)} Fashion-MNIST classes, "
            f"{len(source_ds.y_train)} images, {config.source_epochs} epochs")
        res, secs = _finetune(source_ds, init_path, "large-dissimilar", config.source_epochs,
                              config.large_batch, config.patience, seed, source_path,
                              config.pooling, verbose=2 if verbose else 0)
        source = {"classes": _names(src_ids, sep=None), "class_ids": src_ids,
                  "train_images": len(source_ds.y_train), "test_images": len(source_ds.y_test),
                  "epochs": config.source_epochs,
                  "epochs_run": len(res.history.get("loss", [])),
                  "test_accuracy": res.report["accuracy"], "seconds": round(secs, 2),
                  "model": str(source_path), "report": str(out / "source"), "key": key}
        fileio.write_json(source, out / reuse.SOURCE_RECORD)
        log(f"source net: test accuracy {source['test_accuracy']:.4f} on its "
            f"{len(src_ids)} classes ({secs:.0f} s) -> {source_path}")
        del res
        _free()

    # 2. the matrix ------------------------------------------------------------------------
    log(f"2/4 the matrix: {len(SITUATIONS)} situations x {len(METHODS)} runs "
        f"({', '.join(METHODS)}), same budget, batch size and seed per situation")
    records = []
    # One feature cache for all runs: the frozen-head phases of the three strategies that start
    # from source.h5 see the same base and images, so they share one entry per situation.
    cache_dir = out / "feature_cache"
    for situation in SITUATIONS:
        ds = targets[situation]
        small = situation.startswith("small")
        epochs = config.small_epochs if small else config.large_epochs
        batch = config.small_batch if small else config.large_batch
        budget = "the default budget by steps" if epochs is None else f"{epochs} epochs"
        log(f"{situation}: {_counts(ds)}, {ds.num_classes} classes, {budget}, batch {batch}")
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

    # 3. the data-efficiency curves ------------------------------------------------------
    curves = {}
    if config.curve_sizes:
        log(f"3/4 data-efficiency curves: {', '.join(map(str, config.curve_sizes))} images "
            f"per class, {config.curve_seeds} seeds, transfer from source.h5 against scratch")
        curve_data = {"similar": targets["large-similar"], "dissimilar": targets["large-dissimilar"]}
        for target, ds in curve_data.items():
            curves[target] = _curve(ds, source_path, target, config, seed, out, log)
            _free()

    # 4. the fashion_cnn baseline ----------------------------------------------------------
    baseline = None
    if config.baseline_per_class != 0:
        key = reuse.baseline_key(config, seed)
        baseline = reuse.cached(out, reuse.BASELINE_RECORD, key,
                                [out / "baseline" / "fashion_cnn.h5"])
        if baseline is not None:
            log(f"4/4 the seeds' baseline: reusing {out / 'baseline' / 'fashion_cnn.h5'} (same "
                f"settings and seed; test accuracy {baseline['test_accuracy']:.4f}); delete it "
                f"to retrain")
        else:
            baseline = {**train_baseline(fashion, config, seed, out / "baseline", log,
                                         verbose=2 if verbose else 0), "key": key}
            _free()

    # outputs ------------------------------------------------------------------------------
    total = log.elapsed()
    files = {"matrix_json": out / "matrix.json", "matrix_png": out / "matrix.png",
             "matrix_md": out / "matrix.md", "baseline_json": out / "baseline.json",
             "demo_json": out / "demo.json", "source": source_path}
    for target, c in curves.items():
        files[f"curve_{target}_png"] = c.png
        files[f"curve_{target}_json"] = c.json
    fileio.write_json(records, files["matrix_json"])
    title = (f"tlkit demo ({config.name}, seed {seed}): source net pretrained on "
             f"{len(src_ids)} Fashion-MNIST classes")
    plot_matrix(records, files["matrix_png"], title=title)
    with fileio.atomic_path(files["matrix_md"], ".md") as tmp:
        pathlib.Path(tmp).write_text(format_markdown(records) + "\n")
    if baseline is not None:
        fileio.write_json(baseline, files["baseline_json"])
    else:
        files.pop("baseline_json").unlink(missing_ok=True)  # no stale baseline from a past run
    summary = {"config": dataclasses.asdict(config), "seed": seed, "quick": config.name == "quick",
               "source_classes": source["classes"], "target_classes": _names(tgt_ids, sep=None),
               "source": source, "baseline": baseline, "seconds": round(total, 1),
               "curves": {t: {"strategies": list(c.strategies), "sizes": list(c.sizes),
                              "seeds": list(c.seeds), "seconds": round(c.seconds, 1),
                              "means": _curve_means(c)} for t, c in curves.items()},
               "command": _command(src_ids, tgt_ids, config, seed, out),
               "files": {k: str(v) for k, v in files.items()}}
    fileio.write_json(summary, files["demo_json"])
    if verbose:
        print()
        print(format_table(records))
        for r in records:
            if r["strategy"] == "auto":
                print(f"auto in {r['situation']}: chose {r.get('chosen')}, "
                      f"{r['gap_to_best_pp']:+.1f} pp from the row's best strategy, cost "
                      f"{r.get('cost_ratio', float('nan')):.2f}x the chosen strategy alone")
        for target, c in curves.items():
            print()
            print(f"data-efficiency curve, {target} target (test accuracy, mean ± sd over "
                  f"{len(c.seeds)} seeds):")
            print(c.table())
        if baseline is not None:
            print()
            print(format_baseline(baseline))
        print()
        for key in ("matrix_png", "matrix_json", "matrix_md", "baseline_json", "demo_json",
                    *(f"curve_{t}_png" for t in curves)):
            if key in files:
                print(f"wrote {files[key]}")
        print(f"models: {source_path}, {out / 'runs'}/<situation>/<strategy>.h5 (reports beside "
              f"them)")
        print(f"total {_clock(total)} ({total:.0f} s)")
        sys.stdout.flush()
    return DemoResult(records, baseline, source, out, round(total, 1), files, curves or None)


def _curve(ds, source_path, target, config, seed, out, log):
    """One target's data-efficiency curve (`tlkit.curve`) in `out/curves/<target>/`."""
    small = min(config.small_batch, 16)
    res = curve(ds, str(source_path), sizes=config.curve_sizes,
                strategies=CURVE_STRATEGIES[target], seeds=config.curve_seeds,
                out=out / "curves" / target, weights=None, seed=seed, augment=False,
                batch_size=small, epochs=config.small_epochs, patience=config.patience,
                pooling=config.pooling, autotune=False, verbose=0)
    log(f"{target} curve ({res.seconds:.0f} s): " + "; ".join(
        f"k={k}: " + ", ".join(f"{s} {m:.3f}" for s, m in means.items())
        for k, means in _curve_means(res).items()))
    return res


def _curve_means(res):
    """{size: {strategy: mean accuracy}} of a curve."""
    import statistics

    return {k: {s: round(statistics.mean(r["accuracy"] for r in res.rows
                                         if r["strategy"] == s and r["images_per_class"] == k), 4)
                for s in res.strategies} for k in res.sizes}


def _finetune(ds, backbone, strategy, epochs, batch, patience, seed, path, pooling,
              cache_dir=None, verbose=0):
    """One tlkit.finetune run; returns (FinetuneResult, wall seconds)."""
    t0 = time.perf_counter()
    res = finetune_lib.finetune(
        data=ds, backbone=str(backbone), strategy=strategy, epochs=epochs, weights=None,
        out=path, batch_size=batch, augment=False, seed=seed, patience=patience,
        pooling=pooling, autotune=False, cache_dir=cache_dir,
        overwrite=True, verbose=verbose)  # the demo owns its --out: a rerun replaces
    return res, time.perf_counter() - t0


def _free():
    import keras

    keras.backend.clear_session()
    gc.collect()


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


__all__ = ["run_demo", "DemoResult", "DemoConfig", "FULL", "QUICK", "SITUATIONS", "METHODS",
           "STRATEGIES", "FASHION_CLASSES", "DEFAULT_OUT", "DEFAULT_SOURCE_CLASSES",
           "DEFAULT_TARGET_CLASSES", "parse_classes", "resolve_classes", "check_fashion_mnist",
           "build_source_net", "situations", "train_baseline", "mark_best", "score_auto",
           "format_table", "format_baseline", "format_markdown", "plot_matrix"]
