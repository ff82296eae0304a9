"""The trials as a table, JSON, CSV and PNG."""

import os
import pathlib
import re

import numpy as np

from tlkit.blocks import BN_PLACEMENTS
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
    done = [r for r in rows if r["score"] is not None and r["status"] == "COMPLETED"]
    best = None
    if done:
        pick = max if OBJECTIVES.get(objective, "max") == "max" else min
        best = pick(done, key=lambda r: r["score"])["trial"]
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

    from tlkit.report import write_json

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


def plot_trials(rows, path, objective="val_accuracy"):
    """PNG with three panels: score per trial, score by BN placement, score by dropout.

    Every BN-placement hyperparameter (`block1_bn`, `head_bn`, `bn`, ...) adds one point per
    trial to the middle panel, every dropout (`dropout`, `block1_dropout`, ...) to the right.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlkit.report import save_figure

    done = [r for r in rows if r["score"] is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    if done:
        xs = list(range(1, len(done) + 1))
        ys = [r["score"] for r in done]
        ax.plot(xs, ys, "o", label="trial")
        better = max if OBJECTIVES.get(objective, "max") == "max" else min
        ax.plot(xs, [better(ys[:i + 1]) for i in range(len(ys))], "-", color="gray",
                label="best so far")
        ax.set_xticks(xs, [r["trial"] for r in done], rotation=90 if len(xs) > 20 else 0)
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("score per trial")
    rng = np.random.default_rng(0)
    for ax, pattern, title in ((axes[1], ALIASES["bn"], "score by BN placement"),
                               (axes[2], r"(.+_)?dropout", "score by dropout")):
        names = [n for n in _hp_names(done) if re.fullmatch(pattern, n)]
        for name in names:
            pts = [(r["hyperparameters"][name], r["score"]) for r in done
                   if name in r["hyperparameters"]]
            if not pts:
                continue
            if pattern == ALIASES["bn"]:
                xs = [BN_PLACEMENTS.index(v) + rng.uniform(-0.15, 0.15) if v in BN_PLACEMENTS
                      else 0 for v, _ in pts]
            else:
                xs = [float(v) + rng.uniform(-0.008, 0.008) for v, _ in pts]
            ax.plot(xs, [s for _, s in pts], "o", alpha=0.75, label=name)
        if pattern == ALIASES["bn"]:
            ax.set_xticks(range(len(BN_PLACEMENTS)), BN_PLACEMENTS)
            ax.set_xlim(-0.5, len(BN_PLACEMENTS) - 0.5)
            ax.set_xlabel("BN placement")
        else:
            ax.set_xlabel("dropout rate")
        if names:
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.text(0.5, 0.5, "not tuned", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(objective)
        ax.set_title(title)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
