"""Tapping layers: one model from the outer input to `[taps..., predictions]`.

How a tap reaches inside a nested base: `keras.Model(model.inputs,
[model.get_layer(inner).output, model.output])` fails ("graph disconnected"), because the inner
tensor belongs to the base's own graph, not to the classifier's. Instead the classifier's graph
is rebuilt on new inputs with `keras.models.clone_model(model, clone_function=identity,
call_function=...)`: the same layers (shared weights, nothing copied), called in the same
order with the same arguments, except that the nested base is replaced by a split of itself,
`keras.Model(base.inputs, [base.get_layer(inner).output, base.output])` (recursively for
deeper nesting), whose first output is kept as a "tap". The result is one model from the
outer input to `[taps..., predictions]`, for flat and nested models alike.

Example:
    >>> import numpy as np
    >>> from tlkit.models import zoo
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> maps = feature_maps(model, np.full((28, 28, 1), 128.0), ["block1_relu"])
    >>> maps["block1_relu"].shape
    (28, 28, 32)
"""

import numpy as np

from tlkit.core.errors import TlkitError
from tlkit.explain.layers import default_layers, resolve


def tap_model(model, paths, output_layer=None):
    """A model sharing `model`'s layers: inputs -> [tap for each path..., model output(s)].

    Args:
        model: a `keras.Model`.
        paths: tuples of layer names from `model` down to each tapped layer.
        output_layer: a layer of `model` whose call input is tapped too and put last (the
            features the final Dense turns into logits), or None.

    Returns:
        A `keras.Model`.
    """
    import keras

    direct = {p[0] for p in paths if len(p) == 1}
    nested = {}
    for p in paths:
        if len(p) > 1:
            nested.setdefault(p[0], []).append(p[1:])
    subs = {name: (tap_model(model.get_layer(name), sub), sub) for name, sub in nested.items()}
    captured = {}

    def call_function(layer, *args, **kwargs):
        if layer is output_layer:
            captured.setdefault("pre", args[0])
        if layer.name in subs:
            split, sub_paths = subs[layer.name]
            outs = split(*args, **kwargs)
            for sp, t in zip(sub_paths, outs):
                captured.setdefault((layer.name,) + sp, t)
            out = outs[len(sub_paths)]
        else:
            out = layer(*args, **kwargs)
        if layer.name in direct:
            captured.setdefault((layer.name,), out)
        return out

    inputs = [keras.Input(batch_shape=x.shape, dtype=x.dtype) for x in model.inputs]
    if isinstance(model, keras.Sequential):
        x = inputs[0]
        for layer in model.layers:
            x = call_function(layer, x)
        outputs = x
    else:
        inputs_struct = inputs if isinstance(model.input, (list, tuple)) else inputs[0]
        outputs = keras.models.clone_model(model, input_tensors=inputs_struct,
                                           clone_function=lambda layer: layer,
                                           call_function=call_function).outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    extra = [captured["pre"]] if output_layer is not None and "pre" in captured else []
    taps = [captured[tuple(p)] for p in paths]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], taps + outputs + extra)


def as_batch(image, model):
    """(1, H, W, C) float32 from an (H, W, C) or (1, H, W, C) raw-pixel image.

    Raises:
        TlkitError: when the image does not have the model's input shape.
    """
    x = np.asarray(image, dtype="float32")
    if x.ndim == 3:
        x = x[None]
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or x.shape[0] != 1 or any(
            e is not None and e != g for e, g in zip(expected, x.shape[1:])):
        raise TlkitError(f"Expected one image of shape {expected} (raw pixels 0..255). "
                         f"Received: image.shape={np.shape(image)}.")
    return x


class FeatureMaps:
    """The activations of some layers, with the tap model built once for many images."""

    def __init__(self, model, layers=None):
        if layers is None:
            layers = default_layers(model)
        self.model = model
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.tapped = tap_model(model, [resolve(model, name) for name in self.layers])

    def __call__(self, image):
        outs = self.tapped(as_batch(image, self.model), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {name: np.asarray(out[0], dtype="float32") for name, out in zip(self.layers, outs)}


def feature_maps(model, image, layers=None):
    """The activations of some spatial layers for one image.

    Args:
        model: a `keras.Model` taking raw pixels.
        image: one image, (height, width, channels), raw pixels 0..255.
        layers: layer names (see `conv_layers`); default `default_layers(model)`.

    Returns:
        A dict {layer name: float32 array (h, w, channels)} in the order of `layers`.

    Example:
        >>> import numpy as np
        >>> from tlkit.models import zoo
        >>> model = zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0)
        >>> {k: v.shape for k, v in feature_maps(model, np.zeros((28, 28, 1))).items()}
        {'block1_conv': (24, 24, 10), 'block2_conv': (8, 8, 20), 'block2_relu': (4, 4, 20)}
    """
    return FeatureMaps(model, layers)(image)
