"""The frozen part of a model: where to cut it so that its output can be computed once.

While a base is frozen (BatchNormalization in inference mode) its output does not change,
so tlkit computes it once (the feature cache) and trains only what sits above: the head on
the pooled base output (`feature_extractor`, `head_model`), or the upper stages on the output
of the frozen stages below them (`frozen_prefix_split`). Every piece shares the model's own
layers, so what trains on the cut trains the model.
"""

import keras

from tlkit.training import feature_cache

CACHE_CUT_LAYERS = ("head_pool", "head_flatten")


def feature_cut(model):
    """The head layer whose input is the cacheable base output (`head_pool`/`head_flatten`)."""
    for name in CACHE_CUT_LAYERS:
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    return None


def head_model(model):
    """A model from the cached features to the predictions, sharing the head's layers."""
    cut = feature_cut(model)
    layers = model.layers[model.layers.index(cut) + 1:]
    inputs = keras.Input(tuple(cut.output.shape[1:]), name="features")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def _nested_base(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    return None


def frozen_prefix_split(model):
    """Split `model` where its frozen lower part ends, for caching that part's output.

    Returns `(extractor, trainer)` sharing `model`'s layers, or None when there is no such cut:
    `extractor` maps images to the input of the lowest base layer that has trainable weights
    (everything below it is frozen, BatchNormalization in inference mode); `trainer` maps that
    tensor to the predictions, so `trainer(extractor(x)) == model(x)`. The cut must be a single
    tensor that everything above depends on (a stage boundary of a ResNet is; a point inside a
    residual block is not, and Keras refuses the graph); otherwise None.
    """
    base = _nested_base(model)
    if base is None or isinstance(base, keras.Sequential):
        return None
    first = next((layer for layer in base.layers if layer.trainable_weights), None)
    if first is None or first.name == base.layers[0].name:
        return None
    cut = first.input
    if isinstance(cut, (list, tuple, dict)):
        return None
    try:
        prefix = keras.Model(base.inputs, cut, name="frozen_prefix")
        suffix = keras.Model(cut, base.output, name=f"{base.name}_trainable")
    except ValueError:  # the layers above the cut also read something below it
        return None
    if prefix.trainable_weights or len(prefix.layers) <= 2:
        return None  # nothing frozen worth caching (the input and preprocessing only)
    inputs = keras.Input(tuple(cut.shape[1:]), name="frozen_features")
    x = suffix(inputs, training=False)
    for layer in model.layers[model.layers.index(base) + 1:]:
        x = layer(x)
    return prefix, keras.Model(inputs, x, name="trainer")


def feature_extractor(model):
    """The frozen part of `model`: image -> pooled base output (the cache's content)."""
    return keras.Model(model.inputs, feature_cut(model).output, name="feature_extractor")


def extract_features(model, x, *, labels=None, batch_size=32, augment=None, passes=1, seed=0,
                     verbose=1, autotune=None):
    """Run the frozen part of `model` (input -> pooled base output) over images `x`.

    Returns an array of shape (passes * N, features); pass 0 is un-augmented, later passes use
    `augment`. With `labels`, returns `(features, labels of the rows)`: image files that fail
    to decode have no row.
    """
    return feature_cache.compute(feature_extractor(model), x, labels=labels,
                                 batch_size=batch_size, augment=augment, passes=passes,
                                 seed=seed, verbose=verbose, autotune=autotune)
