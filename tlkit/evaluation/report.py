"""Evaluation reports: accuracy, top-k, per-class precision/recall/F1, confusion matrix, curves.

`evaluate` returns a JSON-able dict and, given an output folder, writes `report.json`,
`confusion_matrix.png`, `top_losses.png` (the most confidently misclassified test images,
when any is) and, with a history, `curves.png` there, atomically. The figures are drawn by
`tlkit.evaluation.plots`.

Example:
    >>> import numpy as np
    >>> from tlkit.evaluation import report
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> r = report.metrics_from_probs(probs, np.array([0, 1, 1]), ["cat", "dog"])
    >>> round(r["accuracy"], 3), r["confusion_matrix"]
    (0.667, [[1, 0], [1, 1]])
"""

import pathlib

import numpy as np

from tlkit import data as data_lib
from tlkit.core import fileio
from tlkit.deploy import feature_score
from tlkit.evaluation import plots
from tlkit.evaluation.plots import plot_confusion_matrix, plot_curves, save_figure

TOP_LOSSES = 16  # images in top_losses.png


SMALL_TEST = 500  # below this many test images the accuracy is printed with its interval


def accuracy_interval(accuracy, n, z=1.96):
    """The 95% Wilson score interval `(low, high)` of an accuracy measured on `n` images.

    Wilson's interval stays inside [0, 1] and is honest at 0% and 100%, where the normal one
    collapses to a point (1 of 1 correct is not "100% +- 0").

    Example:
        >>> [round(v, 3) for v in accuracy_interval(1.0, 2)]
        [0.342, 1.0]
    """
    if not n:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def metrics_from_probs(probs, y_true, class_names, top_k=5):
    """Metrics from predicted probabilities (N, C) and integer labels (N,)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    probs = np.asarray(probs)
    y_true = np.asarray(y_true).astype(int)
    n_classes = len(class_names)
    y_pred = probs.argmax(axis=1)
    k = max(1, min(top_k, n_classes - 1)) if n_classes > 2 else 1
    topk = np.argsort(-probs, axis=1)[:, :k]
    labels = list(range(n_classes))
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                        zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else float("nan"),
        "accuracy_ci95": list(accuracy_interval(float((y_pred == y_true).mean()), len(y_true)))
        if len(y_true) else None,
        f"top_{k}_accuracy": float((topk == y_true[:, None]).any(axis=1).mean()) if len(y_true) else float("nan"),
        "per_class": [{"class": class_names[i], "precision": float(p[i]), "recall": float(r[i]),
                       "f1": float(f1[i]), "support": int(support[i])} for i in labels],
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def evaluate(model, x, y, class_names, *, out_dir=None, history=None, batch_size=64,
             top_k=5, extra=None, verbose=0, predictions=None, features=None):
    """Evaluate `model` on images `x` (raw pixels) and labels `y`.

    Args:
        model: a Keras classifier with softmax outputs.
        x, y: test images (N, H, W, C) or `tlkit.data.ImageFiles`, and integer labels (N,).
        class_names: names by label index.
        out_dir: when given, `report.json`, `confusion_matrix.png`, `top_losses.png` and
            `curves.png` go there.
        history: per-epoch dict from `tlkit.training.train.fit`, for the curves.
        batch_size: the training batch size; prediction batches grow from it for small
            images (`tlkit.data.predict_labelled`).
        top_k: k of the top-k accuracy (capped below the number of classes).
        extra: more JSON-able facts to store in the report.
        predictions: a list that receives `(probabilities, labels)` of the images read, for
            callers that use them again (calibration) without another forward pass.
        features: a list that receives the output of the model's feature layer
            (`head_pool`, `tlkit.deploy.feature_score`) on the images read, computed in the
            same pass (calibration's unknown score measures its test coverage on them).

    Returns:
        The report dict (also printed by `format_report`).
    """
    if features is not None:  # one pass: [features, probabilities]
        (f, probs), y_read = data_lib.predict_labelled(feature_score.feature_model(model), x, y,
                                                       batch_size=batch_size, verbose=verbose)
        features.append(f)
    else:
        probs, y_read = data_lib.predict_labelled(model, x, y, batch_size=batch_size,
                                                  verbose=verbose)
    if predictions is not None:
        predictions.append((probs, y_read))
    rep = metrics_from_probs(probs, y_read, class_names, top_k=top_k)
    if data_lib.is_files(x) and x.failed():
        rep["failed_files"] = x.failed()  # could not be decoded: not scored
    if history:
        rep["history"] = history
    if extra:
        rep.update(extra)
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rep["files"] = {"report": str(out_dir / "report.json"),
                        "confusion_matrix": str(out_dir / "confusion_matrix.png")}
        plot_confusion_matrix(rep["confusion_matrix"], class_names,
                              out_dir / "confusion_matrix.png")
        if plot_top_losses(x, probs, y_read, class_names, out_dir / "top_losses.png"):
            rep["files"]["top_losses"] = str(out_dir / "top_losses.png")
        else:  # nothing misclassified: no picture from an earlier evaluation either
            (out_dir / "top_losses.png").unlink(missing_ok=True)
        if history and history.get("loss"):
            rep["files"]["curves"] = str(out_dir / "curves.png")
            plot_curves(history, out_dir / "curves.png")
        write_json(rep, out_dir / "report.json")
    return rep


def format_report(rep):
    """A printable summary: overall metrics and the per-class table.

    The accuracy is named by the split it was measured on (`rep["split"]`, set by
    `tlkit.evaluation.predict.evaluate_file`; a training run's report is on its test split).

    Example:
        >>> rep = {"accuracy": 0.5, "macro_f1": 0.5, "n": 40, "per_class": [], "split": "all"}
        >>> format_report(rep).splitlines()[0]
        'accuracy on all images 0.5000   macro F1 0.5000   (n=40)'
    """
    split = rep.get("split") or "test"
    what = "accuracy on all images" if split == "all" else f"{split} accuracy"
    topk = next((k for k in rep if k.startswith("top_") and k.endswith("_accuracy")), None)
    ci = rep.get("accuracy_ci95")
    interval = (f" (95% interval {ci[0]:.3f}-{ci[1]:.3f})"
                if ci and rep.get("n", 0) < SMALL_TEST else "")
    lines = [f"{what} {rep['accuracy']:.4f}{interval}" + (f"   {topk.replace('_', '-')} "
             f"{rep[topk]:.4f}" if topk else "") + f"   macro F1 {rep['macro_f1']:.4f}   "
             f"(n={rep['n']})",
             f"{'class':<20} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for row in rep["per_class"]:
        lines.append(f"{row['class'][:20]:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} "
                     f"{row['f1']:>7.3f} {row['support']:>8}")
    return "\n".join(lines)


def write_json(obj, path):
    """Write JSON atomically (temporary file, then rename)."""
    return fileio.write_json(obj, path)


def top_losses(probs, y_true, k=TOP_LOSSES):
    """Rows of the most confidently misclassified images, highest loss first (fastai's
    "top losses").

    The loss of a row is its cross-entropy, `-log p(true class)`; only misclassified rows
    (predicted class != true class) are candidates; ties keep the row order.

    Args:
        probs: (N, C) probabilities.
        y_true: (N,) integer labels.
        k: most rows returned.

    Returns:
        int array of at most `k` row indices.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.05, 0.95], [0.4, 0.6]])
        >>> top_losses(probs, np.array([0, 0, 0, 1]))
        array([2, 1])
    """
    probs = np.asarray(probs, dtype="float64")
    y_true = np.asarray(y_true).astype(int)
    if not len(y_true):
        return np.zeros((0,), int)
    loss = -np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0))
    wrong = np.flatnonzero(probs.argmax(axis=1) != y_true)
    return wrong[np.argsort(-loss[wrong], kind="stable")][:k]


def _positions(x, n_rows):
    """Positions in `x` of the `n_rows` prediction rows (files that failed to decode are
    not rows), or None when they cannot be matched."""
    if data_lib.is_files(x) and x.failed():
        failed = set(x.failed())
        keep = np.array([i for i, p in enumerate(x.paths) if str(p) not in failed], int)
    else:
        keep = np.arange(len(x))
    return keep if len(keep) == n_rows else None


def _names_at(x, positions):
    """The file name of each image of `x` at `positions`, or `#position` for arrays."""
    import os

    if data_lib.is_files(x):
        return [fileio.printable_path(os.path.basename(str(x.paths[p]))) for p in positions]
    return [f"#{int(p)}" for p in positions]


def _images_at(x, positions):
    """The images of `x` at `positions` (in that order) as an array, or None if one fails."""
    if not data_lib.is_files(x):
        return np.asarray(x[positions])
    order = np.argsort(positions)
    subset = x[np.asarray(positions)[order]]
    decoded = np.concatenate([np.asarray(b) for b in data_lib.pipeline(
        subset, None, batch_size=max(1, len(positions)), autotune=False)])
    if len(decoded) != len(positions):
        return None
    out = np.empty_like(decoded)
    out[order] = decoded
    return out


def plot_top_losses(x, probs, y_true, class_names, path, k=TOP_LOSSES):
    """Write the grid of the `k` most confidently misclassified images (`top_losses`).

    Args:
        x: the images the rows of `probs` were predicted from (array or `ImageFiles`).
        probs, y_true: (N, C) probabilities and (N,) labels, row by row.
        class_names: names by label index.
        path: the PNG.
        k: most images shown.

    Returns:
        The path, or None when nothing was misclassified (or the images cannot be matched
        to the rows); then nothing is written.
    """
    rows = top_losses(probs, y_true, k)
    positions = _positions(x, len(y_true))
    if not len(rows) or positions is None:
        return None
    images = _images_at(x, positions[rows])
    if images is None:
        return None
    probs = np.asarray(probs)
    pred = probs[rows].argmax(axis=1)
    fig = plots.top_losses_figure(images, np.asarray(y_true)[rows], pred,
                                  probs[rows, pred], class_names,
                                  names=_names_at(x, positions[rows]))
    return plots.save_figure(fig, path)


__all__ = ["metrics_from_probs", "evaluate", "format_report", "write_json", "top_losses",
           "plot_top_losses", "plot_confusion_matrix", "plot_curves", "save_figure",
           "TOP_LOSSES"]
