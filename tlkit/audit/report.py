"""summary.md of an audit folder: the counts, balance, leak rates and the worst examples."""

from tlkit.audit import properties

# every kind of finding, in the order the report lists them
KINDS = ("label", "exact_duplicate", "near_duplicate", "leak", "outlier") + properties.KINDS


def _cell(text):
    return str(text).replace("|", "\\|")


def markdown(result, galleries=(), worst=5):
    """The summary.md text of an `AuditResult`; `galleries` names the kinds with a PNG."""
    s = result.summary
    lines = [f"# Audit of `{_cell(s['source'])}`", "",
             f"{s['images']:,} images ({s['audited']:,} audited, {s['skipped']} unreadable "
             f"skipped); features {s['features']['shape'][1]} wide from "
             f"`{_cell(s['features']['model'])}` ({s['features']['megabytes']} MB); "
             f"out-of-fold probe accuracy {s['probe_accuracy']:.3f} "
             f"({s['settings']['folds']}-fold).", "",
             "| issue | found | reported |", "|---|---:|---:|"]
    lines += [f"| {k} | {s['counts'][k]} | {s['reported'][k]} |" for k in KINDS]
    b = s["class_balance"]
    lines += ["", f"## Class balance", "", f"Largest / smallest class: {b['ratio']} "
              f"({b['largest']} / {b['smallest']}).", "", "| class | images |", "|---|---:|"]
    lines += [f"| {_cell(c)} | {n} |" for c, n in b["per_class"].items()]
    lines += ["", "## Leakage between splits", ""]
    lines += [f"- {pair}: {r['images']} images of {pair.split('-')[1]} have a copy in "
              f"{pair.split('-')[0]} ({r['rate']:.2%})" for pair, r in s["leak_rates"].items()]
    if "fix_splits" in s:
        lines += ["", f"`index.json` moves {s['fix_splits']['moved']} images so that each "
                  f"duplicate group sits in one split: `tlkit finetune --index index.json`."]
    lines += ["", "## Worst examples", ""]
    for kind in KINDS:
        rows = [r for r in result.issues if r["kind"] == kind][:worst]
        if not rows:
            continue
        lines += [f"### {kind}" + (f" (galleries/{kind}.png)" if kind in galleries else ""),
                  "", "| path | split | score | given | suggested | other |",
                  "|---|---|---:|---|---|---|"]
        lines += [f"| {_cell(r['path'])} | {r['split']} | {r['score']:.3f} | "
                  f"{_cell(r['given'])} | {_cell(r['suggested'])} | {_cell(r['other'])} |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines) + "\n"
