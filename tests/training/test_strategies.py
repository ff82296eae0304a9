import keras
import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import matrix, strategies
from tlkit.core.errors import TlkitError


@pytest.fixture(scope="module")
def backbone():
    return backbones.build("mobilenet_v2", (32, 32, 3), weights=None)


def trainable_layer_names(base):
    return {l.name for l in base.layers if l.trainable and l.weights}


def test_phases_of_each_strategy(backbone):
    n = len(backbone.stages)
    p = strategies.plan("small-similar", backbone, epochs=4)
    assert [(ph.name, ph.train_stages, ph.epochs) for ph in p.phases] == [("head", (), 4)]
    p = strategies.plan("large-similar", backbone, epochs=5, learning_rate=1e-3)
    assert [ph.name for ph in p.phases] == ["head", "fine-tune"]
    assert p.phases[0].epochs == 3 and p.phases[1].epochs == 2
    assert p.phases[1].learning_rate == pytest.approx(1e-4)
    assert p.phases[1].train_stages == tuple(range(n - max(1, -(-n // 4)), n))
    p = strategies.plan("small-dissimilar", backbone, epochs=4)
    assert len(p.phases[1].train_stages) == -(-n // 2) > 1
    assert p.head.dropout == 0.5 and p.weight_decay > 0
    assert p.phases[1].learning_rate < 1e-3 / 10
    p = strategies.plan("large-dissimilar", backbone, epochs=3)
    assert p.bn_training and p.phases[0].train_stages == tuple(range(n))


def test_plans_take_their_defaults_from_the_registry(backbone, monkeypatch):
    """A strategy's defaults live in its registry entry: change it, and the plan follows."""
    import dataclasses

    assert strategies.STRATEGIES == tuple(strategies.REGISTRY)
    assert strategies.FINE_TUNING == ("small-dissimilar", "large-similar")
    changed = dataclasses.replace(strategies.REGISTRY["large-similar"], lr_divisor=4,
                                  unfreeze_share=1.0, dropout=0.3, weight_decay=1e-3)
    monkeypatch.setitem(strategies.REGISTRY, "large-similar", changed)
    p = strategies.plan("large-similar", backbone, epochs=4, learning_rate=1e-3)
    assert p.phases[1].learning_rate == pytest.approx(1e-3 / 4)
    assert len(p.phases[1].train_stages) == len(backbone.stages)
    assert p.head.dropout == 0.3 and p.weight_decay == 1e-3
    with pytest.raises(TlkitError, match="large-similar"):
        strategies.get("large-simlar")


def test_overrides(backbone):
    p = strategies.plan("large-similar", backbone, epochs=6, head_epochs=1, unfreeze=2,
                        fine_tune_lr=3e-5, dropout=0.1, dense=(16,))
    assert p.phases[0].epochs == 1 and p.phases[1].epochs == 5
    assert len(p.phases[1].train_stages) == 2 and p.phases[1].learning_rate == 3e-5
    assert p.head.dropout == 0.1 and p.head.dense == (16,)


def test_apply_freezes_by_stage(backbone):
    n = len(backbone.stages)
    p = strategies.plan("large-similar", backbone, epochs=2, unfreeze=1)
    model = p.build_model(3)
    base = p.base_of(model)
    p.apply(model, 0)
    assert trainable_layer_names(base) == set()
    assert {w.path for w in model.trainable_weights} and all(
        "predictions" in w.path or "head" in w.path for w in model.trainable_weights)
    p.apply(model, 1)
    last = set(backbone.stages[n - 1].layers)
    expected = {l for l in last if base.get_layer(l).weights
                and not isinstance(base.get_layer(l), keras.layers.BatchNormalization)}
    assert expected and trainable_layer_names(base) == expected
    for name in backbone.preprocessing_layers:
        assert not base.get_layer(name).trainable


def test_large_dissimilar_trains_everything_but_preprocessing(backbone):
    p = strategies.plan("large-dissimilar", backbone, epochs=1)
    model = p.build_model(3)
    p.apply(model, 0)
    base = p.base_of(model)
    weighted = {l.name for l in base.layers if l.weights} - set(backbone.preprocessing_layers)
    assert trainable_layer_names(base) == weighted


def test_frozen_bn_in_inference_mode(backbone):
    """Calling the classifier in training mode leaves the base's BN statistics alone."""
    p = strategies.plan("large-similar", backbone, epochs=2)
    model = p.build_model(3)
    p.apply(model, 1)
    bn = [l for l in p.base_of(model).layers if isinstance(l, keras.layers.BatchNormalization)]
    before = [l.moving_mean.numpy().copy() for l in bn]
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model(x, training=True)
    assert all(np.array_equal(b, l.moving_mean.numpy()) for b, l in zip(before, bn))
    p2 = strategies.plan("large-dissimilar", backbone, epochs=1)
    m2 = p2.build_model(3)
    p2.apply(m2, 0)
    bn2 = [l for l in p2.base_of(m2).layers if isinstance(l, keras.layers.BatchNormalization)]
    before = [l.moving_mean.numpy().copy() for l in bn2]
    m2(x, training=True)
    assert any(not np.array_equal(b, l.moving_mean.numpy()) for b, l in zip(before, bn2))


def test_cut_stage(backbone):
    p = strategies.plan("small-dissimilar", backbone, epochs=2, cut_stage=2)
    model = p.build_model(4)
    assert model.output_shape == (None, 4)
    base = p.base_of(model)
    assert base.output.shape[1] == backbone.stages[2].resolution[0]
    p.apply(model, 1)


def test_matrix_and_format(backbone):
    rows = matrix.matrix(backbone, num_classes=5, epochs=4)
    assert [r["strategy"] for r in rows] == ["small-similar", "small-dissimilar",
                                             "small-dissimilar", "large-similar",
                                             "large-similar", "large-dissimilar"]
    total = rows[0]["trainable_params"] + rows[0]["frozen_params"]
    assert rows[0]["trainable_params"] == 1280 * 5 + 5
    assert rows[-1]["frozen_params"] == 0 or rows[-1]["frozen_params"] < rows[1]["frozen_params"]
    assert all(r["trainable_params"] + r["frozen_params"] == total for r in rows)
    text = matrix.format_matrix(backbone, rows)
    for s in strategies.STRATEGIES:
        assert s in text
    assert "head only" in text


@pytest.mark.parametrize("kwargs,match", [
    ({"strategy": "small-similiar"}, "Did you mean small-similar"),
    ({"strategy": "large-similar", "unfreeze": 99}, "unfreeze=99 is out of range"),
    ({"strategy": "large-similar", "cut_stage": 1}, "small-dissimilar only"),
    ({"strategy": "small-dissimilar", "cut_stage": 99}, "cut_stage=99 is out of range"),
    ({"strategy": "large-similar", "epochs": 1}, "epochs must be >= 2"),
    ({"strategy": "small-similar", "epochs": 0}, "epochs must be a positive int"),
    ({"strategy": "small-similar", "head_bn": "middle"}, "head_bn='middle'"),
])
def test_bad_input(backbone, kwargs, match):
    strategy = kwargs.pop("strategy")
    with pytest.raises(TlkitError, match=match):
        strategies.plan(strategy, backbone, **kwargs)
