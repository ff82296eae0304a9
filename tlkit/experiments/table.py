"""The demo's results as text: the best of each row, `auto` scored, the table, Markdown."""

from tlkit.experiments.config import METHODS, SITUATIONS, STRATEGIES


def mark_best(records):
    """Set `best` on every record: True for the highest test accuracy of its situation (ties
    all count). Returns `records`."""
    for situation in {r["situation"] for r in records}:
        rows = [r for r in records if r["situation"] == situation]
        top = max(r["test_accuracy"] for r in rows)
        for r in rows:
            r["best"] = r["test_accuracy"] == top
    return records


def score_auto(records):
    """Add to each `auto` record how it compares with its row: the chosen strategy's own
    run (accuracy, seconds, cost ratio) and the gap to the row's best strategy."""
    for r in records:
        if r["strategy"] != "auto":
            continue
        row = {x["strategy"]: x for x in records if x["situation"] == r["situation"]}
        chosen = row.get(r.get("chosen"))
        best = max(x["test_accuracy"] for k, x in row.items() if k in STRATEGIES)
        r["gap_to_best_pp"] = round(100 * (best - r["test_accuracy"]), 2)
        r["within_1pp_of_best"] = r["gap_to_best_pp"] <= 1.0
        if chosen is not None:
            r["chosen_alone_seconds"] = chosen["seconds"]
            r["cost_ratio"] = round(r["seconds"] / max(chosen["seconds"], 1e-9), 3)
    return records


def _grid(records):
    """{(situation, strategy): record} and the situations / strategies present, in order."""
    cells = {(r["situation"], r["strategy"]): r for r in records}
    rows = [s for s in SITUATIONS if any(k[0] == s for k in cells)]
    cols = [m for m in METHODS if any(k[1] == m for k in cells)]
    return cells, rows, cols


def format_table(records):
    """The printed table: situations as rows, strategies as columns, "accuracy  seconds",
    `*` after the best of each row.

    Example:
        >>> from tlkit.experiments.table import format_table, mark_best
        >>> recs = mark_best([{"situation": "small-similar", "strategy": "scratch",
        ...                    "test_accuracy": 0.5, "seconds": 2.0}])
        >>> print(format_table(recs).splitlines()[-1])
        small-similar     0.500     2s *
    """
    cells, rows, cols = _grid(records)
    width = max(17, *(len(c) + 2 for c in cols))
    lines = ["test accuracy and seconds per run; * = best in the row; the strategy named like "
             "the situation is the textbook choice",
             f"{'situation':<17} " + "".join(f"{c:<{width}}" for c in cols).rstrip()]
    for s in rows:
        parts = []
        for c in cols:
            r = cells.get((s, c))
            text = "-" if r is None else (f"{r['test_accuracy']:.3f} {r['seconds']:5.0f}s"
                                          + (" *" if r.get("best") else ""))
            parts.append(f"{text:<{width}}")
        lines.append(f"{s:<17} " + "".join(parts).rstrip())
    return "\n".join(lines)


def format_baseline(baseline):
    """One line about the `fashion_cnn` baseline and the 91% target."""
    verdict = "meets" if baseline["meets_target"] else "is below"
    note = "" if baseline.get("config") != "quick" else " (quick run: reduced data and epochs)"
    return (f"baseline: fashion_cnn on all 10 Fashion-MNIST classes: test accuracy "
            f"{baseline['test_accuracy']:.4f} ({baseline['train_images']} training images, "
            f"{baseline['epochs_run']} epochs, {baseline['seconds']:.0f} s); {verdict} the "
            f"{baseline['target']:.0%} target (seed figures: DNN ~86%, CNN ~90%){note}")


def format_markdown(records):
    """The table as Markdown (best per row in bold, textbook cell marked with a dagger)."""
    cells, rows, cols = _grid(records)
    lines = ["| situation | " + " | ".join(f"`{c}`" for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for s in rows:
        any_r = next(cells[(s, c)] for c in cols if (s, c) in cells)
        label = f"`{s}` ({any_r.get('train_images', '?')} train images)"
        parts = []
        for c in cols:
            r = cells.get((s, c))
            if r is None:
                parts.append("-")
                continue
            text = f"{100 * r['test_accuracy']:.1f}% ({r['seconds']:.0f} s)"
            if r.get("best"):
                text = f"**{text}**"
            if c == s:
                text += " †"
            parts.append(text)
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)
