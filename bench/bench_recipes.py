"""The demo's matrix under one training recipe, to choose tlkit's defaults by measurement.

Runs `tlkit.experiments.demo.run_demo` (quick or full) with every `tlkit.workflows.finetune.finetune` call of the
demo (source net, matrix cells) given `--schedule` (and optionally other recipe settings),
and writes the records to bench/results/recipes-<config>-<label>.json. `--compare A B`
prints the per-cell test accuracy of two such files and the difference in points.

    python bench/bench_recipes.py --quick --schedule constant
    python bench/bench_recipes.py --quick --schedule cosine
    python bench/bench_recipes.py --compare recipes-quick-constant recipes-quick-cosine
"""

import argparse
import functools
import json
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run(config, settings, label, seed=0, baseline=True):
    """The demo with `settings` passed to every finetune call; returns and saves records.

    `baseline=False` skips the demo's fashion_cnn baseline (not a cell of the matrix).
    """
    import dataclasses

    from tlkit.experiments import demo
    from tlkit.workflows import finetune as transfer

    original = transfer.finetune
    transfer.finetune = functools.partial(original, **settings)
    try:
        out = pathlib.Path(tempfile.mkdtemp(prefix=f"tlkit-bench-recipes-{label}-"))
        t0 = time.perf_counter()
        base = demo.QUICK if config == "quick" else demo.FULL
        if not baseline:
            base = dataclasses.replace(base, baseline_per_class=0)
        result = demo.run_demo(out, seed=seed, config=base, verbose=1)
        seconds = time.perf_counter() - t0
    finally:
        transfer.finetune = original
    rows = [{k: r[k] for k in ("situation", "strategy", "test_accuracy", "seconds")}
            for r in result.records]
    doc = {"config": config, "settings": settings, "seed": seed, "seconds": round(seconds, 1),
           "source_accuracy": result.source["test_accuracy"],
           "baseline_accuracy": (result.baseline or {}).get("test_accuracy"), "records": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"recipes-{config}-{label}.json"
    path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {path}")
    return doc


def compare(a, b):
    """Markdown rows: situation, strategy, accuracy under a and b, difference (pp)."""
    docs = [json.loads((RESULTS / f"{name}.json").read_text()) for name in (a, b)]
    cells = [{(r["situation"], r["strategy"]): r["test_accuracy"] for r in d["records"]}
             for d in docs]
    lines = [f"| situation | strategy | {a} | {b} | change (pp) |", "|---|---|---:|---:|---:|"]
    diffs = []
    for key in cells[0]:
        if key not in cells[1]:
            continue
        x, y = cells[0][key], cells[1][key]
        diffs.append(100 * (y - x))
        lines.append(f"| {key[0]} | {key[1]} | {100 * x:.1f}% | {100 * y:.1f}% | "
                     f"{100 * (y - x):+.1f} |")
    lines.append(f"\nmean change {sum(diffs) / len(diffs):+.2f} pp, worst {min(diffs):+.1f} pp, "
                 f"best {max(diffs):+.1f} pp over {len(diffs)} cells; source net "
                 f"{docs[0]['source_accuracy']:.4f} -> {docs[1]['source_accuracy']:.4f}; "
                 f"wall {docs[0]['seconds']:.0f} s -> {docs[1]['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the quick demo (default: full)")
    p.add_argument("--schedule", default="cosine", help="constant | cosine | onecycle")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--lr-decay-per-stage", type=float, default=1.0)
    p.add_argument("--label", help="name of the results file (default: the schedule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the fashion_cnn baseline (not a matrix cell; saves minutes)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = p.parse_args(argv)
    if args.compare:
        print(compare(*args.compare))
        return 0
    settings = {"schedule": args.schedule, "label_smoothing": args.label_smoothing,
                "lr_decay_per_stage": args.lr_decay_per_stage}
    run("quick" if args.quick else "full", settings, args.label or args.schedule, args.seed,
        baseline=not args.no_baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
