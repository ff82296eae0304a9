"""large-similar: tlkit's two-phase fine-tuning vs plain Keras two-phase, same run.

Both sides: phase 1 trains the head (GAP -> Dropout 0.2 -> Dense softmax, the same initial
weights) on the frozen base for `head_epochs` at LR 1e-3; phase 2 unfreezes the same last
stage of the base (its convolutions; BatchNormalization stays frozen, in inference mode) and
trains it with the head at LR 1e-4 (LR / 10) for the remaining epochs. Same data (no
augmentation), batch size, seed, callbacks (EarlyStopping on val_loss, best weights restored,
patience = epochs: every epoch runs) and base (the source model's, from the same `.h5`).

- tlkit: `tlkit.finetune(strategy="large-similar", epochs=E, augment=False, autotune=False)`:
  phase 1 on cached features (one forward pass), phase 2 on images.
- Keras (keras.io transfer-learning guide, with the guide's "unfreeze the top layers" variant):
  `base.trainable = False`, `model.fit(...)`; then `base.trainable = True` with only the last
  stage's layers trainable (BN kept frozen), `model.compile(Adam(1e-4))`, `model.fit(...)`.

Order: warm-up of both paths (tiny, not timed), wait for a quiet machine, then tlkit, keras,
tlkit (tlkit is the mean of its two runs around the baseline). Training time = wall time minus
the test evaluation.

Run: `.venv/bin/python bench/bench_large_similar.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)
import bench_small_similar as ss

NAME = "large-similar"
TARGET_SPEEDUP = 1.5


def settings(quick):
    if quick:
        return dict(per_class=60, val_per_class=20, test_per_class=40, epochs=2, batch_size=64)
    return dict(per_class=2000, val_per_class=200, test_per_class=None, epochs=10,
                batch_size=64)


def layer_names(weights, exclude=("predictions", "dense")):
    """Layer names owning `weights`, head output layer excluded (named differently per side)."""
    return sorted({w.path.split("/")[-2] for w in weights} - set(exclude))


def run_keras(ds, source, head_epochs, fine_epochs, batch_size, seed, head_init):
    """Plain Keras two-phase fine-tuning (keras.io pattern, last stage unfrozen)."""
    import keras

    times = {}
    with common.Timer() as t:
        keras.utils.set_random_seed(seed)
        model, base = ss.keras_io_model(source, ds.num_classes, head_init)
        train_ds = common.keras_io_dataset(ds.x_train, ds.y_train, batch_size, shuffle=True,
                                           seed=seed)
        val_ds = common.keras_io_dataset(ds.x_val, ds.y_val, batch_size)
        with common.Timer() as p1:
            ss.compile_keras(model, 1e-3)
            h1 = model.fit(train_ds, validation_data=val_ds, epochs=head_epochs,
                           callbacks=ss.keras_callbacks(head_epochs), verbose=0)
        # Unfreeze the top block: its layers are named like the last convolution's block.
        top = [l.name for l in base.layers if isinstance(l, keras.layers.Conv2D)][-1]
        top = top.split("_")[0] + "_"
        base.trainable = True
        for layer in base.layers:
            layer.trainable = (layer.name.startswith(top)
                               and not isinstance(layer, keras.layers.BatchNormalization))
        with common.Timer() as p2:
            ss.compile_keras(model, 1e-4)
            h2 = model.fit(train_ds, validation_data=val_ds, epochs=fine_epochs,
                           callbacks=ss.keras_callbacks(fine_epochs), verbose=0)
    times = {"phase1_s": p1.seconds, "phase2_s": p2.seconds}
    with common.Timer() as e:
        acc = common.accuracy(model, ds.x_test, ds.y_test, batch_size)
    out = {"train_s": t.seconds, "eval_s": e.seconds, "total_s": t.seconds + e.seconds, **times,
           "accuracy": acc, "epochs_run": len(h1.history["loss"]) + len(h2.history["loss"]),
           "val_accuracy": [round(v, 4) for v in h1.history["val_accuracy"]
                            + h2.history["val_accuracy"]],
           "unfrozen_prefix": top, "trainable_layers": layer_names(model.trainable_weights),
           "trainable_params": int(sum(w.numpy().size for w in model.trainable_weights))}
    del model, base
    common.free()
    return out


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--source-widths", default="32,64,128",
                   help="filters of the source model's vgg_blocks (heavier base: 64,128,256)")
    args = p.parse_args()
    s = settings(args.quick)
    head_epochs = -(-s["epochs"] // 2)  # tlkit's default split: half, rounded up
    fine_epochs = s["epochs"] - head_epochs
    print(f"bench {NAME}: tlkit two-phase vs plain Keras two-phase ({head_epochs} head + "
          f"{fine_epochs} fine-tune epochs)")
    fashion = common.fashion()
    source, source_info = common.source_model(fashion, common.source_config(args))
    ds = common.subset(fashion, common.TARGET_CLASSES, s["per_class"], s["val_per_class"],
                       s["test_per_class"], args.seed)
    print(f"  target: Fashion-MNIST classes {list(common.TARGET_CLASSES)}, {common.counts(ds)}; "
          f"backbone: the source model's base ({source_info['description']})")
    tiny = common.subset(fashion, common.TARGET_CLASSES, 20, 10, 10, args.seed)
    ss.run_tlkit(tiny, source, 2, s["batch_size"], args.seed, strategy=NAME)  # warm-up
    run_keras(tiny, source, 1, 1, s["batch_size"], args.seed, None)

    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    head_init = {}

    def tlkit_run():
        out, init = ss.run_tlkit(ds, source, s["epochs"], s["batch_size"], args.seed,
                                 strategy=NAME)
        head_init.setdefault("w", init)
        return out

    t1 = common.watched(tlkit_run)
    keras_run = common.watched(run_keras, ds, source, head_epochs, fine_epochs, s["batch_size"],
                               args.seed, head_init["w"])
    t2 = common.watched(tlkit_run)
    load = {**quiet, **watch.stop()}
    tlkits = [t1, t2]
    for t in tlkits:
        t["trainable_layers"] = sorted({n.split("/")[0] for n in t["trainable"]}
                                       - {"predictions"})

    tl_train = ss.median_of(tlkits, "train_s")
    speedup = keras_run["train_s"] / tl_train
    speedup_total = keras_run["total_s"] / ss.median_of(tlkits, "total_s")
    same_layers = t1["trainable_layers"] == keras_run["trainable_layers"]
    acc = common.accuracy_check(t1["accuracy"], keras_run["accuracy"])
    acc_text = f"tlkit {acc['tlkit']:.4f} / keras {acc['keras']:.4f} ({acc['diff_pp']:+.2f} pp)"
    setup = (f"{common.counts(ds)['train']:,} train + {common.counts(ds)['val']:,} val images "
             f"28x28x1, source-model base (demo_vgg "
             f"{'-'.join(map(str, source_info['config']['widths']))}), "
             f"{head_epochs}+{fine_epochs} epochs, "
             f"batch {s['batch_size']}, last stage unfrozen at LR/10")
    rows = [common.row(NAME, "tlkit two-phase vs plain Keras two-phase: training speedup",
                       speedup, f">= {TARGET_SPEEDUP:g}x", speedup >= TARGET_SPEEDUP, acc_text,
                       setup)]
    # Where the time goes, per phase (shares of each side's training time).
    tl_p1 = ss.median_of([{"v": t["phases"][0]["seconds"]} for t in tlkits], "v")
    tl_p2 = ss.median_of([{"v": t["phases"][-1]["seconds"]} for t in tlkits], "v")
    payload = {
        "description": "tlkit large-similar (head on cached features, then last stage at "
                       "LR/10) vs plain Keras two-phase fine-tuning",
        "rows": rows,
        "ratios": {"speedup_train": round(speedup, 3),
                   "speedup_incl_test_eval": round(speedup_total, 3),
                   "phase1_keras_over_tlkit": round(keras_run["phase1_s"] / tl_p1, 3),
                   "phase2_keras_over_tlkit": round(keras_run["phase2_s"] / tl_p2, 3)},
        "targets": {"speedup": TARGET_SPEEDUP, "accuracy_tolerance_pp": 0.5},
        "targets_met": {"speedup": speedup >= TARGET_SPEEDUP,
                        "accuracy": acc["within_tolerance"]},
        "accuracy": acc,
        "same_trainable_layers_in_phase2": same_layers,
        "setup": {"data": f"Fashion-MNIST classes {list(common.TARGET_CLASSES)}, "
                          f"{common.counts(ds)}, 28x28x1, no augmentation",
                  "backbone": source_info, "epochs": s["epochs"], "head_epochs": head_epochs,
                  "fine_tune_epochs": fine_epochs, "batch_size": s["batch_size"],
                  "learning_rates": [1e-3, 1e-4],
                  "head": "GAP -> Dropout 0.2 -> Dense softmax (same initial weights)",
                  "input": "tf.data from the uint8 arrays, autotune off, prefetch 2, both sides",
                  "callbacks": "EarlyStopping(val_loss, patience=epochs, restore_best_weights) "
                               "per phase on both sides",
                  "order": "warm-up; tlkit, keras, tlkit", "seed": args.seed},
        "seconds": {"tlkit_runs": tlkits, "keras": keras_run},
        "load": load,
    }
    path = common.write(NAME, payload, args)
    print(f"  per phase, keras / tlkit time: head phase "
          f"{payload['ratios']['phase1_keras_over_tlkit']:.2f}x, fine-tune phase "
          f"{payload['ratios']['phase2_keras_over_tlkit']:.2f}x; share of tlkit's training "
          f"time in the fine-tune phase: {tl_p2 / tl_train:.0%}")
    print(f"  same layers unfrozen in phase 2 on both sides: {same_layers} "
          f"({', '.join(keras_run['trainable_layers'])})")
    common.print_rows(rows)
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
