"""The demo's matrix as a heatmap PNG."""

import pathlib

import numpy as np

from tlkit.evaluation.report import save_figure
from tlkit.experiments.table import _grid


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
