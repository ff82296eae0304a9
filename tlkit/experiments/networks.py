"""The demo's networks: the source net it pretrains and the `fashion_cnn` baseline."""

import pathlib
import time

from tlkit import data as data_lib
from tlkit.deploy import saving
from tlkit.evaluation import report as report_lib
from tlkit.experiments.config import BASELINE_TARGET, BN_MOMENTUM, FULL, IMAGE_SHAPE
from tlkit.experiments.situations import _counts, _subset
from tlkit.models import zoo
from tlkit.models.blocks import classifier_head, vgg_block
from tlkit.training import phases


def build_source_net(num_classes, widths=FULL.widths, convs=FULL.convs,
                     input_shape=IMAGE_SHAPE, pooling=FULL.pooling, name="demo_vgg"):
    """The demo's source classifier: a small VGG from `vgg_block`, raw pixels in.

    `Rescaling(1/255)` (named `preprocess_rescale`, so backbones treat it as preprocessing),
    one `vgg_block` per entry of `widths` (BN before ReLU; each block is one stage), then
    `classifier_head` (`pooling`, dropout 0.2, softmax). Standard layers only.
    BatchNormalization uses momentum `BN_MOMENTUM` (0.9, PyTorch's default) instead of Keras's
    0.99, so that the moving statistics are usable after the few hundred steps of a small or
    quick run (with 0.99 a 40-step run evaluates with nearly its initial statistics).

    Args:
        num_classes: output classes.
        widths: filters per block, e.g. (32, 64, 128).
        convs: 3x3 convolutions per block.
        input_shape: (height, width, channels).
        pooling: `"flatten"`, `"avg"` or `"max"` (the head's first layer).
        name: the model name.

    Returns:
        An uncompiled Functional `keras.Model`.

    Example:
        >>> from tlkit.experiments.networks import build_source_net
        >>> build_source_net(5).output_shape
        (None, 5)
    """
    import keras

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    for i, filters in enumerate(widths, start=1):
        x = vgg_block(x, int(filters), int(convs), bn="before", name=f"block{i}")
    outputs = classifier_head(x, num_classes, pooling=pooling, dropout=0.2, name="head")
    model = keras.Model(inputs, outputs, name=name)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def train_baseline(fashion, config, seed, out_dir, log=print, verbose=0):
    """Train the zoo's `fashion_cnn` on all ten Fashion-MNIST classes; return its record.

    The model is `Rescaling(1/255)` then `fashion_cnn` as registered in `tlkit.models.zoo`
    (conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, FC 600-120), trained with Adam (lr 1e-3) for up
    to `config.baseline_epochs` epochs (the learning rate drops x0.3 when the validation loss
    stalls; EarlyStopping keeps the epoch with the best validation accuracy), then evaluated on
    the 10,000 test images.

    Args:
        fashion: Fashion-MNIST as a `tlkit.data.Dataset`.
        config: a `DemoConfig` (`baseline_per_class`, `baseline_epochs`, `baseline_batch`,
            `test_per_class`).
        seed: seeds the subset, the initialisation and the shuffling.
        out_dir: folder for `fashion_cnn.h5` and its report.
        log: a function that prints a progress line.
        verbose: Keras verbosity of `fit` (2: one line per epoch).

    Returns:
        A JSON-able dict: model, test_accuracy, seconds, epochs, images, file paths.
    """
    import keras

    t0 = time.perf_counter()
    ds = _subset(fashion, None, config.baseline_per_class, None, config.test_per_class, seed)
    log(f"4/4 the seeds' baseline: fashion_cnn on all {ds.num_classes} Fashion-MNIST classes, "
        f"{_counts(ds)}, up to {config.baseline_epochs} epochs")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(ds.image_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    model = keras.Model(inputs, zoo.entry("fashion_cnn").fn(x, ds.num_classes),
                        name="fashion_cnn")
    phases.compile_classifier(model, keras.optimizers.Adam(learning_rate=1e-3))
    out_dir = pathlib.Path(out_dir)
    (out_dir / "fashion_cnn").mkdir(parents=True, exist_ok=True)
    # Accuracy is the target here: keep the epoch with the best validation accuracy.
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                               restore_best_weights=True),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1,
                                                   min_lr=1e-5),
                 keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.CSVLogger(str(out_dir / "fashion_cnn" / "history.csv"))]
    train_ds = data_lib.pipeline(ds.x_train, ds.y_train, batch_size=config.baseline_batch,
                                 shuffle=True, seed=seed, autotune=False)
    val_ds = data_lib.pipeline(ds.x_val, ds.y_val, batch_size=512, autotune=False)
    h = model.fit(train_ds, validation_data=val_ds, epochs=config.baseline_epochs,
                  callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles
    history = {k: [float(v) for v in vs] for k, vs in h.history.items()}
    history["phase"] = ["full"] * len(history.get("loss", []))
    rep = report_lib.evaluate(model, ds.x_test, ds.y_test, ds.class_names,
                              out_dir=out_dir / "fashion_cnn", history=history, batch_size=512,
                              extra={"data": ds.summary()})
    path = saving.save(model, out_dir / "fashion_cnn.h5",
                       {"class_names": ds.class_names, "backbone": "zoo:fashion_cnn",
                        "data": ds.summary(), "metrics": {"accuracy": rep["accuracy"],
                                                          "macro_f1": rep["macro_f1"]}})
    secs = time.perf_counter() - t0
    record = {"model": "fashion_cnn", "data": "fashion_mnist", "classes": ds.num_classes,
              "test_accuracy": float(rep["accuracy"]), "macro_f1": float(rep["macro_f1"]),
              "seconds": round(secs, 2), "epochs": config.baseline_epochs,
              "epochs_run": len(history.get("loss", [])),
              "train_images": len(ds.y_train), "test_images": len(ds.y_test),
              "target": BASELINE_TARGET, "meets_target": bool(rep["accuracy"] >= BASELINE_TARGET),
              "seed_figures": {"dnn": 0.86, "cnn": 0.90}, "config": config.name,
              "file": str(path), "report": str(out_dir / "fashion_cnn")}
    log(f"fashion_cnn: test accuracy {record['test_accuracy']:.4f} ({secs:.0f} s) -> {path}")
    return record
