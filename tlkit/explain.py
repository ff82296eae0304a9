"""What a model looks at: feature maps, Grad-CAM and first-layer filters.

The computing functions return numpy arrays and write nothing; the `save_*` functions turn
those arrays into PNG files; `explain_path` is the one call behind `tlkit explain`: it loads a
saved model and images, computes, and writes PNGs whose names say what they show.

Every tlkit model takes raw pixels (0..255, float, (height, width, channels)); images passed
here are raw pixels too, never preprocessed.

Layer names. `conv_layers(model)` lists the layers with a spatial (4-D) output, looking inside
a nested base model (a transfer model is `Input -> base model -> pooling -> head`). A layer is
named by its plain name (`"Conv_1"`, `"block2_pool"`), whether it sits in the outer model or
inside the nested base; where a plain name occurs more than once, it is named by its path
`"base_name/layer_name"`. Both forms are accepted everywhere a layer is asked for.

How Grad-CAM reaches inside a nested base: `keras.Model(model.inputs,
[model.get_layer(inner).output, model.output])` fails ("graph disconnected"), because the inner
tensor belongs to the base's own graph, not to the classifier's. Instead tlkit rebuilds the
classifier's graph on new inputs with `keras.models.clone_model(model, clone_function=identity,
call_function=...)`: the same layers (shared weights, nothing copied), called in the same
order with the same arguments, except that the nested base is replaced by a split of itself,
`keras.Model(base.inputs, [base.get_layer(inner).output, base.output])` (recursively for
deeper nesting), whose first output is kept as a "tap". The result is one model from the
outer input to `[taps..., predictions]`, for flat and nested models alike.

Example:
    >>> import numpy as np
    >>> from tlkit import zoo
    >>> from tlkit.explain import conv_layers, gradcam
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> conv_layers(model)[:3]
    ['block1_conv', 'block1_bn', 'block1_relu']
    >>> heatmap, class_index, probs = gradcam(model, np.zeros((28, 28, 1)) + 128)
    >>> heatmap.shape, probs.shape   # at block2_relu, fashion_cnn's last conv output
    ((12, 12), (10,))
"""

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from tlkit import data as data_lib
from tlkit.errors import TlkitError, check_choice, suggest

METHODS = ("gradcam", "feature-maps", "filters")
IMAGE_SUFFIXES = data_lib.IMAGE_EXTENSIONS
MAX_CHANNELS = 64

_PADDING_LAYERS = ("ZeroPadding2D", "Cropping2D")


# ---------------------------------------------------------------------------------------------
# layers


def _walk(model, prefix=()):
    """Yield (path, layer) for every non-container layer, descending into nested models."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer, prefix + (layer.name,))
        else:
            yield prefix + (layer.name,), layer


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def _is_preprocessing(layer):
    import keras

    return (isinstance(layer, keras.layers.InputLayer)
            or ".preprocessing." in type(layer).__module__)


def _spatial_layers(model):
    """[(display name, path, output shape)] of the usable layers with a 4-D output, in order."""
    found = []
    for path, layer in _walk(model):
        shape = _output_shape(layer)
        if shape is None or len(shape) != 4 or _is_preprocessing(layer):
            continue
        found.append((path, layer, shape))
    counts = {}
    for path, _ in _walk(model):
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
        A list of layer names, usable as `layer=` / `layers=` everywhere in this module.

    Example:
        >>> from tlkit import zoo
        >>> conv_layers(zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0))
        ['block1_conv', 'block1_pool', 'block1_relu', 'block2_conv', 'block2_pool', 'block2_relu']
    """
    return [name for name, _, _, _ in _spatial_layers(model)]


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
        >>> from tlkit import zoo
        >>> default_layers(zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0))
        ['block1_conv', 'block2_conv', 'block2_relu']
    """
    stages, prev = [], None
    for name, _, layer, shape in _spatial_layers(model):
        if type(layer).__name__ in _PADDING_LAYERS:
            continue
        size = shape[1:3]
        if prev is None or any(s is not None and p and s <= 0.6 * p for s, p in zip(size, prev)):
            stages.append(name)
        else:
            stages[-1] = name
        prev = size
    return stages


def _resolve(model, layer):
    """Path tuple of the usable spatial layer called `layer` (a plain name or "a/b" path)."""
    table = _spatial_layers(model)
    usable = [name for name, _, _, _ in table]
    for name, path, _, _ in table:
        if layer == name or (isinstance(layer, str) and tuple(layer.split("/")) == path):
            return path
    matches = [name for name, path, _, _ in table if path[-1] == layer]
    if matches:
        raise TlkitError(f"Layer name {layer!r} is ambiguous in model {model.name!r}; "
                         f"use one of: {', '.join(matches)}.")
    exists = any(path[-1] == layer or "/".join(path) == layer for path, _ in _walk(model))
    why = "has no spatial (4-D) output" if exists else "does not exist"
    raise TlkitError(f"Layer {layer!r} {why} in model {model.name!r}. "
                     f"Usable conv layers: {', '.join(usable) or 'none'}.")


def _last_layer(model):
    """Path of Grad-CAM's default layer: the last spatial layer at the last conv's resolution.

    That is the last convolution's output after its BN / activation / residual add, before any
    pooling (`out_relu` in MobileNetV2, `block2_relu` in fashion_cnn).
    """
    table = [t for t in _spatial_layers(model) if type(t[2]).__name__ not in _PADDING_LAYERS]
    if not table:
        raise TlkitError(f"Model {model.name!r} has no layer with a spatial (4-D) output: "
                         "Grad-CAM and feature maps need a convolutional model.")
    convs = [i for i, t in enumerate(table) if hasattr(t[2], "kernel")]
    i = convs[-1] if convs else len(table) - 1
    while i + 1 < len(table) and table[i + 1][3][1:3] == table[i][3][1:3]:
        i += 1
    return table[i][1]


# ---------------------------------------------------------------------------------------------
# tapping layers: one model from the outer input to [taps..., predictions]


def _tap_model(model, paths, output_layer=None):
    """A model sharing `model`'s layers: inputs -> [tap for each path..., model output(s)].

    `paths` are tuples of layer names from `model` down to the tapped layer. If
    `output_layer` is given (a layer of `model`), the input of its call is tapped too and put
    last (the features the final Dense turns into logits).
    """
    import keras

    direct = {p[0] for p in paths if len(p) == 1}
    nested = {}
    for p in paths:
        if len(p) > 1:
            nested.setdefault(p[0], []).append(p[1:])
    subs = {name: (_tap_model(model.get_layer(name), sub), sub) for name, sub in nested.items()}
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


def _as_batch(image, model):
    """(1, H, W, C) float32 from an (H, W, C) or (1, H, W, C) raw-pixel image."""
    x = np.asarray(image, dtype="float32")
    if x.ndim == 3:
        x = x[None]
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or x.shape[0] != 1 or any(
            e is not None and e != g for e, g in zip(expected, x.shape[1:])):
        raise TlkitError(f"Expected one image of shape {expected} (raw pixels 0..255). "
                         f"Received: image.shape={np.shape(image)}.")
    return x


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
        >>> from tlkit import zoo
        >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
        >>> maps = feature_maps(model, np.full((28, 28, 1), 128.0), ["block1_relu"])
        >>> maps["block1_relu"].shape
        (28, 28, 32)
    """
    if layers is None:
        layers = default_layers(model)
    layers = [layers] if isinstance(layers, str) else list(layers)
    paths = [_resolve(model, name) for name in layers]
    x = _as_batch(image, model)
    outs = _tap_model(model, paths)(x, training=False)
    return {name: np.asarray(out[0], dtype="float32") for name, out in zip(layers, outs)}


# ---------------------------------------------------------------------------------------------
# Grad-CAM


class _GradCam:
    """Grad-CAM for one model and layer, built once and reused for many images."""

    def __init__(self, model, layer=None):
        import keras

        self.model = model
        self.path = _last_layer(model) if layer is None else _resolve(model, layer)
        self.layer = "/".join(self.path)
        out = model.layers[-1] if model.layers else None
        act = getattr(getattr(out, "activation", None), "__name__", "")
        # Grad-CAM uses the class score before softmax (Selvaraju et al. 2017): tap the input
        # of a final Dense(softmax|sigmoid) and compute its logits under the tape.
        self.dense = out if isinstance(out, keras.layers.Dense) and act in (
            "softmax", "sigmoid") and getattr(out, "quantization_mode", None) is None else None
        self.tapped = _tap_model(model, [self.path], output_layer=self.dense)
        self.num_outputs = int(model.outputs[0].shape[-1])

    def __call__(self, image, class_index=None):
        import tensorflow as tf

        x = tf.convert_to_tensor(_as_batch(image, self.model))
        with tf.GradientTape() as tape:
            outs = self.tapped(x, training=False)
            feats, preds = outs[0], outs[1]
            if self.dense is not None:
                logits = tf.matmul(outs[-1], tf.convert_to_tensor(self.dense.kernel))
                if self.dense.use_bias:
                    logits = logits + tf.convert_to_tensor(self.dense.bias)
            else:
                logits = preds
            if self.num_outputs == 1:  # one sigmoid unit: class 1 is the unit, class 0 is 1 - it
                p = float(preds[0, 0])
                probs = np.array([1.0 - p, p], dtype="float32")
                logits = tf.concat([-logits, logits], axis=-1)
            else:
                probs = np.asarray(preds[0], dtype="float32")
            if class_index is None:
                class_index = int(np.argmax(probs))
            class_index = _check_index(class_index, len(probs))
            score = logits[:, class_index]
        grads = tape.gradient(score, feats)
        if grads is None:
            raise TlkitError(f"The prediction does not depend on layer {self.layer!r}; "
                             "choose a layer before the classifier head.")
        feats, grads = np.asarray(feats[0]), np.asarray(grads[0])
        weights = grads.mean(axis=(0, 1))
        cam = np.maximum((feats * weights).sum(axis=-1), 0.0)
        peak = cam.max()
        cam = cam / peak if peak > 0 else np.zeros_like(cam)
        return cam.astype("float32"), class_index, probs


def _check_index(class_index, n):
    try:
        i = int(class_index)
    except (TypeError, ValueError):
        i = None
    if i is None or i != class_index or not 0 <= i < n:
        raise TlkitError(f"class_index must be an int in 0..{n - 1}. "
                         f"Received: class_index={class_index!r}.")
    return i


def gradcam(model, image, class_index=None, layer=None):
    """Grad-CAM heatmap: where in `image` the evidence for a class lies, at `layer`'s resolution.

    The class score is the logit (before softmax) when the model ends in a Dense softmax or
    sigmoid layer, else the model output. Works on flat models and on transfer models whose
    conv base is a nested model (see the module docstring).

    Args:
        model: a `keras.Model` taking raw pixels (TensorFlow backend).
        image: one image, (height, width, channels), raw pixels 0..255.
        class_index: class to explain; default the predicted class. For a model with one
            sigmoid unit, class 1 is the unit and class 0 its complement.
        layer: a name from `conv_layers(model)`; default the last convolution's output (after
            its BN / activation, before pooling), e.g. `out_relu` in MobileNetV2.

    Returns:
        (heatmap, class_index, probs): heatmap is float32 (h, w) in [0, 1] at the layer's
        resolution (all zeros when no positive evidence); probs is the model's output (1-D).

    Example:
        >>> import numpy as np
        >>> from tlkit import zoo
        >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
        >>> heatmap, k, probs = gradcam(model, np.full((28, 28, 1), 128.0), 3, "block1_relu")
        >>> heatmap.shape, k
        ((28, 28), 3)
    """
    return _GradCam(model, layer)(image, class_index)


# ---------------------------------------------------------------------------------------------
# first-layer filters


def first_layer_filters(model):
    """The kernel of the model's first weighted layer, which must be a Conv2D.

    Preprocessing layers (Rescaling, Normalization, ...) before it are skipped; nested base
    models are searched.

    Args:
        model: a `keras.Model`.

    Returns:
        float32 array (kernel_height, kernel_width, in_channels, filters), Keras' layout.

    Raises:
        TlkitError: when the first weighted layer is not a Conv2D.

    Example:
        >>> from tlkit import zoo
        >>> first_layer_filters(zoo.build("simple_cnn", (28, 28, 1), 10)).shape
        (5, 5, 1, 10)
    """
    import keras

    for path, layer in _walk(model):
        if _is_preprocessing(layer) or not layer.weights:
            continue
        if type(layer) is keras.layers.Conv2D:
            return np.asarray(layer.kernel, dtype="float32")
        raise TlkitError(f"The first weighted layer of model {model.name!r} is "
                         f"{'/'.join(path)!r} ({type(layer).__name__}), not a Conv2D: "
                         "there are no first-layer filters to show.")
    raise TlkitError(f"Model {model.name!r} has no weighted layer.")


# ---------------------------------------------------------------------------------------------
# pictures


def _grid_shape(n):
    """(rows, cols) of a near-square grid for n tiles: cols = ceil(sqrt(n))."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def _normalize(a):
    a = np.asarray(a, dtype="float64")
    lo, hi = np.nanmin(a), np.nanmax(a)
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _tile_grid(tiles, gap=1):
    """Stack equally sized tiles (n, h, w[, 3]) in a near-square grid; gaps are black."""
    n, h, w = tiles.shape[:3]
    rows, cols = _grid_shape(n)
    shape = (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap) + tiles.shape[3:]
    grid = np.zeros(shape, dtype=tiles.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return grid


def _scale_for(size, min_tile=32):
    """Integer upscaling factor so that a tile is at least `min_tile` pixels wide."""
    return max(1, math.ceil(min_tile / max(1, size)))


def feature_grid(fmap, max_channels=MAX_CHANNELS, min_tile=32, gap=1):
    """The picture `save_feature_maps` writes for one (h, w, channels) map, as uint8 RGB.

    The first `min(channels, max_channels)` channels become tiles, each min-max normalized on
    its own and coloured with viridis (dark: low, yellow: high; a constant channel is dark).
    A tile is the map upscaled by the integer `s = ceil(min_tile / max(h, w))` (nearest
    neighbour). Tiles fill a grid row by row with `cols = ceil(sqrt(n))`, `rows = ceil(n /
    cols)`, separated by `gap` black pixels: the picture is `rows*h*s + (rows-1)*gap` high and
    `cols*w*s + (cols-1)*gap` wide.

    Args:
        fmap: array (h, w, channels).
        max_channels: most channels shown.
        min_tile: smallest tile side in pixels.
        gap: pixels between tiles.

    Returns:
        uint8 array (height, width, 3).

    Example:
        >>> import numpy as np
        >>> feature_grid(np.random.rand(7, 7, 10)).shape   # 10 tiles: 3 x 4, 35-pixel tiles
        (107, 143, 3)
    """
    from matplotlib import colormaps

    fmap = np.asarray(fmap)
    if fmap.ndim != 3:
        raise TlkitError(f"A feature map must be (height, width, channels). "
                         f"Received: shape={fmap.shape}.")
    h, w, c = fmap.shape
    s = _scale_for(max(h, w), min_tile)
    n = min(c, max_channels)
    tiles = np.stack([_normalize(fmap[:, :, i]) for i in range(n)])
    tiles = tiles.repeat(s, axis=1).repeat(s, axis=2)
    rgb = (colormaps["viridis"](tiles)[..., :3] * 255).round().astype("uint8")
    return _tile_grid(rgb, gap)


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text).replace("/", "-")).strip("_") or "x"


def _writable_dir(out_dir):
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TlkitError(f"Cannot create output directory {str(out_dir)!r}: "
                         f"{e.strerror or e}.") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise TlkitError(f"Output directory {str(out_dir)!r} is not writable.")
    return out_dir


def _write_png(array, path):
    """Write a uint8 (h, w[, 3]) array as PNG atomically: temp file beside it, then rename."""
    from PIL import Image

    path = Path(path)
    _writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return str(path)


def save_feature_maps(maps, out_dir, prefix):
    """Write one PNG grid per layer: `<out_dir>/<prefix>_<layer>_maps.png`.

    The grid is `feature_grid(map)`: at most 64 channels, each a min-max normalized viridis
    tile, `cols = ceil(sqrt(n))` columns, filled row by row (tile i is channel i). A "/" in a
    layer path becomes "-" in the file name.

    Args:
        maps: {layer name: (h, w, channels) array}, as `feature_maps` returns.
        out_dir: folder, created if missing.
        prefix: start of every file name (e.g. the image's stem).

    Returns:
        The written paths, in the order of `maps`.
    """
    out_dir = _writable_dir(out_dir)
    return [_write_png(feature_grid(fmap), out_dir / f"{_safe_name(prefix)}_{_safe_name(name)}"
                                                     f"_maps.png")
            for name, fmap in maps.items()]


def gradcam_overlay(image, heatmap, alpha=0.4):
    """The picture `save_gradcam` writes, as a uint8 RGB array at the image's size.

    The heatmap is resized to the image (bilinear), coloured with the "jet" colormap (blue:
    no evidence, red: most) and blended: `(1 - alpha) * image + alpha * colour`. A grayscale
    image is shown in gray.

    Args:
        image: (height, width, channels) raw pixels 0..255 (1 or 3 channels).
        heatmap: (h, w) values in [0, 1], as `gradcam` returns.
        alpha: weight of the heatmap colour.

    Returns:
        uint8 array (height, width, 3).
    """
    from matplotlib import colormaps
    from PIL import Image

    image = np.asarray(image, dtype="float32")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise TlkitError(f"Expected an image (height, width, 1 or 3). "
                         f"Received: image.shape={image.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise TlkitError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}.")
    h, w = image.shape[:2]
    rgb = np.clip(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image, 0, 255)
    heat = Image.fromarray(np.asarray(heatmap, dtype="float32"), mode="F")
    heat = np.clip(np.asarray(heat.resize((w, h), Image.BILINEAR)), 0.0, 1.0)
    colour = colormaps["jet"](heat)[..., :3] * 255.0
    return ((1.0 - alpha) * rgb + alpha * colour).round().clip(0, 255).astype("uint8")


def save_gradcam(image, heatmap, path, alpha=0.4):
    """Write the Grad-CAM overlay (see `gradcam_overlay`) as a PNG at the image's size.

    Args:
        image: (height, width, channels) raw pixels 0..255.
        heatmap: (h, w) in [0, 1].
        path: the PNG to write (atomically).
        alpha: weight of the heatmap colour.

    Returns:
        `path` as a string.
    """
    return _write_png(gradcam_overlay(image, heatmap, alpha), path)


def filter_grid(filters, max_filters=MAX_CHANNELS, min_tile=32, gap=1):
    """The picture `save_filter_grid` writes, as uint8 RGB.

    One tile per filter (at most `max_filters`), in the grid of `feature_grid`. All filters
    share one min-max normalization, so their contrast can be compared. A 3-channel filter is
    shown in colour (RGB weights); otherwise the mean over input channels in gray.

    Args:
        filters: (kh, kw, in_channels, n), as `first_layer_filters` returns.

    Returns:
        uint8 array (height, width, 3).
    """
    filters = np.asarray(filters, dtype="float32")
    if filters.ndim != 4:
        raise TlkitError(f"Filters must be (kh, kw, in_channels, n). "
                         f"Received: shape={filters.shape}.")
    kh, kw, cin, n = filters.shape
    f = np.moveaxis(filters[..., :max_filters], -1, 0)  # (n, kh, kw, cin)
    f = f if cin == 3 else np.repeat(f.mean(axis=-1, keepdims=True), 3, axis=-1)
    f = _normalize(f)
    s = _scale_for(max(kh, kw), min_tile)
    tiles = (f.repeat(s, axis=1).repeat(s, axis=2) * 255).round().astype("uint8")
    return _tile_grid(tiles, gap)


def save_filter_grid(filters, path):
    """Write the first-layer filters (see `filter_grid`) as one PNG.

    Args:
        filters: (kh, kw, in_channels, n), as `first_layer_filters` returns.
        path: the PNG to write (atomically).

    Returns:
        `path` as a string.
    """
    return _write_png(filter_grid(filters), path)


# ---------------------------------------------------------------------------------------------
# files


def read_class_names(path):
    """Class names from a tlkit `.h5` file's metadata, or None when it has none.

    tlkit stores a JSON string in the HDF5 root attribute `tlkit_metadata`; its
    `"class_names"` is the list of names in output order.

    Args:
        path: a model file (any format; only `.h5` files carry tlkit metadata).

    Returns:
        A list of str, or None.
    """
    try:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("tlkit_metadata")
    except (OSError, ValueError):
        return None
    if raw is None:
        return None
    try:
        names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)).get(
            "class_names")
    except (ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def image_files(inputs):
    """The image files named by `inputs`: a file, a folder (its images, sorted, subfolders
    included, hidden files skipped), or a list.

    Args:
        inputs: a path or a list of paths.

    Returns:
        A list of `Path`.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*")
                           if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                           and not q.name.startswith("."))
            if not found:
                raise TlkitError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in folder "
                                 f"{str(p)!r}.")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise TlkitError(f"Image path {str(p)!r} does not exist.")
    if not files:
        raise TlkitError("No images given.")
    return files


def load_image(path, input_shape):
    """Read an image file as raw pixels at the model's input size.

    Decoded as tlkit's data pipeline does (`tlkit.data.decode.read_image`: EXIF orientation,
    any mode converted to grayscale or RGB, resized to (height, width)); values stay 0..255.

    Args:
        path: image file (anything Pillow reads).
        input_shape: (height, width, channels) with channels 1 or 3.

    Returns:
        float32 array (height, width, channels).
    """
    from tlkit.data import decode

    h, w, c = (int(d) for d in input_shape)
    if c not in (1, 3):
        raise TlkitError(f"Only 1- or 3-channel models can read image files. "
                         f"Received: input_shape={tuple(input_shape)}.")
    x = decode.read_image(str(path), image_size=(h, w), channels=c)
    return x.astype("float32").reshape(h, w, c)


def _class_index(class_name, class_names, n):
    """The output index named by `class_name`: a metadata name, or an int / digit string."""
    if class_name is None:
        return None
    if class_names and str(class_name) in class_names:
        return class_names.index(str(class_name))
    if isinstance(class_name, (int, np.integer)) or str(class_name).lstrip("-").isdigit():
        return _check_index(int(class_name), n)
    if class_names:
        raise suggest(class_name, class_names, "class name")
    raise TlkitError(f"Unknown class name {class_name!r}: the model has no class names in its "
                     f"metadata; give an index in 0..{n - 1}.")


def _load_model(model_path):
    import keras

    if not Path(model_path).exists():
        raise TlkitError(f"Model file {str(model_path)!r} does not exist.")
    try:
        return keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TlkitError(f"Cannot load model {str(model_path)!r}: {msg}") from None


def explain_path(model_path, inputs=None, method="gradcam", layer=None, class_name=None,
                 out_dir=None, alpha=0.4):
    """Load a saved model and write explanation PNGs for images; the library side of
    `tlkit explain`.

    Everything is checked before anything is written: the method, the output folder, the
    model, every image, the layer and the class. Each PNG is written to a temp file beside it
    and renamed, so no half-written file is left behind.

    Files written (names sanitized: "/" in a layer path becomes "-"):
        - `gradcam`: `<image-stem>_gradcam_<class>.png` per image, the overlay at the image's
          input size; `<class>` is the class name from the metadata, else the index.
        - `feature-maps`: `<image-stem>_<layer>_maps.png` per image and layer (`layer`, else
          `default_layers(model)`).
        - `filters`: `<model-stem>_filters.png` (images are not needed).

    Args:
        model_path: a saved model (`.h5` with tlkit metadata, `.h5`, or `.keras`).
        inputs: an image file, a folder of images, or a list of them (not used by `filters`).
        method: one of `METHODS`.
        layer: a name from `conv_layers(model)`; default: the last conv output (Grad-CAM, see
            `gradcam`) or `default_layers(model)` (feature maps).
        class_name: Grad-CAM class: a class name from the metadata or an index; default the
            predicted class of each image.
        out_dir: output folder; default `<model-stem>_explain` beside the model.
        alpha: Grad-CAM overlay weight.

    Returns:
        The written paths.

    Example:
        >>> explain_path("saved_models/pets.h5", "photos/", "gradcam")   # doctest: +SKIP
        ['saved_models/pets_explain/cat1_gradcam_cat.png', ...]
    """
    check_choice("method", method, METHODS)
    model_path = Path(model_path)
    out_dir = Path(model_path.parent / f"{model_path.stem}_explain"
                   if out_dir is None else out_dir)
    made = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        return _explain(model_path, inputs, method, layer, class_name, _writable_dir(out_dir),
                        alpha)
    except BaseException:
        for folder in made:  # an error leaves no empty output folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _explain(model_path, inputs, method, layer, class_name, out_dir, alpha):
    model = _load_model(model_path)

    if method == "filters":
        return [save_filter_grid(first_layer_filters(model),
                                 out_dir / f"{_safe_name(model_path.stem)}_filters.png")]

    if inputs is None:
        raise TlkitError(f"Method {method!r} needs images: give an image file or a folder.")
    input_shape = tuple(model.inputs[0].shape[1:])
    files = image_files(inputs)
    from tlkit.data import folder

    for p in files:  # headers only: a bad file stops the run before anything is written
        probe = folder.probe_file(str(p))
        if probe.decoder is None:
            raise TlkitError(f"Cannot read image {str(p)!r}: {probe.problem}.")
    # One image at a time: a folder of any size needs the memory of one image.
    images = ((p, load_image(p, input_shape)) for p in files)
    written = []
    if method == "gradcam":
        cam = _GradCam(model, layer)
        class_names = read_class_names(model_path)
        n = 2 if cam.num_outputs == 1 else cam.num_outputs
        if class_names and len(class_names) != n:
            class_names = None
        index = _class_index(class_name, class_names, n)
        for path, x in images:
            heatmap, k, _ = cam(x, index)
            label = class_names[k] if class_names else str(k)
            written.append(save_gradcam(x, heatmap, out_dir / f"{_safe_name(path.stem)}_gradcam_"
                                                                f"{_safe_name(label)}.png", alpha))
        return written
    names = default_layers(model) if layer is None else [layer]
    tapped = _tap_model(model, [_resolve(model, name) for name in names])
    for path, x in images:
        outs = tapped(x[None], training=False)
        maps = {name: np.asarray(o[0]) for name, o in zip(names, outs)}
        written.extend(save_feature_maps(maps, out_dir, path.stem))
    return written


__all__ = ["METHODS", "conv_layers", "default_layers", "feature_maps", "gradcam",
           "first_layer_filters", "feature_grid", "save_feature_maps", "gradcam_overlay",
           "save_gradcam", "filter_grid", "save_filter_grid", "read_class_names", "image_files",
           "load_image", "explain_path"]
