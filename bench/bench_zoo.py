"""zoo: `tlkit.models.zoo.build("fashion_cnn")` vs the same network written by hand in Keras.

The hand-written model is a `keras.Sequential` of the same layers (Conv2D 32 3x3 same, no bias
-> BN -> ReLU -> MaxPool 2; Conv2D 64 3x3 valid, no bias -> BN -> ReLU -> MaxPool 2; Flatten ->
Dense 600 ReLU -> Dropout 0.25 -> Dense 120 ReLU -> Dense 10 softmax); the benchmark checks that
the parameter counts match and copies the zoo model's initial weights into it, so both train
the same network from the same start, compiled the same way (Adam 1e-3, sparse categorical
cross-entropy, accuracy).

Two measurements of training throughput (images/s, tlkit / hand-written):

- same input: both fit on the SAME tf.data pipeline (float32 0..1 images, shuffled, batch 64,
  autotune off, prefetch 2): the ratio measures the model graphs only;
- natural input: each side's own path: tlkit = `Rescaling(1/255)` + the zoo network fed by
  `tlkit.data.pipeline` on uint8 images (as `tlkit demo` trains it); hand-written = the
  Sequential fed numpy float32 arrays scaled to 0..1 by `model.fit(x, y, batch_size=64)`.

Each model's first epoch (tracing) is a warm-up; the sides alternate A B A B A B (two timed
epochs each time), and throughput is the median over the timed epochs of each side.

Run: `.venv/bin/python bench/bench_zoo.py` (`--quick` for a smoke run).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

NAME = "zoo"
TARGET = 0.95


def hand_written(num_classes=10):
    """fashion_cnn written by hand, the way a Keras tutorial writes it."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="valid", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(600, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(120, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ], name="fashion_cnn_by_hand")


def compile_model(model):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def unit_dataset(x, y, batch_size, seed):
    """One shared tf.data input: float32 images in 0..1."""
    import numpy as np

    return common.keras_io_dataset((x.astype(np.float32) / 255.0), y, batch_size, shuffle=True,
                                   seed=seed)


def throughput(timer, n, skip_first):
    times = timer.times[1:] if skip_first else timer.times
    return n / common.median(times), times


def measure_pair(fit_a, fit_b, n, rounds, epochs):
    """Alternate A B A B ...; first epoch of each side's first fit is the warm-up."""
    ips = {"a": [], "b": []}
    raw = {"a": [], "b": []}
    for r in range(rounds):
        for key, fit in (("a", fit_a), ("b", fit_b)):
            timer = common.epoch_timer()
            fit(epochs + (1 if r == 0 else 0), timer)
            times = timer.times[1:] if r == 0 else timer.times
            raw[key].append([round(t, 3) for t in timer.times])
            ips[key].extend(n / t for t in times)
    return common.median(ips["a"]), common.median(ips["b"]), raw


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    import keras
    import numpy as np

    from tlkit import data as data_lib
    from tlkit.models import zoo

    n = 1000 if args.quick else 8000
    rounds, epochs, batch = (1, 1, 64) if args.quick else (3, 2, 64)
    fashion = common.fashion()
    x, y = fashion.x_train[:n], fashion.y_train[:n]
    print(f"bench {NAME}: zoo fashion_cnn vs the same network by hand ({n} images, batch {batch})")

    keras.utils.set_random_seed(args.seed)
    tl = zoo.build("fashion_cnn", (28, 28, 1), 10)
    hw = hand_written(10)
    same = tl.count_params() == hw.count_params()
    hw.set_weights(tl.get_weights())
    compile_model(tl)
    compile_model(hw)
    shared = unit_dataset(x, y, batch, args.seed)

    # natural paths: tlkit = Rescaling + zoo net on tlkit.data.pipeline (uint8 in)
    inputs = keras.Input((28, 28, 1))
    tl_nat = keras.Model(inputs, zoo.entry("fashion_cnn").fn(
        keras.layers.Rescaling(1.0 / 255.0)(inputs), 10), name="fashion_cnn_tlkit")
    tl_nat.set_weights(tl.get_weights())
    hw_nat = hand_written(10)
    hw_nat.set_weights(tl.get_weights())
    compile_model(tl_nat)
    compile_model(hw_nat)
    tl_pipe = data_lib.pipeline(x, y, batch_size=batch, shuffle=True, seed=args.seed,
                                autotune=False)
    x01 = x.astype(np.float32) / 255.0

    def fit_on(model, ds):
        return lambda e, cb: model.fit(ds, epochs=e, callbacks=[cb], verbose=0)

    quiet = common.wait_for_quiet(args)
    watch = common.CpuWatch().start()
    tl_ips, hw_ips, raw_same = measure_pair(fit_on(tl, shared), fit_on(hw, shared), n, rounds,
                                            epochs)
    nat_tl, nat_hw, raw_nat = measure_pair(
        fit_on(tl_nat, tl_pipe),
        lambda e, cb: hw_nat.fit(x01, y, batch_size=batch, epochs=e, shuffle=True,
                                 callbacks=[cb], verbose=0),
        n, rounds, epochs)
    load = {**quiet, **watch.stop()}
    test_x, test_y = fashion.x_test[:2000], fashion.y_test[:2000]
    acc_tl = common.accuracy(tl, (test_x.astype(np.float32) / 255.0), test_y)
    acc_hw = common.accuracy(hw, (test_x.astype(np.float32) / 255.0), test_y)

    ratio, ratio_nat = tl_ips / hw_ips, nat_tl / nat_hw
    acc = common.accuracy_check(acc_tl, acc_hw, tolerance_pp=None)
    rows = [
        common.row(NAME, "zoo fashion_cnn vs hand-written Keras: training img/s, same tf.data "
                         "input", ratio, f">= {TARGET:g}", ratio >= TARGET,
                   f"tlkit {acc_tl:.4f} / keras {acc_hw:.4f} (sanity)",
                   f"{n:,} Fashion-MNIST images, batch {batch}, same initial weights"),
        common.row(NAME, "zoo fashion_cnn vs hand-written Keras: training img/s, each side's "
                         "natural input", ratio_nat, f">= {TARGET:g}", ratio_nat >= TARGET, None,
                   "tlkit.data.pipeline (uint8, Rescaling in the model) vs numpy arrays"),
    ]
    payload = {
        "description": "tlkit zoo fashion_cnn vs the same network written by hand: training "
                       "throughput",
        "rows": rows,
        "ratios": {"same_input": round(ratio, 3), "natural_input": round(ratio_nat, 3)},
        "targets": {"throughput_ratio": TARGET},
        "targets_met": {"same_input": ratio >= TARGET, "natural_input": ratio_nat >= TARGET},
        "same_parameter_count": same, "params": tl.count_params(),
        "images_per_s": {"same_input": {"tlkit": round(tl_ips, 1), "keras": round(hw_ips, 1)},
                         "natural_input": {"tlkit": round(nat_tl, 1), "keras": round(nat_hw, 1)}},
        "epoch_seconds": {"same_input": raw_same, "natural_input": raw_nat},
        "accuracy_after_same_input_training": acc,
        "setup": {"images": n, "batch_size": batch, "rounds": rounds,
                  "timed_epochs_per_round": epochs,
                  "order": "A B A B A B (tlkit first); the first epoch of each model is a warm-up",
                  "same_input": "one tf.data pipeline (float32 0..1, shuffle, batch, autotune "
                                "off, prefetch 2) for both",
                  "natural_input": "tlkit: Rescaling(1/255) + zoo net, tlkit.data.pipeline on "
                                   "uint8; keras: numpy float32 0..1 into model.fit",
                  "seed": args.seed},
        "load": load,
    }
    path = common.write(NAME, payload, args)
    print(f"  same parameter count ({tl.count_params():,}): {same}")
    common.print_rows(rows)
    print(f"  other processes used {load['other_cpu_cores']} cores on average while measuring")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
