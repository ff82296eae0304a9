"""`advise`: one pass of the frozen base over the data, scores per stage, a recommendation.

For each backbone the frozen base runs once over the training and validation images, and
the globally average-pooled output of every stage is tapped on the way (one model with an
output per stage). Each stage then gets LogME, cosine kNN accuracy and a linear probe's
validation accuracy (`tlkit.advise.scores`); `tlkit.advise.recommend` turns those and the
data's facts into a strategy, an unfreeze depth and learning rates, with the reasons. The
last stage's pooled features are exactly what a head phase trains on, so they go into the
feature cache (`cache_dir`) under the key a following `finetune` looks up.

Backbones are measured one after another and only their scores are kept, so memory is that of
the largest one; it is estimated before its pass, and a pass that would not fit stops first.
"""

import dataclasses
import time

import numpy as np

from tlkit import data as data_lib
from tlkit.advise import plot, scores, taps
from tlkit.advise import recommend as recommend_lib
from tlkit.core import fileio
from tlkit.core.errors import TlkitError, suggest
from tlkit.data import data_folder
from tlkit.deploy import saving
from tlkit.models import backbones as backbones_lib
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.training import feature_cache, frozen, strategies

# Training rows the scores use at most (a seeded, stratified subset): LogME and the probe cost
# a decomposition of rows x channels each, so they read fewer rows than the cheap kNN vote.
# Measured on ResNet50's stages (up to 2,048 channels): 1,000 rows keep the scoring to a few
# seconds against a pass of tens of seconds; the scores compare stages and backbones on the
# same rows, which is what they are for.
MAX_SCORE_ROWS = 1000
MAX_KNN_ROWS = 5000


@dataclasses.dataclass
class Advice:
    """What `advise` measured and recommends. `to_dict()` is `advice.json`."""

    data: dict
    backbones: list
    ranking: list
    choice: dict
    seconds: float = 0.0

    def to_dict(self):
        return dataclasses.asdict(self)

    def table(self):
        """The console table: one line per backbone and stage, then the choice and reasons."""
        lines = [f"{'backbone':<18} {'stage':<8} {'size':>9} {'LogME':>8} {'kNN':>6} "
                 f"{'probe':>6}"]
        for b in self.backbones:
            for s in b["stages"]:
                size = "x".join(map(str, s["resolution"]))
                lines.append(f"{b['backbone'][:18]:<18} {s['name']:<8} {size:>9} "
                             f"{s['logme']:>8.3f} {s['knn_accuracy']:>6.3f} "
                             f"{s['linear_probe_accuracy']:>6.3f}")
        if len(self.backbones) > 1:
            lines.append("ranking (last stage's LogME; no absolute scale: valid within this "
                         "data set only): " + " > ".join(self.ranking))
        c = self.choice
        lines.append(f"recommendation: {c['backbone']} --strategy {c['strategy']}"
                     + (f" --unfreeze {c['unfreeze']}" if c.get("unfreeze") else ""))
        lines.extend(f"  - {r}" for r in c["reasons"])
        return "\n".join(lines)


def advise(data, backbones="mobilenet_v2", *, weights="imagenet", image_size=None,
           batch_size=32, seed=0, val_fraction=0.1, test_fraction=0.1, on_bad_image="skip",
           out=None, cache_dir=None, verbose=1):
    """Measure how well each backbone's frozen stages fit `data` and recommend a plan.

    Args:
        data: a source for `tlkit.data.load`, or a loaded `tlkit.data.Dataset`.
        backbones: a name, a comma-separated list, a list of names, or built
            `tlkit.models.backbones.Backbone` objects.
        weights: the weights to build named backbones with.
        image_size: input size instead of each backbone's default.
        batch_size, seed, val_fraction, test_fraction, on_bad_image: as for `finetune`.
        out: folder for `advice.json` and `advice.png` (None: nothing written).
        cache_dir: feature cache folder: the last stage's features are stored there for a
            `finetune` on the same data and backbone (`--cache-dir`) to reuse.
        verbose: 1 prints progress and the table.

    Returns:
        An `Advice`.

    Example:
        >>> a = advise("digits", "zoo:simple_cnn", weights=None, verbose=0)  # doctest: +SKIP
        >>> a.choice["strategy"]  # doctest: +SKIP
        'large-dissimilar'
    """
    started = time.perf_counter()
    items = _backbone_list(backbones, backbones_lib)
    if out is not None:
        out = saving.check_folder_writable(out, "--out")
        fileio.check_outside(out, data_folder(data), "--out")
    if isinstance(data, data_lib.Dataset):
        dataset = data
    else:
        first = items[0]
        shape = first.input_shape if not isinstance(first, str) else \
            resolve_input_shape(first, image_size)
        dataset = data_lib.load_for(data, shape, seed=seed, val_fraction=val_fraction,
                                    test_fraction=test_fraction, on_bad_image=on_bad_image,
                                    verbose=verbose)
    facts = data_facts(dataset)
    results = []
    for item in items:
        bb = item if not isinstance(item, str) else backbones_lib.build(
            item, resolve_input_shape(item, image_size), weights=weights)
        results.append(_measure(bb, data_lib.load_for(dataset, bb.input_shape), facts,
                                batch_size, seed, cache_dir, verbose))
    ranking = [r["backbone"] for r in sorted(
        results, key=lambda r: (r["stages"][-1]["logme"],
                                r["stages"][-1]["linear_probe_accuracy"]), reverse=True)]
    best = next(r for r in results if r["backbone"] == ranking[0])
    choice = {"backbone": best["backbone"], **best["recommendation"]}
    if len(results) > 1:
        choice["reasons"] = [f"{best['backbone']} ranks first of {len(results)} backbones by "
                             f"the last stage's LogME on this data"] + choice["reasons"]
    advice = Advice(facts, results, ranking, choice, round(time.perf_counter() - started, 2))
    if out is not None:
        fileio.write_json(advice.to_dict(), out / "advice.json")
        plot.save_scores(advice, out / "advice.png")
    if verbose:
        print(advice.table())
    return advice


def data_facts(dataset):
    """Images per class, balance, classes: what the recommendation reads of the data."""
    counts = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    small = [dataset.class_names[i] for i in np.flatnonzero(counts < 2)]
    if small:
        raise TlkitError(f"Class(es) {', '.join(map(str, small[:5]))} have fewer than 2 "
                         f"training images: advise needs at least 2 per class (the "
                         f"validation split and kNN need them). Add images or drop the class.")
    if len(dataset.y_val) == 0:
        raise TlkitError("advise needs a validation split: give val_fraction > 0 "
                         "(--val-fraction).")
    return {"num_classes": dataset.num_classes, "train": int(len(dataset.y_train)),
            "val": int(len(dataset.y_val)),
            "per_class_min": int(counts.min()), "per_class_median": float(np.median(counts)),
            "per_class_max": int(counts.max()),
            "balance": round(float(counts.min() / max(1, counts.max())), 3),
            "image_shape": list(dataset.image_shape)}


def _backbone_list(backbones, backbones_lib):
    if isinstance(backbones, str):
        backbones = [b.strip() for b in backbones.split(",") if b.strip()]
    elif not isinstance(backbones, (list, tuple)):
        backbones = [backbones]
    if not backbones:
        raise TlkitError("Give at least one backbone (--backbone NAME[,NAME...]).")
    for b in backbones:
        if isinstance(b, str) and not (b.startswith("zoo:") or b.lower().endswith(
                (".h5", ".keras")) or b in backbones_lib.names()):
            raise suggest(b, backbones_lib.names(), "backbone")
    return list(backbones)


def _measure(bb, dataset, facts, batch_size, seed, cache_dir, verbose):
    """One backbone: the tapped pass, the scores per stage, the recommendation."""
    t0 = time.perf_counter()
    plan = strategies.plan("small-similar", bb, dataset.summary())
    model = plan.build_model(dataset.num_classes)
    plan.apply(model, plan.phases[0])  # frozen as in a head phase: the cache key matches
    tapped = taps.stage_model(plan.base_of(model), bb.stages)
    channels = [int(o.shape[-1]) for o in tapped.outputs]
    _check_memory(bb, len(dataset.y_train) + len(dataset.y_val), sum(channels))
    if verbose:
        print(f"tlkit: advise: {bb.name}: one pass over {len(dataset.y_train):,} training + "
              f"{len(dataset.y_val):,} validation images, {len(bb.stages)} stages tapped")
    train = taps.features(tapped, dataset.x_train, dataset.y_train, batch_size=batch_size,
                          verbose=verbose)
    val = taps.features(tapped, dataset.x_val, dataset.y_val, batch_size=batch_size,
                        verbose=verbose)
    if cache_dir is not None:
        extractor = frozen.feature_extractor(model)
        for name, x, (feats, labels) in (("train", dataset.x_train, train),
                                         ("val", dataset.x_val, val)):
            feature_cache.store(extractor, x, feats[-1], labels, cache_dir, name=name,
                                seed=seed)
    pass_seconds = time.perf_counter() - t0
    rows = _subset(train[1], MAX_SCORE_ROWS, seed)
    knn_rows = _subset(train[1], MAX_KNN_ROWS, seed)
    stage_rows = []
    for s, f_train, f_val in zip(bb.stages, train[0], val[0]):
        sc = {"logme": scores.logme(f_train[rows], train[1][rows]),
              "knn_accuracy": scores.knn_accuracy(f_train[knn_rows], train[1][knn_rows],
                                                  f_val, val[1]),
              "linear_probe_accuracy": scores.linear_probe_accuracy(
                  f_train[rows], train[1][rows], f_val, val[1], seed=seed)}
        stage_rows.append({"name": s.name, "resolution": list(s.resolution),
                           "channels": int(f_train.shape[1]), **sc})
    native = (backbones_lib.spec(bb.name).default_size
              if bb.source == "keras.applications" else None)
    facts = {**facts, "base_params": int(bb.model.count_params()),
             "random_weights": bb.weights is None and bb.source != "file",
             "resolution_ratio": (round(bb.input_shape[0] / native, 3) if native else None)}
    defaults = {name: _rates(strategies.plan(name, bb)) for name in strategies.STRATEGIES}
    rec = recommend_lib.recommend(
        [{"probe": r["linear_probe_accuracy"], "knn": r["knn_accuracy"], "logme": r["logme"]}
         for r in stage_rows], facts, [r["name"] for r in stage_rows], defaults)
    del tapped, model
    return {"backbone": bb.name, "weights": None if bb.weights is None else str(bb.weights),
            "input_shape": list(bb.input_shape), "stages": stage_rows, "recommendation": rec,
            "random_weights": facts["random_weights"],
            "seconds": {"pass": round(pass_seconds, 2),
                        "total": round(time.perf_counter() - t0, 2)}}


def _rates(plan):
    phases = plan.phases
    return {"learning_rate": phases[0].learning_rate,
            "fine_tune_lr": phases[1].learning_rate if len(phases) > 1 else None}


def _subset(labels, limit, seed):
    """Sorted positions of at most about `limit` items, each class in proportion, >= 2 each."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        k = min(len(pos), max(2, int(round(limit * len(pos) / n))))
        picked.append(rng.choice(pos, k, replace=False))
    return np.sort(np.concatenate(picked))


def _check_memory(bb, n_images, n_features):
    """Stop before the pass when its features and the model would not fit in memory."""
    need = n_images * n_features * 4 * 2 + bb.model.count_params() * 4 * 3
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f
                         if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        return
    if need > avail:
        raise TlkitError(f"advise on {bb.name} needs about {need / 2**30:.1f} GiB (features of "
                         f"{n_images:,} images x {n_features:,} channels, and the model) but "
                         f"{avail / 2**30:.1f} GiB are available: use fewer images or a "
                         f"smaller --image-size.")


__all__ = ["Advice", "advise", "data_facts"]
