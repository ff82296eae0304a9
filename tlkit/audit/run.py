"""`audit(...)`: one pass over the data, every check, and the files of an audit folder.

The order: arguments are checked, then the model (a named backbone, or a trained `--model`)
is built or loaded, then the data is indexed; nothing is written before all three succeed.
One pass reads every image at its stored size for the properties, pixel hashes and the 32 px
thumbnails of near duplicates (`properties`), one pass of the frozen model gives its pooled
features (through the feature cache, so a second audit, or a `finetune --cache-dir` on the same
data, skips it); the K-fold probe (`labels`) and the outliers' neighbour search (`duplicates`,
`outliers`) work on the features, near duplicates and leaks on the thumbnails (`pixels`).
The files are written by `tlkit.audit.folder`: staged inside `out` and moved into place at
the end, so an error leaves no partial audit.
"""

import dataclasses
import os
import pathlib
import time

import numpy as np

from tlkit import data as data_lib
from tlkit.audit import duplicates, outliers, pixels, properties
from tlkit.audit import folder as audit_folder
from tlkit.audit import labels as labels_lib
from tlkit.audit.report import KINDS
from tlkit.config.settings import DATA, MODEL, RUN
from tlkit.core import fileio
from tlkit.core.errors import TlkitError, check_choice, suggest
from tlkit.data import ImageFiles, concat, data_folder
from tlkit.deploy import saving
from tlkit.models import backbones as backbones_lib
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.training import feature_cache, frozen

SPLITS = duplicates.SPLIT_ORDER


@dataclasses.dataclass
class AuditResult:
    """What `audit` found. `to_dict()` is audit.json; `files` lists what was written."""

    issues: list
    summary: dict
    label_scores: list
    files: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"issues": self.issues, "summary": self.summary}

    def table(self, worst=3):
        """The console summary: the count of each kind, then the worst examples of each."""
        s = self.summary
        lines = [f"audit of {s['images']:,} images ({s['source']}), features "
                 f"{s['features']['shape'][1]} wide from {s['features']['model']}"]
        found = {k: v for k, v in s["counts"].items() if v}
        lines.append("issues: " + (", ".join(f"{k} {v}" for k, v in found.items())
                                   if found else "none"))
        imb = s["class_balance"]
        lines.append(f"class balance: largest / smallest class = {imb['ratio']} "
                     f"({imb['largest']} / {imb['smallest']})")
        for pair, r in s["leak_rates"].items():
            lines.append(f"leak {pair}: {r['images']} images ({r['rate']:.2%} of "
                         f"{pair.split('-')[1]})")
        if s["skipped"]:
            lines.append(f"skipped unreadable files: {s['skipped']}")
        for kind in KINDS:
            rows = [r for r in self.issues if r["kind"] == kind][:worst]
            for r in rows:
                extra = (f" given {r['given']}, suggested {r['suggested']}" if kind == "label"
                         else f" ~ {r['other']}" if r["other"] else "")
                lines.append(f"  {kind:<16} {r['score']:.3f} {r['path']}{extra}")
        return "\n".join(lines)


def _check_args(max_issues, folds, outlier_share, near_threshold, neighbours, label_score,
                batch_size):
    def integer(flag, v, low):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise TlkitError(f"{flag} must be an integer >= {low}. Received: {v!r}.")

    if max_issues is not None:
        integer("--max-issues", max_issues, 1)
    integer("--folds", folds, 2)
    integer("--neighbours", neighbours, 1)
    integer("--batch-size", batch_size, 1)
    if not (isinstance(outlier_share, (int, float)) and 0 <= outlier_share < 1):
        raise TlkitError(f"--outlier-share must be a number in [0, 1). "
                         f"Received: {outlier_share!r}.")
    if not (isinstance(near_threshold, (int, float)) and 0 < near_threshold <= 1):
        raise TlkitError(f"--near-threshold must be a number in (0, 1]. "
                         f"Received: {near_threshold!r}.")
    check_choice("label_score", label_score, labels_lib.SCORES)


def _check_out(out):
    """Validate `out` without creating it (a failed audit leaves nothing behind)."""
    if out is None:
        return None
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise TlkitError(f"--out {out} is a file, not a folder; give a folder path.")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise TlkitError(f"--out {out}: {probe} is not writable.")
    return out


def _extractor(backbone, model, weights, image_size):
    """`(keras model: images -> pooled features, its name)`."""
    import keras

    if model is not None:
        net, _ = saving.load(model)
        cut = frozen.feature_cut(net)
        # a tlkit model: the pooled base output its head reads; another Keras classifier:
        # the input of its last layer (the penultimate features)
        out = cut.output if cut is not None else net.layers[-1].input
        return keras.Model(net.inputs, out, name="audit_features"), str(model)

    name = str(backbone)
    if not (name.startswith("zoo:") or name.lower().endswith((".h5", ".keras"))
            or name in backbones_lib.names()):
        raise suggest(name, backbones_lib.names(), "backbone")
    bb = backbones_lib.build(name, resolve_input_shape(name, image_size), weights=weights)
    pooled = keras.layers.GlobalAveragePooling2D(name="audit_pool")(bb.model.output)
    return keras.Model(bb.model.inputs, pooled, name="audit_features"), name


def _load(data, input_shape, seed, val_fraction, test_fraction, on_bad_image, verbose):
    if isinstance(data, data_lib.Dataset):
        return data
    kind = data_lib.parse_source(data)[0]
    # arrays keep their stored size for the property checks; files are read from disk anyway
    size = input_shape if kind in ("folder", "tfds") else (None, None, None)
    return data_lib.load(data, image_size=size[:2] if size[0] else None, channels=size[2],
                         seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                         on_bad_image=on_bad_image, verbose=verbose)


def _images(x):
    """The images of a split for the property checks: files at their stored size, arrays."""
    if isinstance(x, ImageFiles):
        return None, list(x.paths)
    if hasattr(x, "as_dataset"):  # tfds records: at the loaded size
        return (im.numpy() for im in x.as_dataset()), None
    return x, None


def audit(data, backbone=MODEL.backbone, *, model=None, weights=MODEL.weights,
          image_size=DATA.image_size, out=None, folds=labels_lib.DEFAULT_FOLDS,
          max_issues=None, outlier_share=outliers.DEFAULT_SHARE,
          near_threshold=pixels.DEFAULT_THRESHOLD, neighbours=duplicates.DEFAULT_K,
          label_score="self_confidence", min_side=properties.MIN_SIDE, fix_splits=False,
          batch_size=RUN.batch_size, seed=RUN.seed, val_fraction=DATA.val_fraction,
          test_fraction=DATA.test_fraction, on_bad_image=DATA.on_bad_image, cache_dir=None,
          verbose=1):
    """Find wrong labels, duplicates, split leakage, outliers and image problems in `data`.

    Args:
        data: any source `finetune` reads (`tlkit.data.load`), or a loaded `Dataset`.
        backbone: the backbone whose pooled features the checks use (ignored with `model`).
        model: a trained tlkit `.h5` / `.keras` classifier: its pooled base features instead.
        weights: weights of `backbone` (`"imagenet"`, None, a file).
        image_size: input size instead of the backbone's default.
        out: folder for audit.json, audit.csv, label_scores.csv, summary.md and
            galleries/KIND.png (None: nothing written).
        folds: K of the out-of-fold probe; every class needs K images.
        max_issues: report at most this many issues of each kind (None: all).
        outlier_share: the share of images flagged as outliers.
        near_threshold: the pixel similarity (1 - the aligned, brightness-matched difference
            / 255, `tlkit.audit.pixels`) from which a pair is a near duplicate or a leak.
        neighbours: k of the feature kNN search (the outlier score).
        label_score: `"self_confidence"` or `"normalized_margin"` (label_scores.csv, ranks).
        min_side: images with a shorter side below this many px are `small`.
        fix_splits: write `out/index.json`, the data's index with every duplicate group in
            one split (`finetune --index` trains on it); folder sources only.
        batch_size, seed, val_fraction, test_fraction, on_bad_image: as for `finetune`.
        cache_dir: feature cache folder (features are reused when the key matches).
        verbose: 1 shows progress and prints the summary.

    Returns:
        An `AuditResult`.

    Example:
        >>> r = audit("digits", "zoo:simple_cnn", weights=None, verbose=0)  # doctest: +SKIP
        >>> sorted(r.summary["counts"])[:2]  # doctest: +SKIP
        ['aspect_ratio', 'blurry']
    """
    started = time.perf_counter()
    _check_args(max_issues, folds, outlier_share, near_threshold, neighbours, label_score,
                batch_size)
    out = _check_out(out)
    if out is not None:
        fileio.check_outside(out, data_folder(data), "--out")
    if fix_splits and out is None:
        raise TlkitError("--fix-splits writes index.json into the audit folder: give --out.")
    extractor, model_name = _extractor(backbone, model, weights, image_size)
    input_shape = tuple(int(d) for d in extractor.input_shape[1:])
    dataset = _load(data, input_shape, seed, val_fraction, test_fraction, on_bad_image, verbose)
    if fix_splits and not (dataset.streams and dataset.origin):
        raise TlkitError("--fix-splits writes an index of files: it needs an image folder as "
                         "--data.")
    y_all = np.concatenate([dataset.split(s)[1] for s in SPLITS])
    labels_lib.check_folds(y_all, dataset.class_names, folds)
    feat_data = dataset.converted(input_shape)

    names, splits, hashes, found, keep, feats, thumbs = [], [], [], [], [], [], []
    t_props = t_feats = 0.0
    for split in SPLITS:
        x, y = dataset.split(split)
        if not len(y):
            continue
        t0 = time.perf_counter()
        images, paths = _images(x)
        if verbose:
            print(f"tlkit: audit: image checks, {split} ({len(y):,} images)")
        h, f, bad, th = properties.scan(images, paths=paths, min_side=min_side)
        t1 = time.perf_counter()
        xf = feat_data.split(split)[0]
        got, _ = feature_cache.get(extractor, xf, labels=y, cache_dir=cache_dir, name=split,
                                   batch_size=batch_size, seed=seed, verbose=verbose)
        ok = np.ones(len(y), bool)
        if len(got) < len(y):  # files that failed to decode in the pass have no row
            failed = set(xf.failed())
            ok = np.array([str(p) not in failed for p in xf.paths])
        ok_rows = np.flatnonzero(ok)
        rows = np.full(len(y), -1)
        rows[ok_rows] = np.arange(len(ok_rows))
        for i in bad:
            ok[i] = False
        feats.append(np.asarray(got)[rows[ok]])
        t_props, t_feats = t_props + t1 - t0, t_feats + time.perf_counter() - t1
        names += audit_folder.names(dataset, split, x)
        splits += [split] * len(y)
        hashes += h
        found += f
        thumbs.append(th)
        keep.append(ok)
    keep = np.concatenate(keep)
    features = np.concatenate(feats).astype(np.float32)
    pos = np.flatnonzero(keep)  # item position of each feature row
    y = y_all[pos]
    sp = [splits[i] for i in pos]
    labels_lib.check_folds(y, dataset.class_names, folds)

    t2 = time.perf_counter()
    probs = labels_lib.out_of_fold(features, y, folds=folds, seed=seed,
                                   num_classes=dataset.num_classes)
    qual = labels_lib.quality(probs, y, label_score)
    margin = labels_lib.quality(probs, y, "normalized_margin")
    flagged = labels_lib.confident_learning(probs, y)
    suggested = probs.argmax(axis=1)
    t3 = time.perf_counter()
    dist, idx = duplicates.neighbours(features, k=neighbours)
    out_score = outliers.scores(dist)
    t4 = time.perf_counter()
    if verbose:
        print(f"tlkit: audit: near duplicates ({len(pos):,} images)")
    thumb_px = np.concatenate([t[0] for t in thumbs])[pos]
    thumb_box = np.concatenate([t[1] for t in thumbs])[pos]
    exact_pairs = [(g[0], j) for g in duplicates.exact_groups([hashes[i] for i in pos])
                   for j in g[1:]]
    same = {(min(a, b), max(a, b)) for a, b in exact_pairs}
    near = [(i, j, s) for i, j, s in pixels.near_pairs(thumb_px, thumb_box, near_threshold)
            if (i, j) not in same and hashes[pos[i]] != hashes[pos[j]]]
    t5 = time.perf_counter()

    cls = dataset.class_names
    issues = {k: [] for k in KINDS}

    def row(r, kind, score, given="", sugg="", other=""):
        return {"path": names[pos[r]], "split": sp[r], "kind": kind, "score": round(float(score), 4),
                "given": given, "suggested": sugg, "other": other}

    for r in np.flatnonzero(flagged):
        issues["label"].append(row(r, "label", 1 - qual[r], cls[y[r]], cls[suggested[r]]))
    for pairs, exact in ((exact_pairs, True), ([(i, j) for i, j, _ in near], False)):
        sims = [1.0] * len(pairs) if exact else [s for _, _, s in near]
        for (i, j), s in zip(pairs, sims):
            copy, orig = duplicates.ordered(i, j, sp)
            kind = duplicates.pair_kind(i, j, sp, exact)
            issues[kind].append(row(copy, kind, s, other=names[pos[orig]]))
    for r in outliers.flagged(out_score, outlier_share):
        issues["outlier"].append(row(r, "outlier", out_score[r]))
    for r, i in enumerate(pos):
        for kind, score in found[i].items():
            issues[kind].append(row(r, kind, score))
    counts = {k: len(v) for k, v in issues.items()}
    ranked = []
    for k in KINDS:
        ranked += sorted(issues[k], key=lambda d: -d["score"])[:max_issues]

    per_class = np.bincount(y_all, minlength=len(cls))
    all_pairs = [(i, j) for i, j in exact_pairs] + [(i, j) for i, j, _ in near]
    summary = {
        "source": dataset.source, "images": int(len(y_all)), "audited": int(len(pos)),
        "skipped": int(len(dataset.skipped) + (~keep).sum()),
        "counts": counts, "reported": {k: min(v, max_issues or v) for k, v in counts.items()},
        "class_balance": {"per_class": {c: int(n) for c, n in zip(cls, per_class)},
                          "largest": int(per_class.max()), "smallest": int(per_class.min()),
                          "ratio": round(float(per_class.max() / max(per_class.min(), 1)), 3)},
        "leak_rates": duplicates.leak_rates(all_pairs, sp),
        "features": {"model": model_name, "shape": list(features.shape),
                     "megabytes": round(features.nbytes / 2**20, 2)},
        "thumbnails": {"shape": list(thumb_px.shape),
                       "megabytes": round((thumb_px.nbytes + thumb_box.nbytes) / 2**20, 2)},
        "probe_accuracy": round(float((suggested == y).mean()), 4),
        "settings": {"folds": folds, "label_score": label_score, "near_threshold": near_threshold,
                     "neighbours": neighbours, "outlier_share": outlier_share,
                     "min_side": min_side, "max_issues": max_issues, "seed": seed},
        "seconds": {"image_checks": round(t_props, 2), "features": round(t_feats, 2),
                    "labels": round(t3 - t2, 2), "neighbours": round(t4 - t3, 2),
                    "near_duplicates": round(t5 - t4, 2)},
    }
    scores = [{"path": names[pos[r]], "label_quality": round(float(qual[r]), 6),
               "split": sp[r], "given": cls[y[r]], "suggested": cls[suggested[r]],
               "normalized_margin": round(float(margin[r]), 6)} for r in range(len(pos))]
    result = AuditResult(ranked, summary, scores)
    if out is not None:
        fixed = None
        if fix_splits:
            fixed = _fixed_dataset(dataset, pos, sp, all_pairs)
        result.files = audit_folder.write(result, out, dataset, fixed)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 2)
    if verbose:
        print(result.table())
    return result


def _fixed_dataset(dataset, pos, sp, pairs):
    """The dataset with each duplicate group moved into its earliest split."""
    import dataclasses as dc

    xs = concat([dataset.split(s)[0] for s in SPLITS])
    ys = np.concatenate([dataset.split(s)[1] for s in SPLITS])
    new = duplicates.fixed_splits(sp, pairs)
    fields = {}
    for s in SPLITS:
        take = pos[np.array([n == s for n in new], bool)] if len(new) else pos[:0]
        fields[f"x_{s}"], fields[f"y_{s}"] = xs[take], ys[take]
    moved = sum(a != b for a, b in zip(sp, new))
    origin = {**dataset.origin, "fixed_by": "tlkit audit --fix-splits", "moved": int(moved)}
    return dc.replace(dataset, origin=origin, **fields), moved
