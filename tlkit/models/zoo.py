"""Classic from-scratch models, built from `tlkit.models.blocks`, in a registry.

A model joins the registry with `@register(...)`; `build(name, input_shape, num_classes)`
makes it and `names()` lists them. Every model is a Functional `keras.Model` of standard
layers only (no Lambda, no custom classes), so a saved `.h5` loads in plain Keras.

Example:
    >>> from tlkit.models import zoo
    >>> model = zoo.build("lenet5")
    >>> model.count_params()
    61706
    >>> zoo.build("vgg16", (64, 64, 3), 5, fc=(256, 256)).output_shape
    (None, 5)
"""

import dataclasses
import functools
import inspect

import keras
from keras import layers

from tlkit.core.errors import TlkitError, suggest
from tlkit.models.blocks import (classifier_head, conv_bn_act, inception_block, residual_block,
                                 vgg_block)


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """Metadata of one registered model."""

    name: str
    fn: object
    input_shape: tuple
    num_classes: int
    min_size: int
    description: str


_REGISTRY = {}


@functools.lru_cache(maxsize=None)
def _param_count(name):
    """The parameter count of zoo model `name` at its default input (cached: see `table`)."""
    count = build(name).count_params()
    keras.backend.clear_session(free_memory=True)
    return count


def register(name, *, input_shape, num_classes, min_size, description):
    """Decorator that adds a builder `fn(inputs, num_classes, **options) -> outputs`."""

    def wrap(fn):
        _REGISTRY[name] = ZooEntry(name, fn, tuple(input_shape), num_classes, min_size, description)
        _param_count.cache_clear()  # table() counts the registry as it is now
        return fn

    return wrap


def names():
    """The registered model names, in registration order."""
    return list(_REGISTRY)


def entry(name):
    """The `ZooEntry` of `name`; an unknown name raises an error that lists the valid ones."""
    if name not in _REGISTRY:
        raise suggest(name, _REGISTRY, "zoo model")
    return _REGISTRY[name]


def build(name, input_shape=None, num_classes=None, **options):
    """Build zoo model `name` as a Functional `keras.Model` (not compiled).

    Args:
        name: one of `names()`.
        input_shape: (height, width, channels); defaults to the model's published input.
        num_classes: output units (1 gives one sigmoid unit); defaults to the published count.
        **options: model options (e.g. `bn="before"`, `dropout=0.3`); unknown ones are an error.

    Returns:
        A `keras.Model` named `name`.

    Example:
        >>> build("fashion_cnn", (28, 28, 1), 10).output_shape
        (None, 10)
    """
    e = entry(name)
    input_shape = tuple(input_shape or e.input_shape)
    num_classes = e.num_classes if num_classes is None else num_classes
    if len(input_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise TlkitError(f"input_shape must be (height, width, channels) with positive ints. "
                         f"Received: input_shape={input_shape!r}.")
    if min(input_shape[:2]) < e.min_size:
        raise TlkitError(f"Input {input_shape[0]}x{input_shape[1]} is too small for {name!r}: "
                         f"the minimum is {e.min_size}x{e.min_size}.")
    params = inspect.signature(e.fn).parameters
    valid = [p for p in params if params[p].kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TlkitError(f"Unknown option(s) {', '.join(unknown)} for zoo model {name!r}. "
                         f"Valid: {', '.join(valid) or 'none'}.")
    inputs = keras.Input(input_shape, name="input")
    outputs = e.fn(inputs, num_classes, **options)
    return keras.Model(inputs, outputs, name=name)


# ---------------------------------------------------------------------------------------------
# LeNet-5, the small MNIST nets


@register("lenet5", input_shape=(32, 32, 1), num_classes=10, min_size=16,
          description="LeNet-5 (LeCun 1998): 6@5x5, pool, 16@5x5, pool, FC 120-84")
def _lenet5(x, num_classes, *, activation="tanh", pooling="avg"):
    pool = layers.AveragePooling2D if pooling == "avg" else layers.MaxPooling2D
    x = layers.Conv2D(6, 5, activation=activation, name="c1")(x)
    x = pool(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation=activation, name="c3")(x)
    x = pool(2, name="s4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation=activation, name="c5")(x)
    x = layers.Dense(84, activation=activation, name="f6")(x)
    return _output(x, num_classes)


@register("simple_cnn", input_shape=(28, 28, 1), num_classes=10, min_size=16,
          description="PyTorch MNIST example: 10@5x5, pool, 20@5x5, pool, FC 50")
def _simple_cnn(x, num_classes, *, dropout=0.5, hidden=50):
    x = layers.Conv2D(10, 5, name="block1_conv")(x)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    x = layers.Activation("relu", name="block1_relu")(x)
    x = layers.Conv2D(20, 5, name="block2_conv")(x)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="block2_drop")(x)
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    x = layers.Activation("relu", name="block2_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(hidden, activation="relu", name="fc1")(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc1_drop")(x)
    return _output(x, num_classes)


@register("fashion_cnn", input_shape=(28, 28, 1), num_classes=10, min_size=8,
          description="FashionCNN: conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, FC 600-120")
def _fashion_cnn(x, num_classes, *, bn="before", dropout=0.25, block_dropout=0.0):
    x = conv_bn_act(x, 32, 3, bn=bn, name="block1")
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    if block_dropout:
        x = layers.Dropout(block_dropout, name="block1_drop")(x)
    x = conv_bn_act(x, 64, 3, padding="valid", bn=bn, name="block2")
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    if block_dropout:
        x = layers.Dropout(block_dropout, name="block2_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(600, activation="relu", name="fc1")(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc1_drop")(x)
    x = layers.Dense(120, activation="relu", name="fc2")(x)
    return _output(x, num_classes)


# ---------------------------------------------------------------------------------------------
# AlexNet


@register("alexnet", input_shape=(224, 224, 3), num_classes=1000, min_size=63,
          description="AlexNet, torchvision layout: 64/192/384/256/256, 6x6 pool, FC 4096x2")
def _alexnet(x, num_classes, *, dropout=0.5, fc=(4096, 4096)):
    x = layers.ZeroPadding2D(2, name="block1_pad")(x)
    x = layers.Conv2D(64, 11, strides=4, activation="relu", name="block1_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu", name="block2_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block2_pool")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="block3_conv")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="block4_conv")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="block5_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block5_pool")(x)
    x = _adaptive_pool(x, 6)
    return _fc_head(x, num_classes, fc, dropout, dropout_first=True)


@register("alexnet_bn", input_shape=(227, 227, 3), num_classes=1000, min_size=67,
          description="AlexNet with BN after the pools: 96@11x11 s4, 256, 384, 384, 256, FC 4096x2")
def _alexnet_bn(x, num_classes, *, dropout=0.5, fc=(4096, 4096)):
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="block1_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)
    x = layers.BatchNormalization(name="block1_bn")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", name="block2_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block2_pool")(x)
    x = layers.BatchNormalization(name="block2_bn")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="block3_conv")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="block4_conv")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="block5_conv")(x)
    x = layers.MaxPooling2D(3, strides=2, name="block5_pool")(x)
    x = layers.BatchNormalization(name="block5_bn")(x)
    return _fc_head(x, num_classes, fc, dropout, dropout_first=False)


# ---------------------------------------------------------------------------------------------
# VGG


def vgg(x, num_classes, stack, *, bn="none", block_dropout=0.0, dropout=0.5, fc=(4096, 4096)):
    """The generic VGG: one `vgg_block` per (filters, layers) in `stack`, then Flatten + FC head."""
    for i, (filters, n) in enumerate(stack, start=1):
        x = vgg_block(x, filters, n, bn=bn, dropout=block_dropout, name=f"block{i}")
    return _fc_head(x, num_classes, fc, dropout, dropout_first=False)


@register("vgg16", input_shape=(224, 224, 3), num_classes=1000, min_size=32,
          description="VGG16 from vgg_block: 64x2, 128x2, 256x3, 512x3, 512x3, FC 4096x2")
def _vgg16(x, num_classes, *, bn="none", block_dropout=0.0, dropout=0.5, fc=(4096, 4096)):
    return vgg(x, num_classes, [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], bn=bn,
               block_dropout=block_dropout, dropout=dropout, fc=fc)


@register("vgg19", input_shape=(224, 224, 3), num_classes=1000, min_size=32,
          description="VGG19 from vgg_block: 64x2, 128x2, 256x4, 512x4, 512x4, FC 4096x2")
def _vgg19(x, num_classes, *, bn="none", block_dropout=0.0, dropout=0.5, fc=(4096, 4096)):
    return vgg(x, num_classes, [(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)], bn=bn,
               block_dropout=block_dropout, dropout=dropout, fc=fc)


# ---------------------------------------------------------------------------------------------
# Small Inception and ResNet for CIFAR-sized images


@register("inception_net", input_shape=(32, 32, 3), num_classes=10, min_size=8,
          description="Small Inception: stem, 2 inception blocks, pool, 2 inception blocks, GAP")
def _inception_net(x, num_classes, *, bn="before", dropout=0.2, width=1.0):
    def w(n):
        return max(1, int(round(n * width)))

    x = conv_bn_act(x, w(64), 3, bn=bn, name="stem")
    x = inception_block(x, w(32), w(16), w(32), w(32), w(48), w(16), bn=bn, name="mixed0")
    x = inception_block(x, w(48), w(24), w(48), w(48), w(64), w(32), bn=bn, name="mixed1")
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)
    x = inception_block(x, w(64), w(32), w(64), w(64), w(96), w(32), bn=bn, name="mixed2")
    x = inception_block(x, w(96), w(48), w(96), w(96), w(128), w(64), bn=bn, name="mixed3")
    return classifier_head(x, num_classes, pooling="avg", dropout=dropout, name="head")


@register("resnet_small", input_shape=(32, 32, 3), num_classes=10, min_size=8,
          description="ResNet-20 style (He 2016, CIFAR): 3 stages x n basic blocks, 16/32/64")
def _resnet_small(x, num_classes, *, bn="before", blocks_per_stage=3, filters=(16, 32, 64),
                  dropout=0.0):
    x = conv_bn_act(x, filters[0], 3, bn=bn, name="stem")
    for s, f in enumerate(filters, start=1):
        for b in range(1, blocks_per_stage + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = residual_block(x, f, strides=strides, bn=bn, name=f"stage{s}_block{b}")
    return classifier_head(x, num_classes, pooling="avg", dropout=dropout, name="head")


# ---------------------------------------------------------------------------------------------
# helpers


def _output(x, num_classes):
    act = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Dense(num_classes, activation=act, name="predictions")(x)


def _fc_head(x, num_classes, fc, dropout, *, dropout_first):
    """Flatten + FC layers. torchvision's AlexNet puts dropout before each FC, VGG after."""
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(fc, start=1):
        if dropout and dropout_first:
            x = layers.Dropout(dropout, name=f"fc{i}_drop")(x)
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        if dropout and not dropout_first:
            x = layers.Dropout(dropout, name=f"fc{i}_drop")(x)
    return _output(x, num_classes)


def _adaptive_pool(x, size):
    """torch's AdaptiveAvgPool2d(size) from standard layers.

    Keras has no adaptive pooling layer. An input of `size` needs nothing (the published
    224x224 AlexNet); larger maps use AveragePooling2D with stride `H // size` and the window
    that gives exactly `size` outputs (identical to torch when H is a multiple of `size`, close
    otherwise); smaller maps are repeated with nearest-neighbour resizing, as torch's windows
    do (exact when H divides `size`). Area resizing would be closer, but TensorFlow has no
    gradient for it.
    """
    h, w = x.shape[1], x.shape[2]
    if (h, w) == (size, size):
        return x
    if h >= size and w >= size:
        strides = (h // size, w // size)
        pool = (h - (size - 1) * strides[0], w - (size - 1) * strides[1])
        return layers.AveragePooling2D(pool, strides=strides, name="adaptive_pool")(x)
    return layers.Resizing(size, size, interpolation="nearest", name="adaptive_pool")(x)


def table():
    """One row per model: name, default input shape, classes, parameter count, description.

    Models are built (not trained) at their default input to count parameters, once per
    process per model (VGG19 at 224x224 takes seconds).

    Example:
        >>> table()[0]["params"]
        61706
    """
    return [{"name": e.name, "input_shape": e.input_shape, "num_classes": e.num_classes,
             "params": _param_count(e.name), "description": e.description}
            for e in _REGISTRY.values()]

