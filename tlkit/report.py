"""Evaluation reports: accuracy, top-k, per-class precision/recall/F1, confusion matrix, curves.

`evaluate` returns a JSON-able dict and, given an output folder, writes `report.json`,
`confusion_matrix.png` and (with a history) `curves.png` there, atomically.

Example:
    >>> import numpy as np
    >>> from tlkit import report
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> r = report.metrics_from_probs(probs, np.array([0, 1, 1]), ["cat", "dog"])
    >>> round(r["accuracy"], 3), r["confusion_matrix"]
    (0.667, [[1, 0], [1, 1]])
"""

import pathlib

import numpy as np

from tlkit import data as data_lib
from tlkit import fileio


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
        f"top_{k}_accuracy": float((topk == y_true[:, None]).any(axis=1).mean()) if len(y_true) else float("nan"),
        "per_class": [{"class": class_names[i], "precision": float(p[i]), "recall": float(r[i]),
                       "f1": float(f1[i]), "support": int(support[i])} for i in labels],
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def evaluate(model, x, y, class_names, *, out_dir=None, history=None, batch_size=64,
             top_k=5, extra=None, verbose=0):
    """Evaluate `model` on images `x` (raw pixels) and labels `y`.

    Args:
        model: a Keras classifier with softmax outputs.
        x, y: test images (N, H, W, C) or `tlkit.data.ImageFiles`, and integer labels (N,).
        class_names: names by label index.
        out_dir: when given, `report.json`, `confusion_matrix.png` and `curves.png` go there.
        history: per-epoch dict from `tlkit.train.fit`, for the curves.
        batch_size: prediction batch size.
        top_k: k of the top-k accuracy (capped below the number of classes).
        extra: more JSON-able facts to store in the report.

    Returns:
        The report dict (also printed by `format_report`).
    """
    probs, y_read = data_lib.predict_labelled(model, x, y, batch_size=batch_size,
                                              verbose=verbose)
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
        if history and history.get("loss"):
            rep["files"]["curves"] = str(out_dir / "curves.png")
            plot_curves(history, out_dir / "curves.png")
        write_json(rep, out_dir / "report.json")
    return rep


def format_report(rep):
    """A printable summary: overall metrics and the per-class table."""
    topk = next((k for k in rep if k.startswith("top_") and k.endswith("_accuracy")), None)
    lines = [f"test accuracy {rep['accuracy']:.4f}" + (f"   {topk.replace('_', '-')} "
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


def save_figure(fig, path):
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    try:
        with fileio.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_confusion_matrix(cm, class_names, path):
    """A confusion-matrix heatmap (rows: true class, columns: predicted) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_xticks(range(n), [str(c)[:14] for c in class_names], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(c)[:14] for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"Confusion matrix (accuracy {np.trace(cm) / max(cm.sum(), 1):.3f})")
    return save_figure(fig, path)


def plot_curves(history, path):
    """Loss and accuracy per epoch, train and validation, with phase boundaries, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("loss", "accuracy")):
        if key in history:
            ax.plot(epochs, history[key], "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label=f"val {key}")
        phases = history.get("phase", [])
        for e in range(1, len(phases)):
            if phases[e] != phases[e - 1]:
                ax.axvline(e + 0.5, color="gray", linestyle=":")
                ax.text(e + 0.6, ax.get_ylim()[1], phases[e], va="top", fontsize=8, color="gray")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
