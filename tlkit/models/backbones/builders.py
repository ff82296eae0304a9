"""`build`: a backbone from a registry name, a zoo model or a classifier file."""

import contextlib
import inspect
import json
import os
import sys
import warnings
import zipfile

import h5py
import keras
import numpy as np
from keras import layers

from tlkit.models.backbones.backbone import Backbone
from tlkit.models.backbones.preprocessing import (
    _fix_efficientnet_normalization, _preprocessing, _set_caffe_weights,
    preprocessing_layer_names,
)
from tlkit.models.backbones.specs import MODEL_EXTENSIONS, ZOO_PREFIX, kind, names, spec
from tlkit.models.backbones.stages import _as_functional, compute_stages
from tlkit.models.backbones.surgery import (
    _copy_weights, _flatten, _head_entrance, _nested_base, _standard_layers,
)
from tlkit.core import fileio
from tlkit.core.errors import TlkitError, setting
from tlkit.models import zoo


def build(name, input_shape=None, weights="imagenet"):
    """Build a backbone: raw pixels (0..255, RGB) in, a 4-D feature map out.

    Args:
        name: a registry name (`names()`), `"zoo:NAME"` (a `tlkit.models.zoo` model cut below its
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
    source = kind(name)
    if source == "zoo":
        return _build_zoo(name, input_shape, weights)
    if source == "file":
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


def _is_download_error(exc):
    import urllib.error

    text = str(exc)
    return (isinstance(exc, (OSError, urllib.error.URLError, TimeoutError))
            or "URL fetch failure" in text or "corrupted" in text)


@contextlib.contextmanager
def _download_notice_held():
    """Keras prints "Downloading data from URL" before it tries: the line is held back until
    the download writes its progress bar (then both go out as usual) and dropped when the
    download fails at once (offline), so that tlkit's one-line error stands alone."""
    real, state = sys.stdout, {"line": None, "passing": False}

    class _Held:
        def write(self, text):
            if not state["passing"] and str(text).startswith("Downloading data from"):
                state["line"] = text
                return len(text)
            if text == "\n" and state["line"] is not None and not state["passing"]:
                state["line"] += text  # print() writes the newline on its own
                return len(text)
            self.release()
            return real.write(text)

        def release(self):
            state["passing"] = True
            if state["line"] is not None:
                real.write(state.pop("line"))
                state["line"] = None

        def __getattr__(self, name):
            return getattr(real, name)

    writer = _Held()
    with contextlib.redirect_stdout(writer):
        yield
    writer.release()


def _build_application(sp, input_shape, weights):
    input_shape = _check_input_shape(input_shape or default_input_shape(sp.name), sp.name,
                                     sp.min_size, channels=3)
    ctor = getattr(keras.applications, sp.constructor)
    inputs = keras.Input(input_shape, name="image")
    x, _ = _preprocessing(inputs, sp.preprocessing)
    kwargs = dict(include_top=False, input_tensor=x, input_shape=input_shape, pooling=None)
    if weights == "imagenet":
        try:
            with _download_notice_held():
                app = ctor(weights="imagenet", **kwargs)
        except Exception as e:  # keras raises a bare Exception for a failed download
            if not _is_download_error(e):
                raise
            raise TlkitError(
                f"Could not download the ImageNet weights for {sp.name} (offline?). Use "
                f"{setting('weights', 'none')} for random weights, or a local weights file "
                f"({setting('weights', 'path/to/file.h5')}).") from e
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


def _build_zoo(name, input_shape, weights):
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


def default_input_shape(name):
    """The input shape `build(name)` uses when none is given.

    Args:
        name: a registry name, `zoo:NAME` or a classifier file path.

    Returns:
        (height, width, channels): `(default_size, default_size, 3)` for the registry; the
        zoo model's published input (e.g. 28x28x1 for `fashion_cnn`: the data is converted to
        it); the file's own input shape for a file (which is loaded to read it).

    Example:
        >>> from tlkit.models.backbones import default_input_shape
        >>> default_input_shape("inception_v3")
        (299, 299, 3)
        >>> default_input_shape("zoo:fashion_cnn")
        (28, 28, 1)
    """
    source = kind(name)
    if source == "zoo":
        return tuple(zoo.entry(name[len(ZOO_PREFIX):]).input_shape)
    if source == "file":
        return file_input_shape(name)
    s = spec(name).default_size
    return (s, s, 3)


def resolve_input_shape(backbone, image_size=None):
    """The (H, W, C) a backbone will be built at: its default, or `image_size` x `image_size`."""
    shape = tuple(default_input_shape(backbone))
    if image_size is None:
        return shape
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = image_size
    if h < 1 or w < 1:
        raise TlkitError(f"--image-size must be positive. Received: {image_size}.")
    return (int(h), int(w), shape[2])


def file_input_shape(path):
    """The (H, W, C) input of the classifier saved at `path`, from its stored config.

    A Functional or Sequential model's first InputLayer records its batch shape in the file's
    model config (`.h5`: the `model_config` attribute; `.keras`: `config.json`), so the
    shape is read without building the model (loading the benchmarks' source file took 0.14 s
    of a 1.2 s run, and `finetune` loads it again to build). A config it cannot read is
    loaded in full.
    """
    _check_file(path)
    try:
        shape = _config_input_shape(_stored_config(path))
    except (OSError, KeyError, ValueError, TypeError, IndexError):
        shape = None
    if shape is None:
        return tuple(_load_file(path).inputs[0].shape[1:])
    return shape


def _stored_config(path):
    if path.lower().endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _config_input_shape(config):
    inputs = [layer for layer in config["config"]["layers"]
              if layer.get("class_name") == "InputLayer"]
    if len(inputs) != 1:
        return None
    c = inputs[0]["config"]
    batch_shape = c.get("batch_shape") or c.get("batch_input_shape")
    if batch_shape is None or len(batch_shape) != 4 or None in batch_shape[1:]:
        return None
    return tuple(int(d) for d in batch_shape[1:])


def _check_file(path):
    if path.lower().endswith(".weights.h5"):
        raise TlkitError(f"{path!r} holds weights only, not a model: pass it as weights= with a "
                         f"registry backbone (valid: {', '.join(names())}).")
    if not os.path.isfile(path):
        raise TlkitError(f"Backbone file {path!r} not found. Give an existing "
                         f"{'/'.join(MODEL_EXTENSIONS)} classifier, a registry name "
                         f"({', '.join(names())}) or zoo:NAME.")

    fileio.check_model_name(path, MODEL_EXTENSIONS, f"a {'/'.join(MODEL_EXTENSIONS)} "
                            f"classifier, a registry backbone ({', '.join(names())}) or "
                            f"zoo:NAME")


def _load_file(path):
    _check_file(path)
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


def _finish(name, model, weights, source):
    """The `Backbone` of a built model: its preprocessing layers and stages."""
    pre = preprocessing_layer_names(model)
    return Backbone(name=name, model=model, input_shape=tuple(model.inputs[0].shape[1:]),
                    stages=compute_stages(model, skip=pre), weights=weights,
                    preprocessing_layers=pre, source=source)
