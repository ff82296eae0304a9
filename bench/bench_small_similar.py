"""small-similar: tlkit's feature cache vs the keras.io frozen-base `model.fit`, same run.

Both sides train the same head (GlobalAveragePooling2D -> Dropout 0.2 -> Dense softmax, the same
initial Dense weights) on the same frozen base (the source model's convolutional base, loaded
from the same `.h5`), on the same images (no augmentation), with the same batch size, epochs,
optimizer (Adam 1e-3), seed and callbacks (EarlyStopping on val_loss with restored best weights,
patience = epochs so every epoch runs: tlkit's default callback, given to the baseline too).

- tlkit: `tlkit.finetune(data=..., backbone="source.h5", strategy="small-similar",
  cache_features=True, augment=False, autotune=False)`: one forward pass of the base over
  train + val, then the head trains on the cached features.
- keras.io (https://keras.io/guides/transfer_learning/): `base.trainable = False`,
  `inputs -> base(x, training=False) -> GlobalAveragePooling2D -> Dropout -> Dense`,
  `model.fit(train_ds, validation_data=val_ds, epochs=...)`: images through the base every epoch.
- floor: start-up (`keras.models.load_model` of the source file) plus one forward pass of the
  base over train + val (`base.predict`, same batches): the least a frozen-base method can cost.

Order: warm-up of both paths (tiny, not timed), wait for a quiet machine, then floor, tlkit,
keras, then tlkit, floor twice more; tlkit and the floor are the medians of their three runs.
Training time = wall time minus the test evaluation (timed on both sides, reported apart).

Run: `.venv/bin/python bench/bench_small_similar.py` (`--quick` for a smoke run;
`--source-widths 64,128,256` for the wider base, results in small-similar-64-128-256.json).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

NAME = "small-similar"
TARGET_SPEEDUP = 8.0
TARGET_FLOOR = 1.3
REPEATS = 3  # runs of tlkit and of the floor (short); the baseline runs once, in between


def settings(quick):
    if quick:
        return dict(per_class=60, val_per_class=20, test_per_class=40, epochs=2, batch_size=64)
    return dict(per_class=2000, val_per_class=200, test_per_class=None, epochs=10,
                batch_size=64)


def run_tlkit(ds, source, epochs, batch_size, seed, strategy="small-similar"):
    """One `tlkit.finetune` run; returns timings, accuracy and the initial head weights."""
    import tlkit
    from tlkit.evaluation import report
    from tlkit.training import train

    evals, fits, init = [], [], {}
    with common.timed_calls(report, "evaluate", evals), common.timed_calls(train, "fit", fits):
        timed_fit = train.fit

        def fit_spy(plan, dataset, **kw):  # records the head's initial weights
            init["predictions"] = kw["model"].get_layer("predictions").get_weights()
            return timed_fit(plan, dataset, **kw)

        train.fit = fit_spy
        with common.Timer() as t:
            # patience = epochs: every epoch runs, as on the keras side; epochs=None: the
            # default budget by steps with its default patience (bench_head_budget.py)
            extra = {} if epochs is None else {"patience": epochs}
            res = tlkit.finetune(data=ds, backbone=str(source), strategy=strategy,
                                 epochs=epochs, weights=None, batch_size=batch_size,
                                 augment=False, cache_features=True, autotune=False,
                                 seed=seed, verbose=0, **extra)
    info = res.report["fit"]
    out = {"total_s": t.seconds, "eval_s": sum(evals), "fit_s": sum(fits),
           "train_s": t.seconds - sum(evals),
           "startup_s": t.seconds - sum(evals) - sum(fits),
           "cache_s": (info.get("cache") or {}).get("seconds"),
           "phases": info["phases"], "accuracy": float(res.report["accuracy"]),
           "epochs_run": len(res.history.get("loss", [])),
           "val_accuracy": [round(v, 4) for v in res.history.get("val_accuracy", [])],
           "trainable": sorted("/".join(w.path.split("/")[-2:])
                               for w in res.model.trainable_weights)}
    del res
    common.free()
    return out, init["predictions"]


def keras_io_model(source, num_classes, head_init):
    """The keras.io transfer-learning model on the source file's base (plain Keras only)."""
    import keras

    base = common.nested_base(keras.models.load_model(source, compile=False))
    base.trainable = False
    inputs = keras.Input(base.input_shape[1:])
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    dense = keras.layers.Dense(num_classes, activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    if head_init is not None:
        dense.set_weights(head_init)
    return model, base


def compile_keras(model, lr):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def keras_callbacks(epochs):
    import keras

    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=epochs,
                                          restore_best_weights=True)]


def run_keras(ds, source, epochs, batch_size, seed, head_init):
    """keras.io: frozen base, model.fit on images every epoch."""
    import keras

    with common.Timer() as t:
        keras.utils.set_random_seed(seed)
        model, _ = keras_io_model(source, ds.num_classes, head_init)
        compile_keras(model, 1e-3)
        train_ds = common.keras_io_dataset(ds.x_train, ds.y_train, batch_size, shuffle=True,
                                           seed=seed)
        val_ds = common.keras_io_dataset(ds.x_val, ds.y_val, batch_size)
        h = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                      callbacks=keras_callbacks(epochs), verbose=0)
    with common.Timer() as e:
        acc = common.accuracy(model, ds.x_test, ds.y_test, batch_size)
    out = {"train_s": t.seconds, "eval_s": e.seconds, "total_s": t.seconds + e.seconds,
           "accuracy": acc, "epochs_run": len(h.history["loss"]),
           "val_accuracy": [round(v, 4) for v in h.history["val_accuracy"]]}
    del model
    common.free()
    return out


def run_floor(ds, source, batch_size):
    """Start-up (load the source file, take its base) + one forward pass over train + val."""
    import keras
    import numpy as np

    with common.Timer() as t_load:
        base = common.nested_base(keras.models.load_model(source, compile=False))
    x = np.concatenate([ds.x_train, ds.x_val])
    with common.Timer() as t_fwd:
        base.predict(common.keras_io_dataset(x, None, batch_size), verbose=0)
    del base
    common.free()
    return {"startup_s": t_load.seconds, "forward_s": t_fwd.seconds,
            "total_s": t_load.seconds + t_fwd.seconds, "images": len(x)}


def median_of(runs, key):
    """The median over the runs (the mean of two)."""
    return common.median([r[key] for r in runs])


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--source-widths", default="32,64,128",
                   help="filters of the source model's vgg_blocks (heavier base: 64,128,256)")
    args = p.parse_args()
    s = settings(args.quick)
    widths = common.source_config(args).widths
    # Results of a non-default base go to their own file (small-similar-64-128-256.json).
    name = NAME if widths == common.SourceConfig().widths else (
        f"{NAME}-{'-'.join(map(str, widths))}")
    print(f"bench {NAME}: tlkit feature cache vs keras.io frozen-base fit ({s['epochs']} epochs)")
    fashion = common.fashion()
    source, source_info = common.source_model(fashion, common.source_config(args))
    ds = common.subset(fashion, common.TARGET_CLASSES, s["per_class"], s["val_per_class"],
                       s["test_per_class"], args.seed)
    print(f"  target: Fashion-MNIST classes {list(common.TARGET_CLASSES)}, {common.counts(ds)}, "
          f"{ds.image_shape}; backbone: the source model's base ({source_info['description']})")
    tiny = common.subset(fashion, common.TARGET_CLASSES, 20, 10, 10, args.seed)
    run_tlkit(tiny, source, 1, s["batch_size"], args.seed)  # warm-up of both paths
    run_keras(tiny, source, 1, s["batch_size"], args.seed, None)
    run_floor(tiny, source, s["batch_size"])

    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    head_init = {}

    def tlkit_run():
        out, init = run_tlkit(ds, source, s["epochs"], s["batch_size"], args.seed)
        head_init.setdefault("w", init)
        return out

    floors, tlkits = [], []
    floors.append(common.watched(run_floor, ds, source, s["batch_size"]))
    tlkits.append(common.watched(tlkit_run))
    keras_run = common.watched(run_keras, ds, source, s["epochs"], s["batch_size"], args.seed,
                               head_init["w"])
    for _ in range(REPEATS - 1):
        tlkits.append(common.watched(tlkit_run))
        floors.append(common.watched(run_floor, ds, source, s["batch_size"]))
    load = {**quiet, **watch.stop()}

    tl_train = median_of(tlkits, "train_s")
    tl_total = median_of(tlkits, "total_s")
    floor = median_of(floors, "total_s")
    speedup = keras_run["train_s"] / tl_train
    speedup_total = keras_run["total_s"] / tl_total
    vs_floor = tl_train / floor
    acc = common.accuracy_check(tlkits[0]["accuracy"], keras_run["accuracy"])
    acc_text = (f"tlkit {acc['tlkit']:.4f} / keras {acc['keras']:.4f} "
                f"({acc['diff_pp']:+.2f} pp)")
    setup = (f"{common.counts(ds)['train']:,} train + {common.counts(ds)['val']:,} val images "
             f"28x28x1, source-model base (demo_vgg "
             f"{'-'.join(map(str, source_info['config']['widths']))}), {s['epochs']} epochs, batch "
             f"{s['batch_size']}")
    rows = [
        common.row(name, "tlkit (feature cache) vs keras.io frozen-base fit: training speedup",
                   speedup, f">= {TARGET_SPEEDUP:g}x", speedup >= TARGET_SPEEDUP, acc_text, setup),
        common.row(name, "tlkit training time / (start-up + one forward pass over train+val)",
                   vs_floor, f"<= {TARGET_FLOOR:g}x", vs_floor <= TARGET_FLOOR, None,
                   "the limit of a frozen-base method"),
    ]
    payload = {
        "description": "tlkit small-similar (feature cache) vs the keras.io frozen-base fit",
        "rows": rows,
        "ratios": {"speedup_train": round(speedup, 3),
                   "speedup_incl_test_eval": round(speedup_total, 3),
                   "tlkit_train_over_floor": round(vs_floor, 3),
                   "tlkit_total_incl_eval_over_floor": round(tl_total / floor, 3)},
        "targets": {"speedup": TARGET_SPEEDUP, "tlkit_over_floor": TARGET_FLOOR,
                    "accuracy_tolerance_pp": 0.5},
        "targets_met": {"speedup": speedup >= TARGET_SPEEDUP,
                        "tlkit_over_floor": vs_floor <= TARGET_FLOOR,
                        "accuracy": acc["within_tolerance"]},
        "accuracy": acc,
        "setup": {"data": f"Fashion-MNIST classes {list(common.TARGET_CLASSES)} (the demo's "
                          f"target split), {common.counts(ds)}, 28x28x1, no augmentation",
                  "backbone": source_info, "epochs": s["epochs"], "batch_size": s["batch_size"],
                  "optimizer": "Adam 1e-3", "head": "GAP -> Dropout 0.2 -> Dense softmax",
                  "head_init": "identical (tlkit's initial Dense weights copied to keras)",
                  "input": "tf.data from the uint8 arrays, autotune off, prefetch 2, on both sides",
                  "callbacks": "EarlyStopping(val_loss, patience=epochs, restore_best_weights) "
                               "on both sides",
                  "order": "warm-up; floor, tlkit, keras, (tlkit, floor) x 2; medians",
                  "seed": args.seed},
        "seconds": {"tlkit_runs": tlkits, "keras": keras_run, "floor_runs": floors},
        "load": load,
    }
    path = common.write(name, payload, args)
    print(f"  tlkit's training time: start-up {median_of(tlkits, 'startup_s') / tl_train:.0%}, "
          f"feature pass {median_of(tlkits, 'cache_s') / tl_train:.0%}, rest (head epochs) "
          f"{1 - (median_of(tlkits, 'startup_s') + median_of(tlkits, 'cache_s')) / tl_train:.0%}; "
          f"its feature pass / the floor's forward pass: "
          f"{median_of(tlkits, 'cache_s') / median_of(floors, 'forward_s'):.2f}x")
    common.print_rows(rows)
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
