import keras
import pytest

from tlkit.models import blocks
from tlkit.models.blocks import (classifier_head, conv_bn_act, inception_block, residual_block,
                                 vgg_block)
from tlkit.core.errors import TlkitError


def layer_types(model):
    return [type(l).__name__ for l in model.layers[1:]]


def model_of(fn, input_shape=(16, 16, 3), **kw):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, fn(inputs, **kw))


@pytest.mark.parametrize("bn,expected", [
    ("before", ["Conv2D", "BatchNormalization", "Activation"]),
    ("after", ["Conv2D", "Activation", "BatchNormalization"]),
    ("none", ["Conv2D", "Activation"]),
])
def test_conv_bn_act_order(bn, expected):
    m = model_of(lambda x: conv_bn_act(x, 4, 3, bn=bn, name="stem"))
    assert layer_types(m) == expected
    assert m.layers[1].name == "stem_conv"
    assert m.layers[1].use_bias == (bn != "before")


@pytest.mark.parametrize("bn,per_layer", [
    ("before", ["Conv2D", "BatchNormalization", "Activation"]),
    ("after", ["Conv2D", "Activation", "BatchNormalization"]),
    ("none", ["Conv2D", "Activation"]),
])
def test_vgg_block_order_and_names(bn, per_layer):
    m = model_of(lambda x: vgg_block(x, 8, 2, bn=bn, dropout=0.25, name="block3"))
    assert layer_types(m) == per_layer * 2 + ["MaxPooling2D", "Dropout"]
    names = [l.name for l in m.layers[1:]]
    assert names[0] == "block3_conv1" and "block3_conv2" in names and names[-2] == "block3_pool"
    if bn != "none":
        assert "block3_bn2" in names
    assert m.output_shape == (None, 8, 8, 8)
    assert m.get_layer("block3_pool").pool_size == (2, 2)
    assert m.get_layer("block3_pool").strides == (2, 2)
    assert m.get_layer("block3_conv1").kernel_size == (3, 3)


def test_vgg_block_accepts_seed_call_order():
    inputs = keras.Input((16, 16, 3))
    y = vgg_block(64, 2, inputs)  # the seeds' order
    assert tuple(y.shape) == (None, 8, 8, 64)


def test_vgg_block_bad_call_shows_right_signature():
    with pytest.raises(TlkitError, match=r"vgg_block\(x, n_filters, n_layers"):
        vgg_block(64, 2, 3)


@pytest.mark.parametrize("fn", [
    lambda x: conv_bn_act(x, 4, 3, bn="middle"),
    lambda x: vgg_block(x, 4, 1, bn="middle"),
    lambda x: residual_block(x, 4, bn="middle"),
    lambda x: inception_block(x, bn="middle"),
    lambda x: classifier_head(x, 3, bn="middle"),
])
def test_bad_bn_names_argument_and_valid_values(fn):
    with pytest.raises(TlkitError, match=r"bn='middle'.*'before', 'after', 'none'"):
        fn(keras.Input((8, 8, 3)))


def test_inception_block_branches():
    m = model_of(lambda x: inception_block(x, 8, 4, 12, 4, 16, 6, name="mixed0"))
    assert m.output_shape == (None, 16, 16, 8 + 12 + 16 + 6)
    assert m.get_layer("mixed0_5x5_conv").kernel_size == (5, 5)
    assert m.get_layer("mixed0_5x5_reduce_conv").kernel_size == (1, 1)
    assert m.get_layer("mixed0_3x3b_conv").kernel_size == (3, 3)
    assert isinstance(m.get_layer("mixed0_pool"), keras.layers.AveragePooling2D)
    concat = m.get_layer("mixed0_concat")
    assert len(concat.input) == 4


def test_residual_block_identity_and_projection():
    ident = model_of(lambda x: residual_block(x, 3, name="r"), (8, 8, 3))
    assert ident.output_shape == (None, 8, 8, 3)
    assert not any(l.name.startswith("r_proj") for l in ident.layers)
    proj = model_of(lambda x: residual_block(x, 6, strides=2, name="p"), (8, 8, 3))
    assert proj.output_shape == (None, 4, 4, 6)
    assert proj.get_layer("p_proj_conv").kernel_size == (1, 1)
    assert proj.get_layer("p_proj_conv").strides == (2, 2)
    assert isinstance(proj.get_layer("p_add"), keras.layers.Add)


@pytest.mark.parametrize("bn", blocks.BN_PLACEMENTS)
def test_residual_block_bn(bn):
    m = model_of(lambda x: residual_block(x, 4, bn=bn, name="r"), (8, 8, 4))
    has_bn = any(isinstance(l, keras.layers.BatchNormalization) for l in m.layers)
    assert has_bn == (bn != "none")


def test_classifier_head_softmax_and_sigmoid():
    m = model_of(lambda x: classifier_head(x, 5, dense=(16, 8), dropout=0.3, bn="before"), (4, 4, 8))
    assert m.output_shape == (None, 5)
    assert m.get_layer("predictions").activation.__name__ == "softmax"
    assert isinstance(m.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    assert isinstance(m.get_layer("head_bn2"), keras.layers.BatchNormalization)
    types = layer_types(m)
    assert types.count("Dropout") == 3
    b = model_of(lambda x: classifier_head(x, 1, pooling="flatten"), (4, 4, 8))
    assert b.get_layer("predictions").activation.__name__ == "sigmoid"
    assert isinstance(b.get_layer("head_flatten"), keras.layers.Flatten)


def test_classifier_head_bad_pooling():
    with pytest.raises(TlkitError, match="pooling='mean'"):
        classifier_head(keras.Input((4, 4, 8)), 3, pooling="mean")
