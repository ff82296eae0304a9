"""Functional-API building blocks: tensor in, tensor out.

Every block names its layers from a `name` prefix (`block3_conv2`, `block3_bn2`, ...), as
keras.applications does, so freezing, Grad-CAM and weight loading can find layers by name.
BatchNormalization placement is a parameter everywhere:

- `"before"`: Conv -> BN -> activation (the conv has no bias: BN's beta replaces it);
- `"after"`:  Conv -> activation -> BN;
- `"none"`:   Conv -> activation.

Example:
    >>> import keras
    >>> from tlkit.models.blocks import vgg_block, classifier_head
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = vgg_block(inputs, 16, 2, bn="before", name="block1")
    >>> outputs = classifier_head(x, 10, pooling="avg")
    >>> keras.Model(inputs, outputs).output_shape
    (None, 10)
"""

import itertools

from keras import layers

from tlkit.core.choices import BN_PLACEMENTS, POOLINGS
from tlkit.core.errors import TlkitError, check_choice

_auto_ids = itertools.count(1)


def _prefix(name, kind):
    """A unique, readable prefix when the caller gives none (`vgg1`, `res2`, ...)."""
    return name if name else f"{kind}{next(_auto_ids)}"


def _is_tensor(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")


def conv_bn_act(x, filters, kernel_size, *, strides=1, padding="same", bn="before",
                activation="relu", name=None):
    """Conv2D with BatchNormalization placed before or after the activation, or none.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: number of convolution filters.
        kernel_size: int or (h, w).
        strides: convolution stride.
        padding: `"same"` or `"valid"`.
        bn: `"before"`, `"after"` or `"none"` (see the module docstring).
        activation: a Keras activation name, or None for no activation.
        name: prefix for the layers: `{name}_conv`, `{name}_bn`, `{name}_{activation}`.

    Returns:
        The output tensor.

    Example:
        >>> import keras
        >>> y = conv_bn_act(keras.Input((8, 8, 3)), 4, 3, strides=2, name="stem")
        >>> tuple(y.shape)
        (None, 4, 4, 4)
    """
    check_choice("bn", bn, BN_PLACEMENTS)
    name = _prefix(name, "conv")
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      use_bias=(bn != "before"), name=f"{name}_conv")(x)
    if bn == "before":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    if bn == "after":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return x


def vgg_block(x, n_filters, n_layers, *, bn="before", dropout=0.0, name=None):
    """A VGG block: `n_layers` x (Conv2D 3x3 "same" -> [BN] -> ReLU), then MaxPool 2x2 stride 2.

    Layers are named as in keras.applications' VGG16 (`block1_conv1`, ..., `block1_pool`), with
    `block1_bn1` and `block1_relu1` beside them, so VGG weights can be matched by name.

    The seeds' order `vgg_block(n_filters, n_layers, x)` is accepted too (the tensor is found
    and moved first); new code should pass the tensor first.

    Args:
        x: input tensor.
        n_filters: filters of every conv in the block.
        n_layers: number of convs (2 in the first VGG blocks, 3 or 4 later).
        bn: `"before"` (default), `"after"` or `"none"` (the published VGG has no BN).
        dropout: rate of a Dropout after the pool (`{name}_drop`); 0 adds no layer.
        name: layer prefix, e.g. `"block3"`.

    Returns:
        The pooled output tensor (height and width halved).

    Example:
        >>> import keras
        >>> y = vgg_block(keras.Input((32, 32, 3)), 64, 2, bn="before", name="block1")
        >>> tuple(y.shape)
        (None, 16, 16, 64)
    """
    if not _is_tensor(x) and _is_tensor(n_layers):
        # The seeds' call order vgg_block(n_filters, n_layers, x).
        x, n_filters, n_layers = n_layers, x, n_filters
    if not _is_tensor(x) or not isinstance(n_filters, int) or not isinstance(n_layers, int):
        raise TlkitError(
            "vgg_block expects vgg_block(x, n_filters, n_layers, *, bn='before', dropout=0.0, "
            f"name=None) with a tensor x and int counts. Received: x={type(x).__name__}, "
            f"n_filters={n_filters!r}, n_layers={n_layers!r}."
        )
    if n_layers < 1 or n_filters < 1:
        raise TlkitError(f"vgg_block needs n_filters >= 1 and n_layers >= 1. "
                         f"Received: n_filters={n_filters}, n_layers={n_layers}.")
    check_choice("bn", bn, BN_PLACEMENTS)
    name = _prefix(name, "vgg")
    for i in range(1, n_layers + 1):
        x = layers.Conv2D(n_filters, 3, padding="same", use_bias=(bn != "before"),
                          name=f"{name}_conv{i}")(x)
        if bn == "before":
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        if bn == "after":
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
    x = layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def inception_block(x, filters_1x1=64, filters_5x5_reduce=48, filters_5x5=64,
                    filters_3x3_reduce=64, filters_3x3=96, filters_pool=32, *, bn="before",
                    name=None):
    """An Inception-A module (GoogLeNet / InceptionV3 style): four branches concatenated.

    Branches: 1x1; 1x1 bottleneck -> 5x5; 1x1 bottleneck -> 3x3 -> 3x3 (the "double 3x3");
    3x3 average pool -> 1x1 projection. Defaults are InceptionV3's `mixed0` widths.

    Args:
        x: input tensor.
        filters_1x1: filters of the 1x1 branch.
        filters_5x5_reduce, filters_5x5: bottleneck and 5x5 filters.
        filters_3x3_reduce, filters_3x3: bottleneck and double-3x3 filters.
        filters_pool: filters of the pool projection.
        bn: BN placement in every conv (`"before"`, `"after"`, `"none"`).
        name: layer prefix (`{name}_1x1`, `{name}_5x5`, `{name}_3x3b`, `{name}_concat`, ...).

    Returns:
        The concatenated tensor, same height/width, channels = sum of the branch widths.

    Example:
        >>> import keras
        >>> y = inception_block(keras.Input((16, 16, 32)), 8, 4, 8, 4, 8, 8, name="mixed0")
        >>> tuple(y.shape)
        (None, 16, 16, 32)
    """
    check_choice("bn", bn, BN_PLACEMENTS)
    name = _prefix(name, "inception")
    b1 = conv_bn_act(x, filters_1x1, 1, bn=bn, name=f"{name}_1x1")
    b5 = conv_bn_act(x, filters_5x5_reduce, 1, bn=bn, name=f"{name}_5x5_reduce")
    b5 = conv_bn_act(b5, filters_5x5, 5, bn=bn, name=f"{name}_5x5")
    b3 = conv_bn_act(x, filters_3x3_reduce, 1, bn=bn, name=f"{name}_3x3_reduce")
    b3 = conv_bn_act(b3, filters_3x3, 3, bn=bn, name=f"{name}_3x3a")
    b3 = conv_bn_act(b3, filters_3x3, 3, bn=bn, name=f"{name}_3x3b")
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = conv_bn_act(bp, filters_pool, 1, bn=bn, name=f"{name}_pool_proj")
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([b1, b5, b3, bp])


def residual_block(x, filters, *, strides=1, bn="before", name=None):
    """A basic residual block (ResNet-18/34 style): two 3x3 convs plus a shortcut.

    The shortcut is the identity when shape is kept, and a 1x1 projection conv (with BN unless
    `bn="none"`) when `strides > 1` or the channel count changes.

    Args:
        x: input tensor.
        filters: filters of both convs.
        strides: stride of the first conv (2 halves height and width).
        bn: BN placement (`"before"`, `"after"`, `"none"`).
        name: layer prefix (`{name}_1_conv`, `{name}_2_conv`, `{name}_proj_conv`, `{name}_add`,
            `{name}_out`).

    Returns:
        The output tensor after the addition and the final ReLU.

    Example:
        >>> import keras
        >>> y = residual_block(keras.Input((16, 16, 8)), 16, strides=2, name="res1")
        >>> tuple(y.shape)
        (None, 8, 8, 16)
    """
    check_choice("bn", bn, BN_PLACEMENTS)
    name = _prefix(name, "res")
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn_act(x, filters, 1, strides=strides,
                               bn="none" if bn == "none" else "before", activation=None,
                               name=f"{name}_proj")
    y = conv_bn_act(x, filters, 3, strides=strides, bn=bn, name=f"{name}_1")
    y = conv_bn_act(y, filters, 3, bn=bn, activation=None if bn != "after" else "relu",
                    name=f"{name}_2")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def classifier_head(x, num_classes, *, pooling="avg", dense=(), dropout=0.0, bn="none",
                    activation="relu", output_dtype=None, name="head"):
    """Pooling, optional dense layers with dropout and BN, and the output layer.

    The output is softmax over `num_classes` units, or one sigmoid unit when `num_classes` is
    1 (binary). Layer names: `{name}_pool` (or `{name}_flatten`), `{name}_dense{i}`,
    `{name}_bn{i}`, `{name}_drop{i}`, and `predictions` for the output.

    Args:
        x: input tensor (4-D feature map, or already flat 2-D).
        num_classes: number of classes (1 for a single sigmoid unit).
        pooling: `"avg"`, `"max"` (global pooling) or `"flatten"`; ignored for 2-D input.
        dense: widths of hidden dense layers, e.g. `(4096, 4096)`.
        dropout: dropout rate before every dense layer (hidden and output); 0 adds none.
        bn: BN placement in the hidden dense layers (`"before"`, `"after"`, `"none"`).
        activation: activation of the hidden dense layers.
        output_dtype: dtype of the output layer; `"float32"` keeps the softmax in float32 under
            a mixed-precision policy (as the Keras mixed-precision guide advises).
        name: layer prefix.

    Returns:
        The probabilities tensor (batch, num_classes).

    Example:
        >>> import keras
        >>> y = classifier_head(keras.Input((4, 4, 8)), 3, dense=(16,), dropout=0.5, bn="before")
        >>> tuple(y.shape)
        (None, 3)
    """
    check_choice("pooling", pooling, POOLINGS)
    check_choice("bn", bn, BN_PLACEMENTS)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise TlkitError(f"num_classes must be a positive int. Received: num_classes={num_classes!r}.")
    if len(x.shape) == 4:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name=f"{name}_pool")(x)
        else:
            x = layers.Flatten(name=f"{name}_flatten")(x)
    for i, units in enumerate(dense, start=1):
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_drop{i}")(x)
        x = layers.Dense(units, use_bias=(bn != "before"), name=f"{name}_dense{i}")(x)
        if bn == "before":
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation(activation, name=f"{name}_{activation}{i}")(x)
        if bn == "after":
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_drop_out")(x)
    out_act = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Dense(num_classes, activation=out_act, dtype=output_dtype,
                        name="predictions")(x)


__all__ = ["conv_bn_act", "vgg_block", "inception_block", "residual_block", "classifier_head",
           "BN_PLACEMENTS", "POOLINGS"]
