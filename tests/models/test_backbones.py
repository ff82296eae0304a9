"""Tests for tlkit.models.backbones: registry, preprocessing in the graph, stages, weights, sources.

Everything builds with `weights=None` or local files (no internet here), at small inputs.
"""

import glob
import os
import socket
import time

import keras
import numpy as np
import pytest
from keras import layers

from model_helpers import compile_and_build
from tlkit.models import backbones
from tlkit.core.errors import TlkitError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    yield


def _raw(shape, n=2):
    """Raw pixels 0..255, float32, as tlkit's data layer yields them."""
    return RNG.uniform(0, 255, size=(n, *shape)).astype("float32")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _copy_into_reference(bb, ref):
    """Copy the backbone's weights into a plain keras.applications model (same layer order,
    minus the preprocessing layers tlkit adds)."""
    own = [l for l in bb.model.layers if l.weights and not l.name.startswith("preprocess_")]
    theirs = [l for l in ref.layers if l.weights]
    assert [len(l.weights) for l in own] == [len(l.weights) for l in theirs]
    for src, dst in zip(own, theirs):  # ConvNeXt's LayerScale gamma is a 1x1 depthwise kernel
        dst.set_weights([np.reshape(v, w.shape) for v, w in zip(src.get_weights(), dst.weights)])


def _assert_close(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    scale = float(np.abs(expected).max())  # random-init outputs can be tiny: be relative
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * scale)


def _size(name):
    return backbones.spec(name).min_size


# Backbones that several tests build with random weights at their minimum input size: built
# once per module. The tests only read them, or set the weights they then compare against.
SHARED = ("mobilenet_v2", "mobilenet_v3_small", "convnext_tiny", "vgg16", "densenet121")


@pytest.fixture(scope="module")
def random_init():
    """random_init(name): `backbones.build(name, (min, min, 3), weights=None)`."""
    built = {}

    def get(name):
        size = _size(name)
        if name not in SHARED:
            return backbones.build(name, (size, size, 3), weights=None)
        if name not in built:
            built[name] = backbones.build(name, (size, size, 3), weights=None)
        return built[name]

    return get


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_has_the_agreed_names_and_valid_specs():
    required = {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "resnet50",
                "resnet50_v2", "vgg16", "vgg19", "inception_v3", "xception", "densenet121",
                "convnext_tiny"}
    assert required <= set(backbones.names())
    for name in backbones.names():
        sp = backbones.spec(name)
        assert sp.name == name
        assert hasattr(keras.applications, sp.constructor)
        assert sp.preprocessing in backbones.PREPROCESSING_MODES
        assert sp.min_size <= sp.default_size
    assert backbones.spec("inception_v3").min_size == 75
    assert backbones.spec("xception").min_size == 71
    assert backbones.default_input_shape("efficientnet_b3") == (300, 300, 3)
    assert backbones.default_input_shape("zoo:fashion_cnn") == (28, 28, 1)


def test_spec_is_frozen():
    with pytest.raises(Exception):
        backbones.spec("vgg16").min_size = 1


def test_unknown_name_suggests_and_lists():
    with pytest.raises(TlkitError) as e:
        backbones.spec("mobilenetv2")
    msg = str(e.value)
    assert "Did you mean mobilenet_v2" in msg and "resnet50" in msg and "zoo:NAME" in msg
    assert "\n" not in msg
    with pytest.raises(TlkitError, match="Unknown backbone"):
        backbones.build("resnet5", weights=None)
    with pytest.raises(TlkitError, match="zoo model"):
        backbones.build("zoo:lenet", weights=None)


# ---------------------------------------------------------------------------------------------
# every registry entry builds: flat, 4-D, stages with parameters, standard layers only


@pytest.mark.parametrize("name", backbones.names())
def test_builds_with_random_weights(name, random_init):
    size = _size(name)
    bb = random_init(name)
    model = bb.model
    assert model.name == name and bb.source == "keras.applications" and bb.weights is None
    assert bb.input_shape == (size, size, 3)
    assert model.inputs[0].name == "image" and len(model.inputs) == 1
    assert len(model.output_shape) == 4
    assert not any(isinstance(l, layers.Lambda) for l in _all_layers(model))
    # Standard Keras classes only, and no bare keras ops: the legacy .h5 format loads them.
    assert all(type(l).__module__.startswith(("keras.src.layers", "keras.src.models"))
               for l in _all_layers(model)), {type(l).__module__ for l in _all_layers(model)}
    assert all(isinstance(op, layers.Layer) for op in model.operations)
    # Stages: a partition of model.layers, in order, each with parameters, shrinking.
    assert len(bb.stages) >= 2
    assert [s.index for s in bb.stages] == list(range(len(bb.stages)))
    assert all(s.params > 0 and s.layers for s in bb.stages)
    flat = [n for s in bb.stages for n in s.layers]
    assert sorted(flat) == sorted(l.name for l in model.layers)
    order = [bb.stage_of(l.name) for l in model.layers]
    assert order == sorted(order), "stage index decreases along model.layers"
    areas = [s.resolution[0] * s.resolution[1] for s in bb.stages]
    assert areas == sorted(areas, reverse=True) and len(set(areas)) == len(areas)
    assert bb.stages[-1].resolution == tuple(model.output_shape[1:3])
    # Preprocessing: first, in stage 0, never trainable.
    mode = backbones.spec(name).preprocessing
    added = [n for n in bb.preprocessing_layers if n.startswith("preprocess_")]
    assert bool(added) == (mode != "builtin")
    if mode == "builtin":
        assert bb.preprocessing_layers  # keras' own Rescaling / Normalization is found
    for n in bb.preprocessing_layers:
        assert bb.stage_of(n) == 0
        assert not model.get_layer(n).trainable_weights


def test_stage_counts_of_known_models(random_init):
    bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    assert [s.resolution for s in bb.stages] == [(48, 48), (24, 24), (12, 12), (6, 6), (3, 3)]
    assert bb.stage_of("Conv1") == 0 and bb.stage_of("image") == 0
    assert bb.stage_of("block_1_depthwise") == 1 and bb.stage_of("out_relu") == 4
    keras.backend.clear_session()
    bb = backbones.build("resnet50", (64, 64, 3), weights=None)
    assert [s.resolution for s in bb.stages] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    # The stride-2 shortcut and the main path of a block start the same stage.
    assert bb.stage_of("conv3_block1_0_conv") == bb.stage_of("conv3_block1_1_conv") == 2
    assert bb.stage_of("conv2_block3_out") == 1
    keras.backend.clear_session()
    bb = random_init("vgg16")  # (32, 32, 3)
    assert [l.name for l in bb.layers_of(-1)] == ["block4_pool", "block5_conv1", "block5_conv2",
                                                  "block5_conv3", "block5_pool"]
    assert bb.layers_of([0, 1]) == bb.layers_of(0) + bb.layers_of(1)
    with pytest.raises(TlkitError, match="5 stages"):
        bb.layers_of(5)
    with pytest.raises(TlkitError, match="block1_conv1"):
        bb.stage_of("block1_conv")
    text = backbones.describe(bb)
    assert "preprocess_caffe" in text and "stage4" in text and "16x16" in text


def test_inception_branches_stay_in_their_stage():
    bb = backbones.build("inception_v3", (75, 75, 3), weights=None)
    # mixed3 reduces 7x7 -> 3x3: its stride-1 towers belong to the 7x7 stage, its output to
    # the 3x3 one; the "valid" 3x3 convs of the stem do not start stages.
    assert [s.resolution for s in bb.stages] == [(37, 37), (17, 17), (7, 7), (3, 3), (1, 1)]
    assert bb.stage_of("mixed2") == 2 and bb.stage_of("mixed3") == 3


def test_compute_stages_on_a_plain_model():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2)(x)
    stages = backbones.compute_stages(keras.Model(inputs, outputs))
    assert [s.resolution for s in stages] == [(16, 16), (8, 8)]
    assert stages[1].params == 8 * (4 * 9 + 1) + 2 * 9  # conv + dense: the head is last


# ---------------------------------------------------------------------------------------------
# the preprocessing inside the graph equals keras.applications' preprocess_input


@pytest.mark.parametrize("name, module", [
    ("mobilenet_v2", keras.applications.mobilenet_v2),     # "tf"
    ("vgg16", keras.applications.vgg16),                   # "caffe"
    ("densenet121", keras.applications.densenet),          # "torch"
    ("mobilenet_v3_small", keras.applications.mobilenet_v3),  # "builtin", ops -> layers
    ("convnext_tiny", keras.applications.convnext),        # "builtin", LayerScale -> layer
])
def test_raw_pixels_in_equals_preprocess_input_then_application(name, module, random_init):
    size = _size(name)
    bb = random_init(name)
    for layer in bb.model.layers:  # LayerScale starts at 1e-6: make it count
        if isinstance(layer, layers.DepthwiseConv2D) and layer.kernel.shape[:2] == (1, 1):
            layer.kernel.assign(RNG.uniform(0.5, 1.5, layer.kernel.shape))
    ref = getattr(keras.applications, backbones.spec(name).constructor)(
        include_top=False, weights=None, input_shape=(size, size, 3))
    _copy_into_reference(bb, ref)
    raw = _raw((size, size, 3))
    expected = ref(module.preprocess_input(raw.copy()))
    _assert_close(bb.model(raw), expected)


def test_caffe_layer_is_exactly_preprocess_input(random_init):
    bb = random_init("vgg16")  # (32, 32, 3)
    layer = bb.model.get_layer("preprocess_caffe")
    assert not layer.trainable and not layer.trainable_weights
    pre = keras.Model(bb.model.input, layer.output)
    raw = _raw((32, 32, 3))
    expected = keras.applications.vgg16.preprocess_input(raw.copy())
    np.testing.assert_allclose(pre(raw), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# weights


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_offline_fails_fast_and_clearly(capsys):
    if glob.glob(os.path.expanduser("~/.keras/models/mobilenet_v2*")):
        pytest.skip("MobileNetV2 ImageNet weights are cached here")
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        pytest.skip("online: the download would succeed")
    except OSError:
        pass
    start = time.monotonic()
    with pytest.raises(TlkitError) as e:
        backbones.build("mobilenet_v2", (32, 32, 3))  # weights="imagenet" is the default
    assert time.monotonic() - start < 10
    assert str(e.value) == ("Could not download the ImageNet weights for mobilenet_v2 "
                            "(offline?). Use weights='none' for random weights, or a local "
                            "weights file (weights='path/to/file.h5').")
    assert "Downloading data from" not in capsys.readouterr().out  # the error stands alone
    from tlkit.core import errors

    with errors.cli_names({"weights": "--weights"}), pytest.raises(TlkitError) as e:
        backbones.build("mobilenet_v2", (32, 32, 3))
    assert "Use --weights none for random weights, or a local weights file (--weights " \
           "path/to/file.h5)." in str(e.value)


@pytest.mark.parametrize("weights", [None, "none", "random", "None"])
def test_random_weight_spellings(weights):
    assert backbones.build("vgg16", (32, 32, 3), weights=weights).weights is None


def test_missing_weights_file_is_named(tmp_path):
    path = str(tmp_path / "nope.weights.h5")
    with pytest.raises(TlkitError, match="nope.weights.h5"):
        backbones.build("mobilenet_v2", (32, 32, 3), weights=path)


def test_weights_file_round_trip(tmp_path):
    path = str(tmp_path / "mnv2.weights.h5")
    first = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)
    first.model.save_weights(path)
    raw = _raw((32, 32, 3))
    expected = first.model(raw)
    keras.backend.clear_session()
    other = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)
    with pytest.raises(AssertionError):
        _assert_close(other.model(raw), expected)
    second = backbones.build("mobilenet_v2", (32, 32, 3), weights=path)
    assert second.weights == path
    _assert_close(second.model(raw), expected)


def test_weights_file_of_the_bare_application(tmp_path):
    """keras.applications' own files have no preprocessing layers: they still load."""
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    ref = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    new_path = str(tmp_path / "vgg16_app.weights.h5")
    ref.save_weights(new_path)
    legacy_path = str(tmp_path / "vgg16_notop.h5")  # the format of keras' *_notop.h5 files
    with h5py.File(legacy_path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    raw = _raw((32, 32, 3))
    expected = ref(keras.applications.vgg16.preprocess_input(raw.copy()))
    for path in (new_path, legacy_path):
        bb = backbones.build("vgg16", (32, 32, 3), weights=path)
        _assert_close(bb.model(raw), expected)


def test_wrong_weights_file_is_a_user_error(tmp_path, random_init):
    path = str(tmp_path / "vgg.weights.h5")
    random_init("vgg16").model.save_weights(path)  # (32, 32, 3)
    with pytest.raises(TlkitError, match="Could not load weights file .*mobilenet_v2"):
        backbones.build("mobilenet_v2", (32, 32, 3), weights=path)


def test_efficientnet_imagenet_variance_is_folded(tmp_path):
    """keras' ImageNet EfficientNet files store std as the variance (keras adds a Rescaling
    only for weights="imagenet"); from a file, the backbone must still divide by std."""
    bb = backbones.build("efficientnet_b0", (32, 32, 3), weights=None)
    norm = bb.model.get_layer("normalization")
    norm.adapt_mean.assign(np.reshape(backbones.IMAGENET_MEAN_RGB, norm.adapt_mean.shape))
    norm.adapt_variance.assign(np.reshape(backbones.IMAGENET_STD_RGB, norm.adapt_variance.shape))
    path = str(tmp_path / "effb0.weights.h5")
    bb.model.save_weights(path)
    keras.backend.clear_session()
    loaded = backbones.build("efficientnet_b0", (32, 32, 3), weights=path)
    norm = loaded.model.get_layer(loaded.preprocessing_layers[-1])
    raw = _raw((32, 32, 3))
    got = keras.Model(loaded.model.input, norm.output)(raw)
    mean, std = np.array(backbones.IMAGENET_MEAN_RGB), np.array(backbones.IMAGENET_STD_RGB)
    np.testing.assert_allclose(got, (raw / 255.0 - mean) / std, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# input validation


def test_too_small_input():
    with pytest.raises(TlkitError) as e:
        backbones.build("mobilenet_v2", (20, 20, 3), weights=None)
    assert str(e.value) == "Input 20x20 is too small for 'mobilenet_v2': minimum 32x32"
    with pytest.raises(TlkitError, match="minimum 75x75"):
        backbones.build("inception_v3", (64, 64, 3), weights=None)


@pytest.mark.parametrize("shape", [(32, 32, 1), (32, 32, 4)])
def test_applications_need_three_channels(shape):
    with pytest.raises(TlkitError, match="3-channel"):
        backbones.build("mobilenet_v2", shape, weights=None)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 0), (32.0, 32, 3), 32])
def test_malformed_input_shape(shape):
    with pytest.raises(TlkitError, match="height, width, channels"):
        backbones.build("vgg16", shape, weights=None)


@pytest.mark.parametrize("weights", [3, ["imagenet"]])
def test_malformed_weights(weights):
    with pytest.raises(TlkitError, match="weights"):
        backbones.build("vgg16", (32, 32, 3), weights=weights)


# ---------------------------------------------------------------------------------------------
# zoo models as backbones


def test_zoo_backbone():
    bb = backbones.build("zoo:fashion_cnn", (28, 28, 3), weights=None)
    assert bb.source == "zoo" and bb.input_shape == (28, 28, 3)
    assert backbones.build("zoo:fashion_cnn", weights=None).input_shape == (28, 28, 1)
    assert bb.model.name == "zoo_fashion_cnn"
    assert bb.preprocessing_layers == ("preprocess_rescale",)
    assert bb.model.layers[1].name == "preprocess_rescale"
    assert bb.model.output_shape == (None, 6, 6, 64)  # cut at block2_pool, before the head
    assert not any(l.name.startswith(("flatten", "fc", "predictions"))
                   for l in bb.model.layers)
    assert [s.resolution for s in bb.stages] == [(28, 28), (6, 6)]
    assert all(s.params > 0 for s in bb.stages)
    raw = _raw((28, 28, 3))
    conv = bb.model.get_layer("block1_conv")
    first = keras.Model(bb.model.input, conv.output)(raw)
    direct = keras.ops.conv(raw / 255.0, conv.kernel, padding="same")
    _assert_close(first, direct)


def test_zoo_backbone_grayscale_and_too_small():
    bb = backbones.build("zoo:lenet5", (32, 32, 1), weights=None)
    assert bb.model.output_shape == (None, 5, 5, 16)
    with pytest.raises(TlkitError, match="minimum 8x8"):
        backbones.build("zoo:fashion_cnn", (6, 6, 3), weights=None)


def test_zoo_vgg_does_not_allocate_its_fc_head():
    bb = backbones.build("zoo:vgg16", (32, 32, 3), weights=None)
    assert bb.model.count_params() == 14_714_688  # the conv base of VGG16, no FC layers
    assert len(bb.stages) == 5


# ---------------------------------------------------------------------------------------------
# saved classifiers as backbones


def _tiny_base(with_rescale=True, name="tiny_base"):
    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 255, name="preprocess_rescale")(inputs) if with_rescale else inputs
    x = layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(name="p1")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    return keras.Model(inputs, x, name=name)


def _train_and_save(clf, path):
    compile_and_build(clf, "adam", loss="sparse_categorical_crossentropy")
    clf.fit(_raw((32, 32, 3), 16), RNG.integers(0, 3, 16), epochs=2, verbose=0)
    clf.save(path)
    return clf


def test_h5_classifier_with_nested_base(tmp_path):
    base = _tiny_base()
    init = [w.copy() for w in base.get_weights()]
    inputs = keras.Input((32, 32, 3))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    path = str(tmp_path / "clf.h5")
    _train_and_save(keras.Model(inputs, outputs, name="clf"), path)
    trained = base.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(init, trained))
    raw = _raw((32, 32, 3))
    expected = base(raw)
    keras.backend.clear_session()

    bb = backbones.build(path)
    assert bb.source == "file" and bb.name == path and bb.weights == path
    assert bb.model.name == "tiny_base" and bb.input_shape == (32, 32, 3)
    assert bb.model.output_shape == (None, 8, 8, 16)
    for a, b in zip(bb.model.get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    _assert_close(bb.model(raw), expected)
    assert bb.preprocessing_layers == ("preprocess_rescale",)
    assert [s.resolution for s in bb.stages] == [(32, 32), (8, 8)]
    assert backbones.default_input_shape(path) == (32, 32, 3)
    assert backbones.build(path, (32, 32, 3), weights=None).model.name == "tiny_base"
    with pytest.raises(TlkitError, match="expects input 32x32x3"):
        backbones.build(path, (64, 64, 3))
    with pytest.raises(TlkitError, match="holds its own weights"):
        backbones.build(path, weights=path)


def test_h5_flat_classifier_is_cut_below_the_head(tmp_path):
    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)  # not named preprocess_*: found by type
    x = layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = layers.MaxPooling2D(name="p1")(x)
    # A nested block inside (as ConvNeXt has): not the base, the head reads c2.
    x = keras.Sequential([layers.Conv2D(8, 3, padding="same", name="inner_conv")],
                         name="inner_block")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    outputs = layers.Dense(3, activation="softmax", name="predictions")(x)
    path = str(tmp_path / "flat.keras")
    clf = _train_and_save(keras.Model(inputs, outputs, name="flat"), path)
    raw = _raw((32, 32, 3))
    expected = keras.Model(clf.input, clf.get_layer("c2").output)(raw)
    keras.backend.clear_session()
    bb = backbones.build(path)
    assert bb.model.name == "flat_base"
    assert [l.name for l in bb.model.layers][-2:] == ["inner_block", "c2"]
    assert bb.preprocessing_layers == ("scale",)
    _assert_close(bb.model(raw), expected)


def test_h5_classifier_with_layers_before_the_base_is_flattened(tmp_path):
    base = _tiny_base(with_rescale=False)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = layers.RandomFlip(name="augment")(inputs)
    x = layers.Rescaling(1 / 255, name="outer_rescale")(x)
    norm = layers.Normalization(name="outer_norm")
    norm.adapt(_raw((32, 32, 3), 8) / 255.0)  # adapted statistics are variables
    x = norm(x)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    path = str(tmp_path / "outer.h5")
    _train_and_save(keras.Model(inputs, outputs, name="outer"), path)
    raw = _raw((32, 32, 3))
    expected = base(norm(raw / 255.0))
    keras.backend.clear_session()
    bb = backbones.build(path)
    names = [l.name for l in bb.model.layers]
    assert names[:4] == ["pixels", "augment", "outer_rescale", "outer_norm"] and "c2" in names
    assert not any(isinstance(l, keras.Model) for l in bb.model.layers)  # flat
    assert all(len(l._inbound_nodes) == 1 for l in bb.model.layers)
    assert bb.preprocessing_layers == ("outer_rescale", "outer_norm")
    _assert_close(bb.model(raw, training=False), expected)  # RandomFlip is off at inference


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "convnext_tiny"])
def test_h5_classifier_on_a_tlkit_backbone_round_trips(tmp_path, name, random_init):
    """Plain `keras.models.load_model` reads the .h5 (keras' own MobileNetV3 and ConvNeXt do
    not: bare ops and LayerScale), and the file gives the same backbone back."""
    bb = random_init(name)
    assert bb.input_shape == (32, 32, 3)
    inputs = keras.Input((32, 32, 3), name="image")
    x = bb.model(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(2, activation="softmax", name="predictions")(x)
    clf = keras.Model(inputs, outputs)
    path = str(tmp_path / "clf.h5")
    clf.save(path)
    raw = _raw((32, 32, 3))
    expected, probs = bb.model(raw), clf(raw)
    keras.backend.clear_session()
    np.testing.assert_allclose(keras.models.load_model(path, compile=False)(raw), probs,
                               atol=1e-6)
    again = backbones.build(path)
    assert again.model.name == name
    assert again.preprocessing_layers == bb.preprocessing_layers
    assert [s.layers for s in again.stages] == [s.layers for s in bb.stages]
    _assert_close(again.model(raw), expected)


def test_bad_classifier_files(tmp_path):
    with pytest.raises(TlkitError, match="not found"):
        backbones.build(str(tmp_path / "missing.h5"))
    with pytest.raises(TlkitError, match="weights only"):
        backbones.build(str(tmp_path / "x.weights.h5"))
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Dense(2)(layers.Flatten()(inputs))
    path = str(tmp_path / "dense.h5")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(TlkitError, match="no convolutional"):
        backbones.build(path)
    inputs = keras.Input((8,))
    path = str(tmp_path / "vector.h5")
    keras.Model(inputs, layers.Dense(2)(inputs)).save(path)
    with pytest.raises(TlkitError, match="not an image model"):
        backbones.build(path)


def test_channels_note_names_the_model_and_both_channel_counts():
    from tlkit.models.backbones.specs import channels_note

    note = channels_note("zoo:simple_cnn", 3, 1)
    assert "zoo:simple_cnn" in note and "(1 channel)" in note and "(3 channels)" in note
    assert "pretrained backbone (e.g. mobilenet_v2)" in note and "zoo:vgg16" in note
    note = channels_note("zoo:resnet_small", 1, 3)
    assert note.startswith("zoo:resnet_small takes colour images (3 channels) but the data is "
                           "grayscale (1 channel)") and "zoo:simple_cnn" in note
    assert channels_note("gray.h5", 3, 1).startswith("gray.h5 takes grayscale")
    for args in (("mobilenet_v2", 1, 3), ("zoo:simple_cnn", 1, 1), ("zoo:simple_cnn", None, 1)):
        assert channels_note(*args) is None
