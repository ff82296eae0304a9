"""The registry of `keras.applications` backbones and how a backbone name is read.

A name is one of three kinds (`kind`): a registry name (`names()`), `zoo:NAME` (a
`tlkit.models.zoo` model) or a path to a `.h5` / `.keras` classifier file.

Example:
    >>> from tlkit.models.backbones import specs
    >>> specs.kind("zoo:fashion_cnn"), specs.kind("resnet50"), specs.kind("model.h5")
    ('zoo', 'keras.applications', 'file')
"""

import dataclasses
import os

from tlkit.core.errors import TlkitError, suggest
from tlkit.models import zoo

PREPROCESSING_MODES = ("tf", "caffe", "torch", "builtin")
SOURCES = ("keras.applications", "zoo", "file")
ZOO_PREFIX = "zoo:"
MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")


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

    `build` also takes `zoo:NAME` (see `tlkit.models.zoo.names()`) and a path to a classifier file.

    Example:
        >>> from tlkit.models.backbones import names
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
        >>> from tlkit.models.backbones import spec
        >>> spec("inception_v3").min_size
        75
    """
    if name not in _REGISTRY:
        err = str(suggest(name, _REGISTRY, "backbone")).rstrip(".")
        raise TlkitError(f"{err}; or zoo:NAME for a tlkit.zoo model, or a path to a "
                         f"{'/'.join(MODEL_EXTENSIONS)} classifier.")
    return _REGISTRY[name]


def kind(name):
    """`"zoo"`, `"file"` or `"keras.applications"`: the source a backbone name refers to."""
    name = os.fspath(name)
    if name.startswith(ZOO_PREFIX):
        return "zoo"
    if name.lower().endswith(MODEL_EXTENSIONS) or os.sep in name or "/" in name:
        return "file"
    return "keras.applications"


def channels_note(name, data_channels, model_channels):
    """The warning for images of `data_channels` fed to backbone `name` taking `model_channels`.

    Colour data into a 1-channel model (the small zoo nets, a grayscale `.h5`) loses its
    colour: every image is converted to grayscale. Grayscale data into a from-scratch zoo
    model taking RGB gets three copies of one channel. Grayscale into a pretrained RGB
    backbone is the usual practice (the channel is copied) and gets no note.

    Args:
        name: the backbone or zoo model as the user named it (`zoo:simple_cnn`).
        data_channels: channels of the source images (1 or 3; None: unknown, no note).
        model_channels: channels the model takes.

    Returns:
        One line to warn, or None.

    Example:
        >>> channels_note("zoo:simple_cnn", 3, 1)[:80]
        'zoo:simple_cnn takes grayscale images (1 channel) but the data is colour (3 chan'
        >>> channels_note("mobilenet_v2", 1, 3) is None
        True
    """
    if not data_channels or data_channels == model_channels:
        return None
    zoo = kind(name) == "zoo"
    if data_channels == 3 and model_channels == 1:
        others = _zoo_names(3) if zoo else []
        return (f"{name} takes grayscale images (1 channel) but the data is colour "
                f"(3 channels): every image is converted to grayscale and its colour is lost. "
                f"To use the colour, choose a model that takes RGB: a pretrained backbone "
                f"(e.g. mobilenet_v2)" + (f" or a zoo model built for 3 channels "
                                          f"({', '.join(others)})" if others else "") + ".")
    if data_channels == 1 and model_channels == 3 and zoo:
        others = _zoo_names(1)
        return (f"{name} takes colour images (3 channels) but the data is grayscale "
                f"(1 channel): each image is copied into 3 identical channels, which costs "
                f"compute and adds nothing. A zoo model built for 1 channel takes it as it "
                f"is ({', '.join(others)}).")
    return None


def _zoo_names(channels):
    return [ZOO_PREFIX + n for n in zoo.names() if zoo.entry(n).input_shape[2] == channels]
