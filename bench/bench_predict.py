"""predict: a tlkit `.h5` loaded with plain `keras.models.load_model` vs the in-memory model.

For each model, the in-memory classifier is saved with `tlkit.deploy.saving.save` and loaded back with
`keras.models.load_model(path)` (no tlkit code involved in loading); both then `predict` the same
numpy images (batch 32, Keras's default). The benchmark checks that the predictions are equal
and reports the throughput ratio loaded / in-memory (target >= 0.95).

Models:
- `mobilenet_v2` classifier at 96x96x3 (tlkit's default backbone, `weights=None`: speed does not
  depend on the weights), small-similar head: what `tlkit finetune` saves;
- the source-model classifier (demo_vgg, 28x28x1) from the other benchmarks.

Each side gets one warm-up `predict` (tracing); then the sides alternate (A B) x 11, each call
short (about a second), so that a burst of other activity hits both sides alike. The ratio uses
the best (fastest) of the eleven calls per side: the work is identical and deterministic, and on
this machine the times of identical calls are bimodal (e.g. 0.49 s or 0.65 s at random, even
with nothing else running), so the median lands in either mode by chance and swings the ratio
by +-10%; the ratio of the medians is in the JSON too.

Run: `.venv/bin/python bench/bench_predict.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

NAME = "predict"
TARGET = 0.95


def measure(mem, loaded, x, rounds, batch_size):
    """(best img/s in-memory, best img/s loaded, ratio of the medians, max abs difference of the
    predictions, raw seconds)."""
    import numpy as np

    p_mem = mem.predict(x, batch_size=batch_size, verbose=0)  # warm-up (tracing)
    p_load = loaded.predict(x, batch_size=batch_size, verbose=0)
    diff = float(np.max(np.abs(p_mem - p_load)))
    secs = {"in_memory": [], "loaded": []}
    for _ in range(rounds):
        for key, model in (("in_memory", mem), ("loaded", loaded)):
            with common.Timer() as t:
                model.predict(x, batch_size=batch_size, verbose=0)
            secs[key].append(round(t.seconds, 4))
    best = {k: len(x) / min(v) for k, v in secs.items()}
    med = {k: len(x) / common.median(v) for k, v in secs.items()}
    return best["in_memory"], best["loaded"], med["loaded"] / med["in_memory"], diff, secs


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    import keras
    import numpy as np

    from tlkit.models import backbones
    from tlkit.deploy import saving
    from tlkit.training import strategies

    rounds, batch = (1, 32) if args.quick else (11, 32)
    n_mnv2, n_src = (64, 256) if args.quick else (768, 2000)
    fashion = common.fashion()
    print(f"bench {NAME}: .h5 loaded with keras.models.load_model vs the in-memory model")
    models = []

    keras.utils.set_random_seed(args.seed)
    bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    mnv2 = strategies.plan("small-similar", bb).build_model(10)
    rng = np.random.default_rng(args.seed)
    x_mnv2 = rng.integers(0, 256, (n_mnv2, 96, 96, 3)).astype(np.float32)
    models.append(("mobilenet_v2 classifier, 96x96x3 (weights=None)", mnv2, x_mnv2))

    source, source_info = common.source_model(
        fashion, common.QUICK_SOURCE if args.quick else common.SourceConfig())
    src = keras.models.load_model(source, compile=False)
    models.append(("source-model classifier (demo_vgg), 28x28x1", src,
                   fashion.x_test[:n_src].astype(np.float32)))

    folder = common.cache_dir() / "predict"
    loaded = []
    for label, model, x in models:
        path = saving.save(model, folder / f"{model.name}.h5", {"class_names": list("abcde")})
        loaded.append(keras.models.load_model(path))

    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    results = []
    for (label, model, x), back in zip(models, loaded):
        mem_ips, load_ips, ratio_median, diff, secs = measure(model, back, x, rounds, batch)
        results.append({"model": label, "images": len(x), "in_memory_img_s": round(mem_ips, 1),
                        "loaded_img_s": round(load_ips, 1), "ratio": round(load_ips / mem_ips, 3),
                        "ratio_of_medians": round(ratio_median, 3),
                        "max_abs_prediction_diff": diff, "seconds": secs})
    load = {**quiet, **watch.stop()}

    rows = [common.row(NAME, f"loaded .h5 vs in-memory model: predict img/s, {r['model']}",
                       r["ratio"], f">= {TARGET:g}", r["ratio"] >= TARGET, None,
                       f"{r['images']:,} images, batch {batch}, best of {rounds} calls per "
                       f"side (ratio of medians {r['ratio_of_medians']:.2f}); predictions equal: "
                       f"{r['max_abs_prediction_diff'] == 0.0} (max diff "
                       f"{r['max_abs_prediction_diff']:.1e})")
            for r in results]
    payload = {
        "description": "predict throughput of a tlkit .h5 loaded with keras.models.load_model "
                       "vs the in-memory model",
        "rows": rows, "results": results,
        "ratios": {r["model"]: r["ratio"] for r in results},
        "targets": {"throughput_ratio": TARGET},
        "targets_met": {r["model"]: r["ratio"] >= TARGET for r in results},
        "setup": {"batch_size": batch, "rounds": rounds,
                  "order": "warm-up predict per side, then in-memory, loaded alternating; "
                           "best of the calls per side (ratio of medians also given)",
                  "save": "tlkit.saving.save (.h5 + metadata)",
                  "load": "keras.models.load_model(path) (compile=True default, safe_mode on)",
                  "source_model": source_info, "seed": args.seed},
        "load": load,
    }
    path = common.write(NAME, payload, args)
    common.print_rows(rows)
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
