"""Training targets and class weights: they change training only, as they say."""

import dataclasses

import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import class_weights, mixing, strategies, train
from tlkit.core.errors import TlkitError
from tlkit.training.train_settings import TrainSettings


def batches(n=8, classes=4):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 6, 6, 1)).astype("float32")
    return x, np.arange(n) % classes


def test_mixup_changes_training_batches_only():
    import tensorflow as tf

    x, y = batches()
    t = mixing.Targets(4, mixup=0.4, seed=1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    (xt, yt), = list(t.train(ds))
    (xv, yv), = list(t.val(ds))
    np.testing.assert_array_equal(xv.numpy(), x)  # validation: the images as they were
    np.testing.assert_array_equal(yv.numpy(), np.eye(4)[y])  # and exact one-hot labels
    assert not np.allclose(xt.numpy(), x)  # training: blended images
    assert np.allclose(yt.numpy().sum(axis=1), 1) and (yt.numpy().max(axis=1) < 1).any()


def test_cutmix_mixes_labels_by_the_pasted_area():
    # Image i is filled with the value i and is the only image of class i: after cutmix, the
    # share of its pixels still equal to i must be its label's weight.
    x = np.broadcast_to(np.arange(8, dtype="float32")[:, None, None, None], (8, 6, 6, 1))
    xt, yt = mixing.Targets(8, cutmix=1.0, seed=3)(x.copy(), np.arange(8))
    xt, yt = xt.numpy(), yt.numpy()
    own = (xt == np.arange(8)[:, None, None, None]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(yt[np.arange(8), np.arange(8)], own, atol=1e-6)
    assert (own < 1).any() and np.allclose(yt.sum(axis=1), 1)


def test_label_smoothing_and_bad_values():
    _, t = mixing.Targets(4, label_smoothing=0.2)(*batches())
    assert np.allclose(t.numpy().max(axis=1), 0.85) and np.allclose(t.numpy().min(axis=1), 0.05)
    with pytest.raises(TlkitError, match=r"--label-smoothing must be a number in \[0, 1\)"):
        TrainSettings(label_smoothing=1.0)
    with pytest.raises(TlkitError, match="--mixup"):
        TrainSettings(mixup=-1)


def test_class_weight_mapping_and_unknown_names():
    y = np.array([0, 0, 0, 1])
    assert class_weights.resolve("balanced", ["cat", "dog"], y) == {0: 0.6667, 1: 2.0}
    assert class_weights.resolve("dog=2", ["cat", "dog"], y) == {0: 1.0, 1: 2.0}
    with pytest.raises(TlkitError, match="unknown class.*cow; the classes are: cat, dog"):
        class_weights.resolve("cow=2", ["cat", "dog"], y)
    with pytest.raises(TlkitError, match="--class-weight must be balanced or a mapping"):
        class_weights.parse("cat:2")


@pytest.fixture(scope="module")
def imbalanced(tiny_digits):
    two = tiny_digits.select(classes=[0, 1])
    keep = np.concatenate([np.flatnonzero(two.y_train == 0),
                           np.flatnonzero(two.y_train == 1)[:3]])
    return dataclasses.replace(two, x_train=two.x_train[keep], y_train=two.y_train[keep])


@pytest.fixture(scope="module")
def backbone():
    return backbones.build("zoo:resnet_small", (32, 32, 3), weights=None)


def head_run(backbone, ds, settings):
    p = strategies.plan("small-similar", backbone, epochs=1)
    return train.fit(p, ds, settings=settings, augment=False, verbose=0)


def test_class_weights_change_the_training_loss(backbone, imbalanced):
    plain = head_run(backbone, imbalanced, TrainSettings(schedule="constant"))
    weighted = head_run(backbone, imbalanced,
                        TrainSettings(schedule="constant", class_weight="balanced"))
    assert weighted.info["class_weight"] == {"0": 0.625, "1": 2.5}
    assert not np.isclose(plain.history["loss"][0], weighted.history["loss"][0], rtol=1e-3)


def test_val_loss_stays_the_plain_cross_entropy(backbone, tiny_digits):
    """Smoothed, mixed training targets; validation keeps the exact labels."""
    res = head_run(backbone, tiny_digits,
                   TrainSettings(schedule="constant", label_smoothing=0.3, mixup=0.4))
    probs = res.model.predict(np.asarray(tiny_digits.x_val, "float32"), verbose=0)
    ce = -np.mean(np.log(probs[np.arange(len(probs)), tiny_digits.y_val]))
    assert res.history["val_loss"][0] == pytest.approx(ce, rel=1e-4)
    assert res.history["loss"][0] > res.history["val_loss"][0] * 0.5  # trained on soft targets
