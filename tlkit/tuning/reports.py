"""The trials as a table, JSON, CSV and PNG."""

import os
import pathlib
import re

from tlkit.evaluation import plots
from tlkit.evaluation.report import write_json
from tlkit.models.blocks import BN_PLACEMENTS
from tlkit.tuning.constants import ALIASES, OBJECTIVES
from tlkit.tuning.search import _metric
from tlkit.tuning.space import _fmt


def trials_table(oracle, owners=None, order=None):
    """One dict per trial of `oracle` (a KerasTuner oracle), in trial order.

    Keys: trial, status, score, seconds, epochs (Hyperband's budget, if any), tuner_id (who
    ran it, when known), metrics (the best epoch's), hyperparameters (in `order`, e.g. the
    hypermodel's declaration order, when given).
    """
    owners = owners or {}
    rank = {name: i for i, name in enumerate(order or [])}
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda s: (len(s), s)):
        trial = oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        metrics = {}
        for name in trial.metrics.metrics:
            if name != "seconds":
                metrics[name] = trial.metrics.get_last_value(name)
        rows.append({"trial": trial_id, "status": trial.status,
                     "score": None if trial.score is None else float(trial.score),
                     "seconds": _metric(trial, "seconds"),
                     "epochs": values.get("tuner/epochs"),
                     "tuner_id": owners.get(trial_id),
                     "metrics": metrics,
                     "hyperparameters": dict(sorted(
                         ((k, v) for k, v in values.items() if not k.startswith("tuner/")),
                         key=lambda kv: rank.get(kv[0], len(rank))))})
    return rows


def _hp_names(rows):
    """The hyperparameter names of all rows, each new one placed after its predecessor."""
    names = []
    for r in rows:
        prev = None
        for k in r["hyperparameters"]:
            if k not in names:
                names.insert(names.index(prev) + 1 if prev is not None else 0, k)
            prev = k
    return names


def format_table(rows, objective="val_accuracy"):
    """The trials as a printable table: trial, worker, status, score, time, hyperparameters.

    The best completed trial is marked with `*`.

    Example:
        >>> print(format_table([{"trial": "0", "status": "COMPLETED", "score": 0.5,
        ...     "seconds": 1.0, "tuner_id": None, "hyperparameters": {"bn": "none"}}]))
        trial  worker  status     val_accuracy  time  bn
        0*     -       COMPLETED        0.5000  1.0s  none
    """
    names = _hp_names(rows)
    best = (best_trial(rows, objective) or {}).get("trial")
    header = ["trial", "worker", "status", objective, "time"] + names
    table = []
    for r in rows:
        cells = [r["trial"] + ("*" if r["trial"] == best else ""), r.get("tuner_id") or "-",
                 r["status"], "-" if r["score"] is None else f"{r['score']:.4f}",
                 "-" if r.get("seconds") is None else f"{r['seconds']:.1f}s"]
        cells += [_fmt(r["hyperparameters"][n]) if n in r["hyperparameters"] else "-"
                  for n in names]
        table.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    right = {3, 4}

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header)] + [line(c) for c in table])


def write_reports(out, summary, hypermodel=None):
    """Write `trials.json`, `trials.csv` and `trials.png` into `out`; return their paths."""
    import csv
    import io

    out = pathlib.Path(out)
    rows = summary["trials"]
    paths = {"trials_json": str(write_json(summary, out / "trials.json"))}
    names = _hp_names(rows)
    metric_names = sorted({m for r in rows for m in r.get("metrics", {})})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "status", "score", "seconds", "epochs", "tuner_id"] + metric_names
               + names)
    for r in rows:
        w.writerow([r["trial"], r["status"], r["score"], r.get("seconds"), r.get("epochs"),
                    r.get("tuner_id")] + [r.get("metrics", {}).get(m) for m in metric_names]
                   + [r["hyperparameters"].get(n) for n in names])
    tmp = out / ".trials.csv.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out / "trials.csv")
    paths["trials_csv"] = str(out / "trials.csv")
    paths["plot"] = str(plot_trials(rows, out / "trials.png", summary["objective"]["name"]))
    return paths


def best_trial(rows, objective="val_accuracy"):
    """The best completed row (by `objective`'s direction), or None.

    Example:
        >>> best_trial([{"trial": "0", "status": "COMPLETED", "score": 0.5},
        ...             {"trial": "1", "status": "COMPLETED", "score": 0.7}])["trial"]
        '1'
    """
    done = [r for r in rows if r["score"] is not None and r["status"] == "COMPLETED"]
    if not done:
        return None
    pick = max if OBJECTIVES.get(objective, "max") == "max" else min
    return pick(done, key=lambda r: r["score"])


def hp_positions(values, names_count=1, name_index=0, categories=None):
    """x positions of hyperparameter values in trials.png, without random jitter.

    Numeric values sit exactly at their value (dropout 0.2 is drawn at 0.2). Categorical
    values (`categories`, e.g. the BN placements) sit at their index, shifted by a fixed
    amount per hyperparameter name so that `names_count` names side by side do not overlap.

    Args:
        values: the values of one hyperparameter, one per trial.
        names_count: how many hyperparameter names share the panel.
        name_index: this name's place among them.
        categories: the categories in axis order, or None for numeric values.

    Returns:
        A list of floats.

    Example:
        >>> hp_positions([0.2, 0.5, 0.2])
        [0.2, 0.5, 0.2]
        >>> hp_positions(["none", "after"], 2, 1, ["none", "before", "after"])
        [0.15, 2.15]
    """
    if categories is None:
        return [float(v) for v in values]
    shift = 0.0 if names_count < 2 else (name_index - (names_count - 1) / 2) * 0.3 / (
        names_count - 1)
    return [round((categories.index(v) if v in categories else 0) + shift, 6) for v in values]


def trials_figure(rows, objective="val_accuracy"):
    """The trials as a `Figure` with three panels.

    Left: the score per trial and the best so far; middle: the score by BN placement (every
    BN-placement hyperparameter, `block1_bn`, `head_bn`, `bn`, ..., one marker per trial);
    right: the score by dropout rate (`dropout`, `block1_dropout`, ...) at the exact values.
    The best trial is a large star in every panel and is annotated on the left; legends sit
    below the panels, so they hide no point.
    """
    from matplotlib.ticker import MaxNLocator

    done = [r for r in rows if r["score"] is not None]
    best = best_trial(rows, objective)
    fig = plots.new_figure(15, 4.6)
    axes = fig.subplots(1, 3)
    ax = axes[0]
    star = {"marker": "*", "markersize": 16, "color": "gold", "markeredgecolor": "black",
            "linestyle": "none", "zorder": 5}
    if done:
        xs = list(range(1, len(done) + 1))
        ys = [r["score"] for r in done]
        ax.plot(xs, ys, "o", label="trial")
        better = max if OBJECTIVES.get(objective, "max") == "max" else min
        ax.plot(xs, [better(ys[:i + 1]) for i in range(len(ys))], "-", color="gray",
                label="best so far")
        ax.set_xticks(xs, [r["trial"] for r in done], rotation=90 if len(xs) > 20 else 0)
        if best is not None:
            bx = xs[done.index(best)]
            ax.plot([bx], [best["score"]], label=f"best: trial {best['trial']}", **star)
            ax.annotate(f"best: trial {best['trial']}\n{best['score']:.4f}", (bx, best["score"]),
                        xytext=(0, -28), textcoords="offset points", ha="center", va="top",
                        fontsize=8, arrowprops={"arrowstyle": "-", "color": "gray"})
    ax.set_xlabel("trial")
    ax.set_title("score per trial")
    for ax, pattern, title in ((axes[1], ALIASES["bn"], "score by BN placement"),
                               (axes[2], r"(.+_)?dropout", "score by dropout")):
        categories = list(BN_PLACEMENTS) if pattern == ALIASES["bn"] else None
        names = [n for n in _hp_names(done) if re.fullmatch(pattern, n)
                 and any(n in r["hyperparameters"] for r in done)]
        for j, name in enumerate(names):
            picked = [r for r in done if name in r["hyperparameters"]]
            xs = hp_positions([r["hyperparameters"][name] for r in picked], len(names), j,
                              categories)
            ax.plot(xs, [r["score"] for r in picked], "o", alpha=0.75, label=name)
            if best is not None and best in picked:
                ax.plot([xs[picked.index(best)]], [best["score"]], **star,
                        label="best trial" if j == 0 else None)
        if categories:
            ax.set_xticks(range(len(categories)), categories)
            ax.set_xlim(-0.5, len(categories) - 0.5)
            ax.set_xlabel("BN placement")
        else:
            ax.set_xlabel("dropout rate")
            if names:
                values = sorted({float(r["hyperparameters"][n]) for n in names for r in done
                                 if n in r["hyperparameters"]})
                if len(values) <= 8:
                    ax.set_xticks(values, [_fmt(v) for v in values])
        if not names:
            ax.text(0.5, 0.5, "not tuned", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
    for ax in axes:
        ax.set_ylabel(objective)
        ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      frameon=False)
    fig.tight_layout()
    return fig


def plot_trials(rows, path, objective="val_accuracy"):
    """Write `trials_figure(rows, objective)` as a PNG; returns the path."""
    return plots.save_figure(trials_figure(rows, objective), path)
