"""Pretrained convolutional bases that take raw pixels, split into stages.

A backbone is a flat Functional `keras.Model` from a raw image input (pixel values 0..255,
RGB) to a 4-D feature map. The model's own preprocessing sits inside the graph as standard
Keras layers (no Lambda, no custom classes), so a classifier built on it and saved as `.h5`
loads in plain Keras and takes raw pixels. Three sources:

- a registry name (`names()`): a `keras.applications` model with `include_top=False`;
- `zoo:NAME`: a from-scratch `tlkit.zoo` model cut below its classifier head;
- a path to a `.h5` / `.keras` classifier: its convolutional base, with its trained weights.

Preprocessing per family, as keras.applications' `preprocess_input` does it:

- `"tf"`: `Rescaling(1/127.5, offset=-1)` (pixels to -1..1);
- `"torch"`: `Rescaling(1/255)` then `Normalization` with the ImageNet mean and std;
- `"caffe"`: RGB to BGR and minus the ImageNet BGR mean, as one frozen 1x1 `Conv2D` whose
  kernel is the channel permutation and whose bias is the negative mean;
- `"builtin"`: the application has it already (EfficientNet, ConvNeXt, MobileNetV3).

Stages are the groups of layers between downsampling points, from input to output
(`compute_stages`); strategies freeze and unfreeze whole stages. The preprocessing layers
(`Backbone.preprocessing_layers`) always stay frozen.

Example:
    >>> from tlkit import backbones
    >>> bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    >>> bb.model.output_shape
    (None, 3, 3, 1280)
    >>> [s.resolution for s in bb.stages]
    [(48, 48), (24, 24), (12, 12), (6, 6), (3, 3)]
    >>> bb.preprocessing_layers
    ('preprocess_rescale',)
"""

import dataclasses
import inspect
import os
import warnings

import keras
import numpy as np
from keras import layers

from tlkit.errors import TlkitError, suggest

PREPROCESSING_MODES = ("tf", "caffe", "torch", "builtin")
SOURCES = ("keras.applications", "zoo", "file")
ZOO_PREFIX = "zoo:"
MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")

# keras.applications.imagenet_utils: caffe subtracts the mean in BGR order, torch uses RGB.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Metadata of one registered `keras.applications` backbone (timm's PretrainedCfg).

    Attributes:
        name: registry name, snake_case (`"mobilenet_v2"`).
        constructor: the `keras.applications` function (`"MobileNetV2"`).
        default_size: the published input height and width (ImageNet weights were trained
            at this size).
        min_size: the smallest height/width keras.applications accepts.
        preprocessing: `"tf"`, `"caffe"`, `"torch"` or `"builtin"` (see the module docstring).
        description: one line for listings.
    """

    name: str
    constructor: str
    default_size: int
    min_size: int
    preprocessing: str
    description: str


@dataclasses.dataclass(frozen=True)
class Stage:
    """A group of consecutive layers at one feature-map resolution.

    Attributes:
        index: 0 for the stage next to the input.
        name: `"stage0"`, `"stage1"`, ...
        layers: layer names, in `model.layers` order.
        resolution: (height, width) of the stage's output feature map.
        params: parameters of the stage's layers, preprocessing layers not counted.
    """

    index: int
    name: str
    layers: tuple[str, ...]
    resolution: tuple[int, int]
    params: int


@dataclasses.dataclass
class Backbone:
    """A convolutional base: raw pixels in, a 4-D feature map out, split into stages.

    Attributes:
        name: what `build` was called with (registry name, `zoo:NAME` or a file path).
        model: the flat Functional `keras.Model`.
        input_shape: (height, width, channels) of the raw input.
        stages: `Stage`s from input to output; every stage has parameters.
        weights: `"imagenet"`, a weights file path, `None` (random) or, for a classifier
            file, the file's path.
        preprocessing_layers: names of the layers that turn raw pixels into the model's
            input range; they have no trainable weights and strategies never unfreeze them.
        source: `"keras.applications"`, `"zoo"` or `"file"`.
    """

    name: str
    model: keras.Model
    input_shape: tuple[int, int, int]
    stages: list[Stage]
    weights: str | None
    preprocessing_layers: tuple[str, ...]
    source: str

    def stage_of(self, layer_name):
        """The index of the stage that holds layer `layer_name`.

        Args:
            layer_name: a name from `model.layers`.

        Returns:
            The stage index (0 is next to the input).

        Example:
            >>> bb = build("vgg16", (32, 32, 3), weights=None)
            >>> bb.stage_of("block1_conv1"), bb.stage_of("block5_conv3")
            (0, 4)
        """
        for stage in self.stages:
            if layer_name in stage.layers:
                return stage.index
        raise suggest(layer_name, [l.name for l in self.model.layers], f"layer in {self.name}:")

    def layers_of(self, stage_indices):
        """The layers of the given stages, in `model.layers` order.

        Args:
            stage_indices: one index or an iterable of them; negative ones count from the
                last stage (`-1` is the stage next to the output).

        Returns:
            A list of `keras.layers.Layer` (preprocessing layers included when they are in
            one of the stages: skip `preprocessing_layers` before unfreezing).

        Example:
            >>> bb = build("vgg16", (32, 32, 3), weights=None)
            >>> [l.name for l in bb.layers_of(-1)]  # a stage starts at its downsampling
            ['block4_pool', 'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']
        """
        if isinstance(stage_indices, (int, np.integer)):
            stage_indices = [stage_indices]
        n = len(self.stages)
        wanted = set()
        for i in stage_indices:
            if not isinstance(i, (int, np.integer)) or not -n <= i < n:
                raise TlkitError(f"No stage {i!r} in {self.name}: it has {n} stages, "
                                 f"indices 0..{n - 1} (or -{n}..-1).")
            wanted.update(self.stages[i].layers)
        return [l for l in self.model.layers if l.name in wanted]


# ---------------------------------------------------------------------------------------------
# the registry

_REGISTRY = {}


def _register(name, constructor, default_size, min_size, preprocessing, description):
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"bad preprocessing {preprocessing!r} for {name}")
    _REGISTRY[name] = BackboneSpec(name, constructor, default_size, min_size, preprocessing,
                                   description)


# Sizes and modes from keras.applications 3.x: `min_size` as its `obtain_input_shape` checks
# it, `preprocessing` as its `preprocess_input` does it.
_register("mobilenet", "MobileNet", 224, 32, "tf", "MobileNet v1 (alpha 1.0), 3.2M params")
_register("mobilenet_v2", "MobileNetV2", 224, 32, "tf", "MobileNetV2 (alpha 1.0), 2.3M params")
_register("mobilenet_v3_small", "MobileNetV3Small", 224, 32, "builtin",
          "MobileNetV3-Small, 0.9M params, rescaling built in")
_register("mobilenet_v3_large", "MobileNetV3Large", 224, 32, "builtin",
          "MobileNetV3-Large, 3.0M params, rescaling built in")
for _b, _size, _params in [(0, 224, "4.0M"), (1, 240, "6.6M"), (2, 260, "7.8M"),
                           (3, 300, "10.8M")]:
    _register(f"efficientnet_b{_b}", f"EfficientNetB{_b}", _size, 32, "builtin",
              f"EfficientNet-B{_b}, {_params} params, normalization built in")
_register("efficientnet_v2_b0", "EfficientNetV2B0", 224, 32, "builtin",
          "EfficientNetV2-B0, 5.9M params, normalization built in")
_register("resnet50", "ResNet50", 224, 32, "caffe", "ResNet-50 (v1), 23.6M params")
_register("resnet101", "ResNet101", 224, 32, "caffe", "ResNet-101 (v1), 42.7M params")
_register("resnet50_v2", "ResNet50V2", 224, 32, "tf", "ResNet-50 v2 (pre-activation), 23.6M params")
_register("vgg16", "VGG16", 224, 32, "caffe", "VGG16 conv base, 14.7M params")
_register("vgg19", "VGG19", 224, 32, "caffe", "VGG19 conv base, 20.0M params")
_register("inception_v3", "InceptionV3", 299, 75, "tf", "Inception v3, 21.8M params")
_register("xception", "Xception", 299, 71, "tf", "Xception, 20.9M params")
_register("densenet121", "DenseNet121", 224, 32, "torch", "DenseNet-121, 7.0M params")
_register("convnext_tiny", "ConvNeXtTiny", 224, 32, "builtin",
          "ConvNeXt-Tiny, 27.8M params, normalization built in")


def names():
    """The registered `keras.applications` backbone names, in registration order.

    `build` also takes `zoo:NAME` (see `tlkit.zoo.names()`) and a path to a classifier file.

    Example:
        >>> names()[:3]
        ['mobilenet', 'mobilenet_v2', 'mobilenet_v3_small']
    """
    return list(_REGISTRY)


def spec(name):
    """The `BackboneSpec` of registry backbone `name`.

    Args:
        name: one of `names()`.

    Returns:
        The frozen `BackboneSpec`.

    Raises:
        TlkitError: unknown name; the message lists close matches and all names.

    Example:
        >>> spec("inception_v3").min_size
        75
    """
    if name not in _REGISTRY:
        err = str(suggest(name, _REGISTRY, "backbone")).rstrip(".")
        raise TlkitError(f"{err}; or zoo:NAME for a tlkit.zoo model, or a path to a "
                         f"{'/'.join(MODEL_EXTENSIONS)} classifier.")
    return _REGISTRY[name]


def _kind(name):
    """'zoo', 'file' or 'keras.applications' for a backbone name."""
    name = os.fspath(name)
    if name.startswith(ZOO_PREFIX):
        return "zoo"
    if name.lower().endswith(MODEL_EXTENSIONS) or os.sep in name or "/" in name:
        return "file"
    return "keras.applications"


def default_input_shape(name):
    """The input shape `build(name)` uses when none is given.

    Args:
        name: a registry name, `zoo:NAME` or a classifier file path.

    Returns:
        (height, width, channels): `(default_size, default_size, 3)` for the registry; the
        zoo model's published input (e.g. 28x28x1 for `fashion_cnn`: the data is converted to
        it); the file's own input shape for a file (which is loaded to read it).

    Example:
        >>> default_input_shape("inception_v3")
        (299, 299, 3)
        >>> default_input_shape("zoo:fashion_cnn")
        (28, 28, 1)
    """
    kind = _kind(name)
    if kind == "zoo":
        from tlkit import zoo

        return tuple(zoo.entry(name[len(ZOO_PREFIX):]).input_shape)
    if kind == "file":
        return tuple(_load_file(name).inputs[0].shape[1:])
    s = spec(name).default_size
    return (s, s, 3)


# ---------------------------------------------------------------------------------------------
# building


def build(name, input_shape=None, weights="imagenet"):
    """Build a backbone: raw pixels (0..255, RGB) in, a 4-D feature map out.

    Args:
        name: a registry name (`names()`), `"zoo:NAME"` (a `tlkit.zoo` model cut below its
            head, with a `Rescaling(1/255)` in front), or a path to a `.h5`/`.keras`
            classifier (its convolutional base with the trained weights: a nested base model
            if it has one, else everything up to the last 4-D layer before the head).
        input_shape: (height, width, channels); defaults to `default_input_shape(name)`.
            keras.applications backbones need 3 channels and at least `spec(name).min_size`.
        weights: `"imagenet"` (download; needs internet), `None` / `"none"` / `"random"`
            (random initialisation), or a path to a local weights file: one saved from a
            tlkit backbone (`bb.model.save_weights("x.weights.h5")`) or keras.applications'
            own `*_notop.h5` file. Zoo models have no pretrained weights: `"imagenet"` gives
            random ones there. A classifier file keeps its own weights: `"imagenet"` and
            `None` are ignored and a weights path is an error.

    Returns:
        A `Backbone`.

    Raises:
        TlkitError: unknown name, bad input shape, missing file, or no ImageNet weights
            (offline).

    Example:
        >>> bb = build("resnet50", (64, 64, 3), weights=None)
        >>> bb.model.name, bb.model.output_shape, len(bb.stages)
        ('resnet50', (None, 2, 2, 2048), 5)
    """
    weights = _resolve_weights(weights)
    kind = _kind(name)
    if kind == "zoo":
        return _build_zoo(name, input_shape, weights)
    if kind == "file":
        return _build_file(os.fspath(name), input_shape, weights)
    return _build_application(spec(name), input_shape, weights)


def _resolve_weights(weights):
    if weights is None:
        return None
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TlkitError(f"weights must be 'imagenet', None/'none'/'random' or a path to a "
                         f"weights file. Received: weights={weights!r}.")
    if weights.lower() in ("", "none", "random"):
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(weights):
        raise TlkitError(f"Weights file {weights!r} not found. Use weights='imagenet', "
                         f"weights=None (--weights none) or the path of an existing file.")
    return weights


def _check_input_shape(input_shape, label, min_size=1, channels=None):
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        input_shape = (input_shape,)
    if len(input_shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0
                                        for d in input_shape):
        raise TlkitError(f"input_shape must be (height, width, channels) with positive ints. "
                         f"Received: input_shape={input_shape!r}.")
    input_shape = tuple(int(d) for d in input_shape)
    h, w, c = input_shape
    if channels is not None and c != channels:
        raise TlkitError(f"{label!r} needs {channels}-channel (RGB) input. Received: "
                         f"input_shape={input_shape}; convert grayscale images to RGB.")
    if min(h, w) < min_size:
        raise TlkitError(f"Input {h}x{w} is too small for {label!r}: "
                         f"minimum {min_size}x{min_size}")
    return input_shape


def _preprocessing(x, mode):
    """Apply the `mode` preprocessing as standard layers; return (tensor, layer names)."""
    if mode == "tf":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_rescale")(x)
        return x, ("preprocess_rescale",)
    if mode == "torch":
        x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(x)
        x = layers.Normalization(mean=list(IMAGENET_MEAN_RGB),
                                 variance=[s ** 2 for s in IMAGENET_STD_RGB],
                                 name="preprocess_normalize")(x)
        return x, ("preprocess_rescale", "preprocess_normalize")
    if mode == "caffe":
        # out[..., j] = in[..., 2 - j] - mean_bgr[j]: RGB -> BGR, then minus the mean.
        conv = layers.Conv2D(3, 1, trainable=False, name="preprocess_caffe")
        x = conv(x)
        _set_caffe_weights(conv)
        return x, ("preprocess_caffe",)
    return x, ()


def _set_caffe_weights(layer_or_model):
    """Set the caffe preprocessing conv: out[..., j] = in[..., 2 - j] - mean_bgr[j]."""
    conv = layer_or_model
    if isinstance(conv, keras.Model):
        conv = next((l for l in conv.layers if l.name == "preprocess_caffe"), None)
    if conv is None:
        return
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for j in range(3):
        kernel[0, 0, 2 - j, j] = 1.0
    conv.set_weights([kernel, -np.asarray(IMAGENET_MEAN_BGR, dtype="float32")])


def _is_download_error(exc):
    import urllib.error

    text = str(exc)
    return (isinstance(exc, (OSError, urllib.error.URLError, TimeoutError))
            or "URL fetch failure" in text or "corrupted" in text)


def _build_application(sp, input_shape, weights):
    input_shape = _check_input_shape(input_shape or default_input_shape(sp.name), sp.name,
                                     sp.min_size, channels=3)
    ctor = getattr(keras.applications, sp.constructor)
    inputs = keras.Input(input_shape, name="image")
    x, _ = _preprocessing(inputs, sp.preprocessing)
    kwargs = dict(include_top=False, input_tensor=x, input_shape=input_shape, pooling=None)
    if weights == "imagenet":
        try:
            app = ctor(weights="imagenet", **kwargs)
        except Exception as e:  # keras raises a bare Exception for a failed download
            if not _is_download_error(e):
                raise
            reason = " ".join(str(e).split())
            raise TlkitError(
                f"Could not get ImageNet weights for {sp.name} (no internet?): {reason}. "
                f"Use weights=None (--weights none) or a local weights file "
                f"(--weights path/to/file.h5).") from e
    else:
        app = ctor(weights=None, **kwargs)
    model = _standard_layers(keras.Model(inputs, app.output, name=sp.name))
    if weights not in (None, "imagenet"):
        _load_application_weights(model, sp, input_shape, weights)
    return _finish(sp.name, model, weights, "keras.applications")


def _load_application_weights(model, sp, input_shape, path):
    """Load a weights file saved from a tlkit backbone, or keras.applications' own file."""
    try:
        with warnings.catch_warnings():  # a mismatch warns per layer, then raises: quiet
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except Exception as first:
        # A file of the bare application (keras' `*_notop.h5`, or `App.save_weights`) has
        # no preprocessing layers: load it into one and copy layer by layer.
        ref = getattr(keras.applications, sp.constructor)(
            include_top=False, weights=None, input_shape=input_shape, pooling=None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref.load_weights(path)
        except Exception:
            reason = " ".join(str(first).split())
            raise TlkitError(f"Could not load weights file {path!r} into {sp.name} at input "
                             f"{'x'.join(map(str, input_shape))}: {reason}") from first
        own = [l for l in model.layers if l.weights and not l.name.startswith("preprocess_")]
        theirs = [l for l in ref.layers if l.weights]
        for dst, src in zip(own, theirs, strict=True):
            _copy_weights(dst, src)
    _set_caffe_weights(model)  # the fixed preprocessing, whatever the file held
    if sp.constructor.startswith("EfficientNetB"):
        _fix_efficientnet_normalization(model)


def _fix_efficientnet_normalization(model):
    """Fold keras' EfficientNet ImageNet variance fix into the Normalization layer.

    keras' ImageNet EfficientNet files store the std (not std**2) as the Normalization
    variance, and `EfficientNetB*(weights="imagenet")` adds a `Rescaling(1/sqrt(std))` after
    it; that layer is missing when weights come from a file. When the loaded variance is the
    ImageNet std, set it to std**2: the same arithmetic with the layers we have.
    """
    for layer in model.layers:
        if isinstance(layer, layers.Normalization) and hasattr(layer, "adapt_variance"):
            var = np.asarray(layer.adapt_variance).reshape(-1)
            if var.shape == (3,) and np.allclose(var, IMAGENET_STD_RGB, atol=1e-3):
                layer.adapt_variance.assign(np.reshape(var ** 2, layer.adapt_variance.shape))
                layer.finalize_state()
            return


def _build_zoo(name, input_shape, weights):
    from tlkit import zoo

    e = zoo.entry(name[len(ZOO_PREFIX):])
    input_shape = _check_input_shape(input_shape or default_input_shape(name), name, e.min_size)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
    options = {}
    if "fc" in inspect.signature(e.fn).parameters:
        options["fc"] = ()  # the FC head is cut off anyway: don't allocate it
    outputs = e.fn(x, 2, **options)
    full = keras.Model(inputs, outputs, name=f"zoo_{e.name}")
    model = keras.Model(inputs, _head_entrance(full), name=f"zoo_{e.name}")
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as err:
            reason = " ".join(str(err).split())
            raise TlkitError(f"Could not load weights file {weights!r} into {name}: "
                             f"{reason}") from err
    return _finish(name, model, None if weights == "imagenet" else weights, "zoo")


# ---------------------------------------------------------------------------------------------
# classifier files


def _load_file(path):
    if path.lower().endswith(".weights.h5"):
        raise TlkitError(f"{path!r} holds weights only, not a model: pass it as weights= with a "
                         f"registry backbone (valid: {', '.join(names())}).")
    if not os.path.isfile(path):
        raise TlkitError(f"Backbone file {path!r} not found. Give an existing "
                         f"{'/'.join(MODEL_EXTENSIONS)} classifier, a registry name "
                         f"({', '.join(names())}) or zoo:NAME.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        reason = " ".join(str(e).split())
        raise TlkitError(f"Could not load {path!r} as a Keras model: {reason}") from e


def _build_file(path, input_shape, weights):
    if weights not in (None, "imagenet"):
        raise TlkitError(f"Backbone file {path!r} holds its own weights: weights={weights!r} "
                         f"is only for registry backbones. Use weights=None or leave it out.")
    loaded = _load_file(path)
    if not isinstance(loaded, keras.Model) or len(loaded.inputs) != 1:
        raise TlkitError(f"{path!r} must hold a single-input Keras model.")
    file_shape = tuple(loaded.inputs[0].shape[1:])
    if len(file_shape) != 3:
        raise TlkitError(f"{path!r} is not an image model: its input shape is {file_shape}, "
                         f"expected (height, width, channels).")
    if input_shape is not None:
        input_shape = _check_input_shape(input_shape, path)
        if any(a is not None and a != b for a, b in zip(file_shape, input_shape)):
            shape = "x".join("?" if d is None else str(d) for d in file_shape)
            raise TlkitError(f"{path!r} expects input {shape} (height x width x channels). "
                             f"Received: input_shape={input_shape}.")
    elif None in file_shape:
        raise TlkitError(f"{path!r} takes inputs of shape {file_shape}: pass input_shape "
                         f"(height, width, channels).")
    else:
        input_shape = tuple(int(d) for d in file_shape)
    base, upstream = _nested_base(loaded, path)
    name = f"{loaded.name}_base"
    if base is not None and not upstream and tuple(base.inputs[0].shape[1:]) == input_shape:
        model = _as_functional(base)  # Input -> base -> head: the base is the backbone
    elif base is None and file_shape == input_shape:
        model = keras.Model(loaded.inputs[0], _head_entrance(loaded, path), name=name)
    else:  # layers before the base, or a new input size: rebuild flat
        model = _flatten(loaded, base, input_shape, name, path)
    backbone = _finish(path, _standard_layers(model), path, "file")
    if not any(s.params for s in backbone.stages):
        raise TlkitError(f"{path!r} has no convolutional (4-D) layer with weights to use as "
                         f"a backbone.")
    return backbone


def _nested_base(model, label):
    """The sub-model that feeds the classifier head (Input -> base -> pooling -> dense), or
    None when the head reads a plain layer; and whether layers come before that base."""
    entrance = _head_entrance(model, label)
    base = entrance._keras_history[0]
    if not isinstance(base, keras.Model):
        return None, False
    upstream = not all(isinstance(p, layers.InputLayer) for p in _parents(base, model))
    return base, upstream


def _as_functional(model):
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def _outer_output(layer, model):
    return _nodes_in(layer, model)[0].outputs[0]


def _flatten(outer, base, input_shape, name, label):
    """Rebuild `outer` up to its base on a new input, with `base` expanded into its layers."""
    target = _outer_output(base, outer) if base is not None else _head_entrance(outer, label)
    trunk = keras.Model(outer.inputs[0], target)
    return _rebuild(trunk, input_shape, name, expand=base)


# keras ops (not layers) in a Functional graph that `.h5` cannot load, and their layers.
_MERGE_LAYERS = {"Add": layers.Add, "Multiply": layers.Multiply, "Subtract": layers.Subtract}


def _needs_standard_layers(model):
    return any(_is_layer_scale(op) or (not isinstance(op, layers.Layer)
                                       and type(op).__name__ in _MERGE_LAYERS)
               for op in model.operations)


def _is_layer_scale(op):
    return type(op).__name__ == "LayerScale" and hasattr(op, "gamma")


def _rebuild(graph, input_shape, name, expand=None):
    """Replay Functional `graph` on a new `keras.Input(input_shape)` with fresh copies of its
    layers (from their configs, weights copied), so that the result is one flat graph whose
    layers each have a single inbound node and that the legacy `.h5` format can load:

    - `expand` (a nested Functional/Sequential called in `graph`) is inlined layer by layer;
    - keras ops in the graph, which `.h5` cannot deserialize, become layers: `x + y`,
      `x * y`, `x - y` (ConvNeXt's residuals) become `Add`/`Multiply`/`Subtract`, and
      `x + c`, `x * c` with a number (MobileNetV3's hard sigmoid) `Rescaling` (the same
      arithmetic);
    - ConvNeXt's `LayerScale` (not a registered Keras class: `.h5` cannot load it) becomes a
      bias-free 1x1 `DepthwiseConv2D` with the same per-channel factors.
    """
    pairs = []  # (old layer, new layer): weights are copied once the graph is built

    def clone(op):
        if _is_layer_scale(op):
            new = layers.DepthwiseConv2D(1, use_bias=False, name=op.name)
        elif isinstance(op, layers.Layer):
            new = type(op).from_config(op.get_config())
        else:
            return _op_fn(op)
        pairs.append((op, new))
        return new

    counter = [0]

    def _op_fn(op):
        kind = type(op).__name__

        def call(*args, **kwargs):
            if kind not in _MERGE_LAYERS or len(args) != 2 or kwargs:
                return op(*args, **kwargs)  # another stateless keras op: reuse it
            counter[0] += 1
            numbers = [a for a in args if isinstance(a, (int, float, np.number))]
            if not numbers:
                return _MERGE_LAYERS[kind](name=f"{name}_{kind.lower()}_{counter[0]}")(list(args))
            x = next(a for a in args if not isinstance(a, (int, float, np.number)))
            c = float(numbers[0])
            if kind == "Add" and len(numbers) == 1:
                return layers.Rescaling(1.0, offset=c, name=f"{name}_offset_{counter[0]}")(x)
            if kind == "Multiply" and len(numbers) == 1:
                return layers.Rescaling(c, name=f"{name}_scale_{counter[0]}")(x)
            return op(*args, **kwargs)

        return call

    def operation_fn(op):
        if expand is not None and op is expand:
            return inline
        return clone(op)

    def inline(x, *args, **kwargs):
        if isinstance(expand, keras.Sequential):
            for layer in expand.layers:
                x = clone(layer)(x)
            return x
        return expand._run_through_graph(x, operation_fn=clone)

    inputs = keras.Input(input_shape, name=graph.inputs[0].name)
    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    model = keras.Model(inputs, outputs, name=name)
    for old, new in pairs:
        _copy_weights(new, old)
    return model


def _copy_weights(dst, src):
    """`dst.set_weights(src.get_weights())`, reshaping where only the shape differs."""
    values = src.get_weights()
    if len(values) != len(dst.weights):
        raise ValueError(f"cannot copy the weights of {src.name} into {dst.name}")
    dst.set_weights([np.reshape(v, w.shape) for v, w in zip(values, dst.weights)])
    if values and hasattr(dst, "finalize_state"):
        dst.finalize_state()  # Normalization reads its adapted variables only there


def _standard_layers(model):
    """`model` itself, or a rebuilt copy when it holds pieces `.h5` cannot load."""
    if not _needs_standard_layers(model):
        return model
    return _rebuild(model, tuple(model.inputs[0].shape[1:]), model.name)


def _head_entrance(model, label=None):
    """The 4-D tensor that enters the classifier head: walking back from the output through
    the non-spatial layers (Dense, Dropout, Flatten, global pooling), the first 4-D one."""
    t = model.outputs[0]
    while not _is_spatial(tuple(t.shape)):
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        if node.is_input or not node.input_tensors:
            t = None
            break
        t = node.input_tensors[0]
    if t is None or any(t is x for x in model.inputs):
        raise TlkitError(f"{label or model.name!r} has no convolutional (4-D) layer to use as "
                         f"a backbone.")
    return t


# ---------------------------------------------------------------------------------------------
# stages


def _finish(name, model, weights, source):
    pre = preprocessing_layer_names(model)
    return Backbone(name=name, model=model, input_shape=tuple(model.inputs[0].shape[1:]),
                    stages=compute_stages(model, skip=pre), weights=weights,
                    preprocessing_layers=pre, source=source)


def preprocessing_layer_names(model):
    """Names of the layers of `model` that only rescale raw pixels.

    Those are the layers named `preprocess_*`, and the `Rescaling`/`Normalization` layers
    before the first layer with weights (keras.applications' built-in preprocessing).

    Args:
        model: a Functional `keras.Model`.

    Returns:
        A tuple of layer names, in `model.layers` order.

    Example:
        >>> preprocessing_layer_names(build("efficientnet_b0", (32, 32, 3), weights=None).model)
        ('rescaling', 'normalization')
    """
    found, leading = [], True
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if layer.name.startswith("preprocess_") or (
                leading and isinstance(layer, (layers.Rescaling, layers.Normalization))):
            found.append(layer.name)
        elif layer.weights:
            leading = False
    return tuple(found)


def compute_stages(model, skip=()):
    """Split a Functional model into stages: the layer groups between downsampling points.

    Every layer gets a "trunk resolution": the output resolution of an input or of a
    downsampling layer (a 4-D layer whose output is smaller than its input; stride-1
    "valid" convolutions and global pooling do not count), otherwise the smallest one among
    the layers it reads from. So padding belongs with the layers before the stride,
    branches (ResNet shortcuts, Inception towers, DenseNet concatenations,
    squeeze-and-excite) stay in the stage they start from, and layers after the last 4-D
    one (a head) go in the last stage. Stages are the distinct trunk resolutions, largest
    first. A stage without parameters (the input and preprocessing, a final pooling) is
    merged into the next stage, or the previous one at the end, so that every stage has
    parameters.

    Args:
        model: a Functional `keras.Model` with a static input shape.
        skip: names of layers whose parameters do not count (the preprocessing layers).

    Returns:
        A list of `Stage`, input side first.

    Example:
        >>> bb = build("vgg16", (32, 32, 3), weights=None)
        >>> [(s.resolution, len(s.layers)) for s in compute_stages(bb.model)]
        [((32, 32), 4), ((16, 16), 3), ((8, 8), 4), ((4, 4), 4), ((1, 1), 5)]
    """
    model = _as_functional(model)
    skip = set(skip)
    trunk = {}
    for op in model.operations:
        nodes = _nodes_in(op, model)
        node = nodes[0] if nodes else None
        out_shape = _output_shape(op, node)
        parents = _parents(op, model)
        res = [trunk[p] for p in parents if trunk.get(p) is not None]
        if not parents or node is None or node.is_input:
            trunk[op] = _hw(out_shape)
        elif _downsamples(op, node, out_shape):
            trunk[op] = _hw(out_shape)
        else:
            trunk[op] = min(res, key=_area) if res else _hw(out_shape)
    sizes = sorted({r for r in trunk.values() if r is not None}, key=_area, reverse=True)
    groups = [[] for _ in sizes] or [[]]
    for layer in model.layers:
        r = trunk.get(layer)
        groups[sizes.index(r) if r is not None else -1].append(layer)
    resolutions = list(sizes) or [None]

    def params(group):
        return sum(l.count_params() for l in group if l.name not in skip)

    merged = []  # [layers, resolution]
    pending = []
    for group, r in zip(groups, resolutions):
        pending += group
        if params(group) > 0:
            merged.append([pending, r])
            pending = []
    if pending:
        if merged:
            merged[-1][0] += pending
            merged[-1][1] = resolutions[-1]
        else:
            merged.append([pending, resolutions[-1]])
    order = {id(l): i for i, l in enumerate(model.layers)}
    stages = []
    for i, (group, r) in enumerate(merged):
        group.sort(key=lambda l: order[id(l)])
        stages.append(Stage(index=i, name=f"stage{i}", layers=tuple(l.name for l in group),
                            resolution=r, params=params(group)))
    return stages


def _nodes_in(op, model):
    """The inbound nodes of `op` that belong to `model`'s graph."""
    keys = getattr(model, "_nodes", None)
    nodes = []
    for i, node in enumerate(getattr(op, "_inbound_nodes", [])):
        if keys is None or f"{id(op)}_ib-{i}" in keys:
            nodes.append(node)
    return nodes


def _parents(op, model):
    parents = []
    for node in _nodes_in(op, model):
        for t in node.input_tensors:
            history = getattr(t, "_keras_history", None)
            if history is not None and history[0] is not None and history[0] not in parents:
                parents.append(history[0])
    return parents


def _output_shape(op, node=None):
    if node is not None and node.outputs:
        return tuple(node.outputs[0].shape)
    try:
        return tuple(op.output.shape)
    except Exception:
        return ()


def _is_spatial(shape):
    return len(shape) == 4


def _hw(shape):
    return (shape[1], shape[2]) if _is_spatial(shape) and None not in shape[1:3] else None


def _area(hw):
    return hw[0] * hw[1]


_GLOBAL_POOLING = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)


def _downsamples(op, node, out_shape):
    out = _hw(out_shape)
    if out is None or isinstance(op, _GLOBAL_POOLING):
        return False
    ins = [_hw(tuple(t.shape)) for t in node.input_tensors]
    ins = [r for r in ins if r is not None]
    if not ins or _area(out) >= max(_area(r) for r in ins):
        return False
    strides = getattr(op, "strides", None)
    if strides is not None and all(s == 1 for s in np.ravel(strides)):
        return False  # a "valid" convolution trims the border: same stage
    return True


def describe(backbone):
    """A printable table of the stages of `backbone`.

    Args:
        backbone: a `Backbone`.

    Returns:
        A multi-line string: a header line, the preprocessing layers, one row per stage.

    Example:
        >>> print(describe(build("vgg16", (32, 32, 3), weights=None)))  # doctest: +ELLIPSIS
        vgg16 (keras.applications, weights=None): input 32x32x3 -> (1, 1, 512), 14,714,688 params
        preprocessing (always frozen): preprocess_caffe
        stage   resolution  layers       params
        stage0  32x32            4       38,720
        stage1  16x16            3      221,440
        ...
    """
    m = backbone.model
    shape = "x".join(map(str, backbone.input_shape))
    skip = set(backbone.preprocessing_layers)
    total = sum(l.count_params() for l in m.layers if l.name not in skip)
    lines = [f"{backbone.name} ({backbone.source}, weights={backbone.weights}): input {shape} "
             f"-> {tuple(m.output.shape[1:])}, {total:,} params",
             f"preprocessing (always frozen): {', '.join(backbone.preprocessing_layers) or 'none'}",
             f"{'stage':<7} {'resolution':<11} {'layers':>6} {'params':>12}"]
    for s in backbone.stages:
        res = "x".join(map(str, s.resolution)) if s.resolution else "-"
        lines.append(f"{s.name:<7} {res:<11} {len(s.layers):>6} {s.params:>12,}")
    return "\n".join(lines)


__all__ = ["BackboneSpec", "Stage", "Backbone", "names", "spec", "build", "compute_stages",
           "default_input_shape", "describe", "preprocessing_layer_names",
           "PREPROCESSING_MODES", "SOURCES"]
