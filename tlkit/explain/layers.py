"""Naming the layers to explain: the spatial (4-D) layers of a model, nested bases included.

A layer is named by its plain name (`"Conv_1"`, `"block2_pool"`), whether it sits in the
outer model or inside a nested base; where a plain name occurs more than once, it is named
by its path `"base_name/layer_name"`. Both forms are accepted everywhere a layer is asked
for.

Example:
    >>> from tlkit.models import zoo
    >>> model = zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0)
    >>> conv_layers(model)[:3], default_layers(model)
    (['block1_conv', 'block1_pool', 'block1_relu'], ['block1_conv', 'block2_conv', 'block2_relu'])
"""

from tlkit.core.errors import TlkitError

PADDING_LAYERS = ("ZeroPadding2D", "Cropping2D")


def walk(model, prefix=()):
    """Yield `(path, layer)` for every non-container layer, descending into nested models.

    `path` is the tuple of names from `model` down to the layer.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from walk(layer, prefix + (layer.name,))
        else:
            yield prefix + (layer.name,), layer


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def is_preprocessing(layer):
    """True for input layers and Keras preprocessing layers (Rescaling, Resizing, ...)."""
    import keras

    return (isinstance(layer, keras.layers.InputLayer)
            or ".preprocessing." in type(layer).__module__)


def spatial_layers(model):
    """[(display name, path, layer, output shape)] of the usable 4-D layers, in order."""
    found = []
    for path, layer in walk(model):
        shape = _output_shape(layer)
        if shape is None or len(shape) != 4 or is_preprocessing(layer):
            continue
        found.append((path, layer, shape))
    counts = {}
    for path, _ in walk(model):
        counts[path[-1]] = counts.get(path[-1], 0) + 1
    return [(path[-1] if counts[path[-1]] == 1 else "/".join(path), path, layer, shape)
            for path, layer, shape in found]


def conv_layers(model):
    """The layers whose output is a spatial feature map (4-D), from input to output.

    Layers inside a nested base model are listed too. Input and preprocessing layers
    (Rescaling, Normalization, Resizing, augmentation) are left out; container models are
    replaced by their inner layers. A name is the plain layer name, or `"base/layer"` when that
    plain name occurs more than once in the model.

    Args:
        model: a `keras.Model` (flat, or with nested models).

    Returns:
        A list of layer names, usable as `layer=` / `layers=` everywhere in `tlkit.explain`.

    Example:
        >>> from tlkit.models import zoo
        >>> conv_layers(zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0))
        ['block1_conv', 'block1_pool', 'block1_relu', 'block2_conv', 'block2_pool', 'block2_relu']
    """
    return [name for name, _, _, _ in spatial_layers(model)]


def default_layers(model):
    """The last layer of each stage: one feature-map layer per resolution step.

    A stage is the group of spatial layers (see `conv_layers`) between two downsampling
    points. A layer starts a new stage when its height or width is at most 0.6 of the previous
    layer's (a pool or a stride-2 conv halves it; a "valid" conv trimming a border does not
    count). Padding and cropping layers are skipped.

    Args:
        model: a `keras.Model`.

    Returns:
        A list of layer names, shallow to deep.

    Example:
        >>> from tlkit.models import zoo
        >>> default_layers(zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0))
        ['block1_conv', 'block2_conv', 'block2_relu']
    """
    stages, prev = [], None
    for name, _, layer, shape in spatial_layers(model):
        if type(layer).__name__ in PADDING_LAYERS:
            continue
        size = shape[1:3]
        if prev is None or any(s is not None and p and s <= 0.6 * p for s, p in zip(size, prev)):
            stages.append(name)
        else:
            stages[-1] = name
        prev = size
    return stages


def resolve(model, layer):
    """The path tuple of the usable spatial layer called `layer` (a plain name or "a/b").

    Raises:
        TlkitError: naming the usable layers, when `layer` is ambiguous, does not exist or
            has no spatial output.
    """
    table = spatial_layers(model)
    usable = [name for name, _, _, _ in table]
    for name, path, _, _ in table:
        if layer == name or (isinstance(layer, str) and tuple(layer.split("/")) == path):
            return path
    matches = [name for name, path, _, _ in table if path[-1] == layer]
    if matches:
        raise TlkitError(f"Layer name {layer!r} is ambiguous in model {model.name!r}; "
                         f"use one of: {', '.join(matches)}.")
    exists = any(path[-1] == layer or "/".join(path) == layer for path, _ in walk(model))
    why = "has no spatial (4-D) output" if exists else "does not exist"
    raise TlkitError(f"Layer {layer!r} {why} in model {model.name!r}. "
                     f"Usable conv layers: {', '.join(usable) or 'none'}.")


def display_name(model, path):
    """The name `conv_layers` gives the layer at `path`: plain, or "a/b" when ambiguous.

    Example:
        >>> from tlkit.models import zoo
        >>> display_name(zoo.build("fashion_cnn", (28, 28, 1), 10), ("block2_relu",))
        'block2_relu'
    """
    for name, p, _, _ in spatial_layers(model):
        if p == tuple(path):
            return name
    return "/".join(path)


def last_layer(model):
    """Path of Grad-CAM's default layer: the last spatial layer at the last conv's resolution.

    That is the last convolution's output after its BN / activation / residual add, before any
    pooling (`out_relu` in MobileNetV2, `block2_relu` in fashion_cnn).

    Example:
        >>> from tlkit.models import zoo
        >>> last_layer(zoo.build("fashion_cnn", (28, 28, 1), 10))
        ('block2_relu',)
    """
    table = [t for t in spatial_layers(model) if type(t[2]).__name__ not in PADDING_LAYERS]
    if not table:
        raise TlkitError(f"Model {model.name!r} has no layer with a spatial (4-D) output: "
                         "Grad-CAM and feature maps need a convolutional model.")
    convs = [i for i, t in enumerate(table) if hasattr(t[2], "kernel")]
    i = convs[-1] if convs else len(table) - 1
    while i + 1 < len(table) and table[i + 1][3][1:3] == table[i][3][1:3]:
        i += 1
    return table[i][1]
