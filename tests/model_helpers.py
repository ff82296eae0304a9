"""Shared test helpers that build and train: a random batch, compile-and-build, one
training step, a small classifier trained on a photo folder."""

import numpy as np

import tlkit


def random_batch(input_shape, num_classes, n=4, seed=0):
    """Raw-pixel images 0..255 and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,))
    return x, y


def compile_and_build(model, optimizer="adam", **compile_kwargs):
    """`model.compile(...)`, then build the optimizer's variables eagerly.

    With the TensorFlow backend Keras otherwise creates them inside the first traced train
    step, and TensorFlow then traces that step twice (about twice the seconds of a first
    `fit` / `train_on_batch`).
    """
    model.compile(optimizer=optimizer, **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    return model


def one_training_step(model, num_classes, n=4):
    """Compile and run one step; return the loss (a finite float)."""
    x, y = random_batch(model.input_shape[1:], num_classes, n)
    loss = "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy"
    if num_classes == 1:
        y = (y % 2).astype("float32")
    compile_and_build(model, loss=loss)
    return float(model.train_on_batch(x, y))


def small_photo_model(photos, backbone, out):
    """A one-epoch small-similar classifier on `photos` at 32 px (random base): (out, photos)."""
    tlkit.finetune(data=str(photos), backbone=backbone, weights=None, image_size=32,
                   strategy="small-similar", epochs=1, out=out, verbose=0, augment=False)
    return out, photos


def finetune_tiny(ds, **kw):
    """`tlkit.finetune` of `zoo:simple_cnn` from random weights on `ds`, quiet, unaugmented."""
    return tlkit.finetune(data=ds, backbone="zoo:simple_cnn", weights=None, augment=False,
                          verbose=0, seed=0, **kw)
