"""What `tlkit curve` shows: the figure, the printed table and the Markdown table.

Each point is the mean test accuracy over the seeds; the table gives mean ± sd (the sample
standard deviation, n - 1 in the denominator), the figure's band spans the lowest to the
highest seed (min-max), and a dashed line marks chance (1 / classes).

Example:
    >>> from tlkit.workflows.curve import CurveResult
    >>> rows = [{"strategy": "scratch", "images_per_class": k, "seed": s, "accuracy": a}
    ...         for k, s, a in [(2, 0, 0.5), (2, 1, 0.7), (5, 0, 0.8), (5, 1, 0.8)]]
    >>> res = CurveResult(rows, ("scratch",), (2, 5), (0, 1), 0.5, 40)
    >>> print(format_markdown(res))  # doctest: +NORMALIZE_WHITESPACE
    Test accuracy, mean ± sd over 2 seeds (0, 1), on the same 40 test images; chance 0.500.
    <BLANKLINE>
    | images per class | scratch |
    |---:|---:|
    | 2 | 0.600 ± 0.141 |
    | 5 | 0.800 ± 0.000 |
    >>> fig = curve_figure(res)
    >>> fig.axes[0].get_xscale(), fig.axes[0].get_xlabel()
    ('log', 'training images per class (log scale)')
"""

import numpy as np

from tlkit.evaluation import plots

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def aggregate(result):
    """{(strategy, k): {"mean", "sd", "min", "max", "n"}} over the seeds of each point."""
    out = {}
    for strategy in result.strategies:
        for k in result.sizes:
            acc = np.array([r["accuracy"] for r in result.rows
                            if r["strategy"] == strategy and r["images_per_class"] == k])
            if len(acc):
                out[strategy, k] = {"mean": float(acc.mean()),
                                    "sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                                    "min": float(acc.min()), "max": float(acc.max()),
                                    "n": int(len(acc))}
    return out


def caption(result):
    """One line saying what the numbers are."""
    seeds = ", ".join(map(str, result.seeds))
    return (f"Test accuracy, mean ± sd over {len(result.seeds)} seeds ({seeds}), on the same "
            f"{result.test_images} test images; chance {result.chance:.3f}.")


def _cells(result):
    stats = aggregate(result)
    return [[f"{stats[s, k]['mean']:.3f} ± {stats[s, k]['sd']:.3f}" if (s, k) in stats else "-"
             for s in result.strategies] for k in result.sizes]


def format_markdown(result):
    """curve.md: the caption, then a table (rows: sizes; columns: strategies; mean ± sd)."""
    lines = [caption(result), "",
             "| images per class | " + " | ".join(result.strategies) + " |",
             "|---:|" + "---:|" * len(result.strategies)]
    for k, cells in zip(result.sizes, _cells(result)):
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(result):
    """The console table: the same numbers as curve.md, in aligned columns."""
    head = ["images/class", *result.strategies]
    body = [[str(k), *cells] for k, cells in zip(result.sizes, _cells(result))]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([caption(result), fmt(head), *map(fmt, body)])


def curve_figure(result, title=None):
    """Accuracy against images per class (log x axis): mean per strategy, min-max band.

    Args:
        result: a `tlkit.workflows.curve.CurveResult`.
        title: the figure's title (default: "How many images do I need?" and the result's
            `label`, the data and the backbone).

    Returns:
        A matplotlib `Figure` (no pyplot state).
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    stats = aggregate(result)
    fig = plots.new_figure(8.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for i, strategy in enumerate(result.strategies):
        ks = [k for k in result.sizes if (strategy, k) in stats]
        mean = [stats[strategy, k]["mean"] for k in ks]
        color = COLORS[i % len(COLORS)]
        ax.plot(ks, mean, "o-", color=color, lw=2, label=f"{strategy} (mean)")
        ax.fill_between(ks, [stats[strategy, k]["min"] for k in ks],
                        [stats[strategy, k]["max"] for k in ks], color=color, alpha=0.18,
                        lw=0, label=f"{strategy} (min-max)")
    ax.axhline(result.chance, color="0.4", ls="--", lw=1.2,
               label=f"chance (1/{round(1 / result.chance)} = {result.chance:.2f})")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(list(result.sizes)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in result.sizes])
    ax.set_xlim(result.sizes[0] / 1.25, result.sizes[-1] * 1.25)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel(f"test accuracy ({result.test_images} test images)")
    label = f"\n{result.label}" if result.label else ""
    ax.set_title(title or f"How many images do I need?{label}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0,
              title=f"{len(result.seeds)} seeds per point\nband: min-max", title_fontsize=8)
    return fig


def save_curve_figure(result, path, title=None):
    """`curve_figure` written to `path` as a PNG, atomically; returns the path."""
    return plots.save_figure(curve_figure(result, title), path)
