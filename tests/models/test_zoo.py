import math

import keras
import numpy as np
import pytest

from model_helpers import one_training_step, random_batch
from process_helpers import predict_in_fresh_process
from tlkit.models import zoo
from tlkit.core.errors import TlkitError

# Published parameter counts at the published input sizes, BN off.
PUBLISHED = {
    ("vgg16", (224, 224, 3), 1000): 138_357_544,
    ("vgg19", (224, 224, 3), 1000): 143_667_240,
    ("alexnet", (224, 224, 3), 1000): 61_100_840,
    ("lenet5", (32, 32, 1), 10): 61_706,
}
HEAVY = {"alexnet", "alexnet_bn", "vgg16", "vgg19"}


@pytest.mark.parametrize("key", list(PUBLISHED), ids=lambda k: k[0])
def test_published_parameter_counts(key):
    name, shape, classes = key
    model = zoo.build(name, shape, classes, **({"bn": "none"} if name.startswith("vgg") else {}))
    assert model.count_params() == PUBLISHED[key]
    keras.backend.clear_session(free_memory=True)


def test_vgg_matches_keras_applications():
    ours = zoo.build("vgg16")
    ref = keras.applications.VGG16(weights=None)
    assert ours.count_params() == ref.count_params()
    ref_names = [l.name for l in ref.layers if l.weights]
    assert ref_names == [l.name for l in ours.layers if l.weights]


def test_names_and_registry():
    assert set(zoo.names()) >= {"lenet5", "alexnet", "alexnet_bn", "vgg16", "vgg19",
                                "fashion_cnn", "simple_cnn", "inception_net", "resnet_small"}

    @zoo.register("tiny_test_net", input_shape=(8, 8, 1), num_classes=2, min_size=4,
                  description="test")
    def _tiny(x, num_classes):
        x = keras.layers.Flatten()(x)
        return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)

    try:
        assert "tiny_test_net" in zoo.names()
        assert zoo.build("tiny_test_net").output_shape == (None, 2)
    finally:
        zoo._REGISTRY.pop("tiny_test_net")


@pytest.mark.parametrize("name", zoo.names())
def test_every_model_trains_one_step(name):
    e = zoo.entry(name)
    size = max(e.min_size, 32)
    options = {"fc": (32, 32)} if name in HEAVY else {}
    model = zoo.build(name, (size, size, 3), 3, **options)
    assert isinstance(model, keras.Model) and model.name == name
    assert not any(isinstance(l, keras.layers.Lambda) for l in model.layers)
    assert all(l.__module__.startswith("keras.") for l in model.layers)
    assert model.output_shape == (None, 3)
    before = [w.copy() for w in model.get_weights()]
    loss = one_training_step(model, 3)
    assert math.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    keras.backend.clear_session(free_memory=True)


@pytest.mark.parametrize("name", ["fashion_cnn", "lenet5", "resnet_small"])
def test_other_shapes_and_binary(name):
    model = zoo.build(name, (40, 36, 1), 1)
    assert model.output_shape == (None, 1)
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"


def test_alexnet_adaptive_pool_any_size():
    assert zoo.build("alexnet", (100, 100, 3), 4, fc=(8, 8)).get_layer("flatten").output.shape[1] == 6 * 6 * 256
    assert zoo.build("alexnet", (63, 63, 3), 4, fc=(8, 8)).output_shape == (None, 4)
    assert zoo.build("alexnet", (160, 160, 3), 4, fc=(8, 8)).get_layer("flatten").output.shape[1] == 6 * 6 * 256


@pytest.mark.parametrize("bn", ["before", "after", "none"])
def test_vgg_bn_options(bn):
    m = zoo.build("vgg19", (32, 32, 3), 10, bn=bn, block_dropout=0.1, fc=(16, 16))
    has_bn = any(isinstance(l, keras.layers.BatchNormalization) for l in m.layers)
    assert has_bn == (bn != "none")
    assert len([l for l in m.layers if isinstance(l, keras.layers.Conv2D)]) == 16


def test_unknown_model_lists_valid_names():
    with pytest.raises(TlkitError, match="Did you mean .*vgg16.*Valid:.*lenet5"):
        zoo.build("vgg61")


def test_too_small_input_says_minimum():
    with pytest.raises(TlkitError, match="minimum is 63x63"):
        zoo.build("alexnet", (40, 40, 3), 10)


def test_unknown_option_and_bad_bn():
    with pytest.raises(TlkitError, match="Unknown option.*colour.*Valid: bn"):
        zoo.build("fashion_cnn", colour=True)
    with pytest.raises(TlkitError, match="bn='yes'"):
        zoo.build("fashion_cnn", bn="yes")


def test_h5_round_trip_in_fresh_process(tmp_path):
    model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    one_training_step(model, 10, n=8)  # non-trivial BN statistics
    path = tmp_path / "fashion_cnn.h5"
    model.save(path)
    x, _ = random_batch((28, 28, 1), 10, n=6, seed=1)
    expected = model.predict(x, verbose=0)
    got, tlkit_imported = predict_in_fresh_process(path, x, tmp_path)
    assert not tlkit_imported
    np.testing.assert_array_equal(got, expected)
