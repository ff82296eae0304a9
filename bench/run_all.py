"""Run every benchmark (`make bench`) and print the summary table (Markdown) for the README.

Each benchmark runs in its own process (fresh TensorFlow state), one after the other, waits
for a quiet machine before it measures (see `common.wait_for_quiet`), and writes
`bench/results/<name>.json`. This script then reads those files and prints one table of ratios
(tlkit vs a plain-Keras baseline, both measured in the same run), also written to
`bench/results/SUMMARY.md`. `bench/bench_tuning.py` runs too when it exists.

A benchmark whose measurement still shared the CPU with other processes (more than `POLLUTED`
cores on average, from its JSON's `load.other_cpu_cores`) is run again once (`--retries`), and
the quieter of the two results is kept.

Run: `.venv/bin/python bench/run_all.py [--quick] [--no-wait] [--only small-similar,zoo]`;
`--table` prints (and writes to SUMMARY.md) the table of the results already there, running
nothing.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

POLLUTED = 0.3  # other processes' average CPU (cores) during a measurement that counts as noisy
BENCHES = [  # (script, result name[, extra arguments])
    ("bench_small_similar.py", "small-similar"),
    # the same on a wider (4x the FLOPs) source base: nearer a real backbone, where the
    # forward pass outweighs Keras's fixed per-fit costs
    ("bench_small_similar.py", "small-similar-64-128-256", ("--source-widths", "64,128,256")),
    ("bench_large_similar.py", "large-similar"),
    ("bench_zoo.py", "zoo"),
    ("bench_predict.py", "predict"),
    ("bench_options.py", "options"),
    # the streaming data layer on a generated folder of 500x375 JPEGs: one pass, small-similar
    # on image files, peak memory, decode limit. Its small-similar figure uses ResNet50 at 32 px:
    # with random weights MobileNetV2's pooled features vanish (both sides sit at chance), so
    # the accuracy comparison would mean nothing there.
    ("bench_data.py", "data", ("--backbone", "resnet50", "--ft-size", "32")),
    ("bench_image_cache.py", "image-cache"),
    ("bench_advise.py", "advise"),
    # float32 against bfloat16: the kernels' ceiling and plain Keras training (issue 26)
    ("bench_ceiling.py", "ceiling"),
    # tlkit's fine-tuning phases (precision auto) against the plain-Keras loop, and the ceiling
    ("bench_finetune_throughput.py", "finetune-throughput"),
    # --precision auto's probe and bfloat16's accuracy; backend, XLA and threads (issue 26)
    ("bench_precision.py", "precision"),
    ("bench_runtime.py", "runtime"),
    ("bench_tuning.py", "tuning"),  # another owner's; runs when present
]
NO_RETRY = {"tuning"}  # long; its owner decides about repeats


def flags_for(script, args):
    """Our flags, passed to a benchmark that knows them (bench_tuning.py may not)."""
    text = (HERE / script).read_text(errors="replace")
    out = []
    if args.quick and "--quick" in text:
        out.append("--quick")
    if args.no_wait and "--no-wait" in text:
        out.append("--no-wait")
    if args.max_wait is not None and "--max-wait" in text:
        out += ["--max-wait", str(args.max_wait)]
    return out


def run_one(script, args, log_dir, extra=(), name=None):
    """Run one benchmark, echoing its stdout; stderr goes to a log file. Returns (rc, s, log)."""
    cmd = [sys.executable, str(HERE / script), *flags_for(script, args), *extra]
    log = log_dir / f"{name or pathlib.Path(script).stem}.stderr.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    print(f"\n$ {' '.join([os.path.relpath(cmd[0], common.ROOT), *cmd[1:]])}", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=err,
                                text=True, env=env)
        for line in proc.stdout:
            print(line, end="", flush=True)
        rc = proc.wait()
    secs = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        print(f"FAILED (exit {rc}); last lines of {log}:\n" + "\n".join(tail), flush=True)
    return rc, secs, log


def pollution(path):
    """Other processes' average CPU (cores) while the benchmark in `path` measured, or None."""
    try:
        return float(json.loads(pathlib.Path(path).read_text())["load"]["other_cpu_cores"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def rows_of(result, fallback_name):
    """The table rows of one result JSON (a generic row for files without `rows`)."""
    if isinstance(result.get("rows"), list) and result["rows"]:
        return result["rows"]
    ratio = result.get("ratio")
    return [common.row(result.get("name", fallback_name), result.get("description", ""),
                       ratio if isinstance(ratio, (int, float)) else None,
                       str(result.get("target", "-")), result.get("target_met"), None, "")]


def collect(status):
    """(table rows, environment) from the result files of the benchmarks in `status`."""
    rows, env = [], {}
    for s in status:
        if s["rc"] != 0:
            rows.append(common.row(s["script"], "FAILED (see its log)", None, "-", None))
            continue
        for f in s["results"]:
            result = json.loads(pathlib.Path(f).read_text())
            env = result.get("environment") or env
            rows.extend(rows_of(result, pathlib.Path(f).stem))
    return rows, env


def markdown(rows, env, total_s=None, quick=False):
    def met(v):
        return "yes" if v is True else ("**no**" if v is False else "-")

    lines = []
    if quick:
        lines.append("_--quick run: tiny sizes, the numbers are not meaningful._\n")
    lines += ["| benchmark | comparison (tlkit vs plain Keras, measured in the same run) | ratio "
              "| target | met | accuracy | setup |",
              "|---|---|---:|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['benchmark']} | {r['comparison']} | {ratio} | {r['target']} | "
                     f"{met(r.get('met'))} | {r.get('accuracy') or ''} | {r.get('note') or ''} |")
    lines.append("")
    lines.append(f"Ratios of two sides measured in one process each; {env.get('cpu', 'CPU')}, "
                 f"{env.get('cpu_count')} cores, CPU only, TensorFlow {env.get('tensorflow')}, "
                 f"Keras {env.get('keras')}. Absolute times and load: `bench/results/*.json`."
                 + (f" This run of bench/run_all.py took {total_s / 60:.1f} min."
                    if total_s else ""))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    p.add_argument("--max-wait", type=float, default=None,
                   help="seconds each benchmark waits at most for a quiet machine")
    p.add_argument("--retries", type=int, default=1,
                   help="re-run a benchmark whose measurement shared the CPU with other "
                        "processes (> POLLUTED cores on average) this many times; the least "
                        "polluted result is kept (default 1)")
    p.add_argument("--table", action="store_true",
                   help="run nothing: print the table of the results already in bench/results")
    p.add_argument("--only", default=None,
                   help="comma-separated result names or scripts to run (default: all)")
    args = p.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    results_dir = common.results_dir(args.quick)
    log_dir = common.cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    status = []
    if args.table:
        for script, name, *_ in BENCHES:
            f = results_dir / f"{name}.json"
            if f.is_file() and not (wanted and not ({script, name} & wanted)):
                status.append({"script": script, "rc": 0, "seconds": 0.0, "results": [str(f)]})
        rows, env = collect(status)
        table = markdown(rows, env or common.environment(), None, args.quick)
        if not wanted:
            (results_dir / "SUMMARY.md").write_text(table + "\n")
        print(table)
        return
    for script, name, *extra in BENCHES:
        extra = tuple(extra[0]) if extra else ()
        if not (HERE / script).is_file():
            continue
        if wanted and not ({script, pathlib.Path(script).stem, name} & wanted):
            continue
        started = time.time()
        rc, secs, log = run_one(script, args, log_dir, extra, name)
        if name is not None:
            files = [results_dir / f"{name}.json"]
        else:  # unknown result name: the JSON files this run wrote
            files = sorted(f for d in {results_dir, common.RESULTS} if d.is_dir()
                           for f in d.glob("*.json") if f.stat().st_mtime >= started)
        retries = 0 if (name is None or name in NO_RETRY or args.quick) else args.retries
        for _ in range(retries):
            noise = pollution(files[0]) if rc == 0 else None
            if noise is None or noise <= POLLUTED:
                break
            print(f"  (others used {noise:.2f} cores while it measured: running it again)")
            kept = files[0].read_text()
            rc, more, log = run_one(script, args, log_dir, extra, name)
            secs += more
            again = pollution(files[0]) if rc == 0 else None
            if again is None or again > noise:  # keep the quieter of the two
                files[0].write_text(kept)
                rc = 0
        status.append({"script": script, "rc": rc, "seconds": round(secs, 1),
                       "results": [str(f) for f in files if f.is_file()]})
    total = time.perf_counter() - t_all

    rows, env = collect(status)
    env = env or common.environment()
    table = markdown(rows, env, total, args.quick)
    results_dir.mkdir(parents=True, exist_ok=True)
    if not wanted:
        (results_dir / "SUMMARY.md").write_text(table + "\n")
    print("\n## Benchmarks (tlkit vs plain Keras)\n")
    print(table)
    print(f"\nbench: {len(status)} benchmark(s), "
          + ", ".join(f"{s['script']} {s['seconds']:.0f} s" + ("" if s["rc"] == 0 else " FAILED")
                      for s in status)
          + f"; total {total / 60:.1f} min")
    sys.exit(1 if any(s["rc"] != 0 for s in status) else 0)


if __name__ == "__main__":
    main()
