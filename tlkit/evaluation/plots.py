"""Figures people read: how tlkit draws and writes them, and the evaluation report's figures.

Figures are `matplotlib.figure.Figure` objects made without pyplot (no global state, the
Agg renderer, no display needed); each `*_figure` function returns one, so a test can look at
its axes, and `save_figure` writes it as a PNG through `tlkit.core.fileio.atomic_path` (a temporary
file renamed into place, mode 0644 under the usual umask).

The report's figures:
    - `confusion_figure`: counts in every cell, shaded by the share of the true class, class
      names on both axes; the figure grows with the number of classes.
    - `curves_figure`: loss and accuracy per global epoch (integer ticks, no offset axis),
      the phases marked by vertical lines and named on a top axis.
    - `top_losses_figure`: the most confidently misclassified test images (fastai's "top
      losses"), titled true / predicted / probability.

Example:
    >>> fig = curves_figure({"loss": [1.2, 0.9, 0.7], "phase": ["head", "head", "fine-tune"]})
    >>> [int(t) for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    [1, 2, 3]
"""

import pathlib

import numpy as np

from tlkit.core import fileio

DPI = 110


def new_figure(width, height):
    """A pyplot-free matplotlib `Figure` of `width` x `height` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def save_figure(fig, path, dpi=DPI, tight=True):
    """Save a matplotlib figure as PNG atomically (mode 0644 under umask 022) and close it.

    Args:
        fig: a `Figure` (from `new_figure` or pyplot).
        path: the PNG to write; its folder is created.
        dpi: pixels per inch.
        tight: crop to the drawn content (`bbox_inches="tight"`, which draws the figure
            twice); False for a figure whose fixed layout fills its canvas already.

    Returns:
        `path` as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    try:
        with fileio.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)  # a no-op for figures pyplot does not manage
    return path


def no_offset(ax):
    """Plain tick labels on both axes: no "+1.386" offset, no scientific notation."""
    from matplotlib.ticker import ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        axis.set_major_formatter(fmt)


def _short(name, n=16):
    name = str(name)
    return name if len(name) <= n else name[:n - 1] + "…"


def _middle(name, n=24):
    """`name` cut in the middle to at most `n` characters, keeping its end (a file's suffix)."""
    name = str(name)
    return name if len(name) <= n else name[:n // 2 - 1] + "…" + name[-(n - n // 2):]


def confusion_figure(cm, class_names):
    """The confusion matrix (rows: true class, columns: predicted) as a `Figure`.

    Every cell shows its count (up to 40 classes) and is shaded by its share of the true
    class; the cell size and the fonts are chosen so that 10 to 40 classes stay readable.

    Args:
        cm: (n, n) counts.
        class_names: n names.

    Returns:
        A `Figure`.
    """
    cm = np.asarray(cm)
    n = len(class_names)
    cell = 0.55 if n <= 12 else 0.42 if n <= 25 else 0.32
    size = max(4.0, cell * n + 2.2)
    fig = new_figure(size + 1.2, size)
    ax = fig.add_subplot()
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    label_size = 9 if n <= 12 else 8 if n <= 25 else 6
    names = [_short(c) for c in class_names]
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                  rotation_mode="anchor", fontsize=label_size)
    ax.set_yticks(range(n), names, fontsize=label_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 40:
        count_size = 9 if n <= 12 else 7 if n <= 25 else 5
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=count_size,
                        color="white" if norm[i, j] > 0.5 else "black")
    total = max(int(cm.sum()), 1)
    ax.set_title(f"Confusion matrix: accuracy {np.trace(cm) / total:.3f} (n={int(cm.sum())})")
    return fig


def phase_spans(phases):
    """[(phase, first epoch, last epoch)] of consecutive runs in a per-epoch phase list.

    Epochs are global and 1-based.

    Example:
        >>> phase_spans(["head", "head", "fine-tune", "fine-tune", "fine-tune"])
        [('head', 1, 2), ('fine-tune', 3, 5)]
    """
    spans = []
    for e, phase in enumerate(phases, start=1):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], e)
        else:
            spans.append((phase, e, e))
    return spans


def curves_figure(history):
    """Loss and accuracy per epoch, train and validation, with the phases marked.

    Epochs are the run's global epochs (1-based, counting every phase), on integer ticks; a
    dotted line separates two phases and a top axis names each phase over its epochs; tick
    labels have no offset.

    Args:
        history: per-epoch lists (`loss`, `accuracy`, `val_loss`, `val_accuracy`, `phase`),
            as `tlkit.training.train.fit` returns.

    Returns:
        A `Figure` with one axes per metric (loss, accuracy).
    """
    from matplotlib.ticker import MaxNLocator

    n = len(history["loss"])
    epochs = np.arange(1, n + 1)
    keys = [k for k in ("loss", "accuracy") if k in history or f"val_{k}" in history]
    fig = new_figure(5.2 * len(keys), 4.0)
    spans = phase_spans(history.get("phase") or [])
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        if key in history:
            ax.plot(epochs, history[key], "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label=f"val {key}")
        ax.set_xlim(0.5, n + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        no_offset(ax)
        for _, first, _ in spans[1:]:
            ax.axvline(first - 0.5, color="gray", linestyle=":", linewidth=1.2)
        if len(spans) > 1 or (spans and spans[0][0]):
            top = ax.secondary_xaxis("top")
            top.set_xticks([(a + b) / 2 for _, a, b in spans], [str(p) for p, _, _ in spans],
                           fontsize=8, color="dimgray")
            top.tick_params(length=0)
        ax.set_xlabel("epoch")
        ax.set_title(key, pad=18 if spans else 6)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def top_losses_figure(images, true, pred, prob, class_names, cols=4, names=None):
    """A grid of images titled "name / true / predicted (probability)", in the order given.

    Args:
        images: (k, h, w, c) raw pixels 0..255 (c is 1 or 3).
        true, pred: class indices (k,).
        prob: the predicted class's probability (k,).
        class_names: names by index.
        cols: most images per row.
        names: what each image is (its file name, or `#position` in its split), shown on
            the first line of its title so it can be found; None leaves the line out.

    Returns:
        A `Figure` with one axes per image.
    """
    k = len(images)
    cols = max(1, min(cols, k))
    rows = max(1, -(-k // cols))
    fig = new_figure(2.3 * cols, (2.6 if names is None else 2.8) * rows + 0.5)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = np.clip(np.asarray(images[i], dtype="float32"), 0, 255)
        if img.ndim == 3 and img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img.astype("uint8"), interpolation="nearest")
        ax.set_title((f"{_middle(names[i], 24)}\n" if names is not None else "")
                     + f"true: {_short(class_names[true[i]], 14)}\n"
                     f"pred: {_short(class_names[pred[i]], 14)} ({prob[i]:.2f})", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"Top losses: the {k} most confidently misclassified test images "
                 "(highest loss first)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, class_names, path):
    """Write `confusion_figure(cm, class_names)` as a PNG; returns the path."""
    return save_figure(confusion_figure(cm, class_names), path)


def plot_curves(history, path):
    """Write `curves_figure(history)` as a PNG; returns the path."""
    return save_figure(curves_figure(history), path)
