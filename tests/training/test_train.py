import keras
import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import frozen, strategies, train


@pytest.fixture(scope="module")
def backbone():
    return backbones.build("mobilenet_v2", (32, 32, 3), weights=None)


def base_state(base):
    """{variable path: value} of every base variable, BN moving statistics included."""
    return {v.path: v.numpy().copy() for v in base.weights}


def changed(before, after):
    return {k for k in before if not np.array_equal(before[k], after[k])}


def layer_of(path):
    return path.split("/")[-2]


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
def test_small_similar_changes_only_the_head(backbone, tiny_digits, cache):
    p = strategies.plan("small-similar", backbone, epochs=2)
    model = p.build_model(tiny_digits.num_classes)
    base = p.base_of(model)
    before = base_state(base)
    head_before = model.get_layer("predictions").get_weights()[0].copy()
    result = train.fit(p, tiny_digits, model=model, cache_features=cache, augment=False,
                       verbose=0)
    assert changed(before, base_state(base)) == set()
    assert not np.array_equal(head_before, model.get_layer("predictions").get_weights()[0])
    assert len(result.history["loss"]) == 2 and result.history["phase"] == ["head", "head"]
    assert result.info["phases"][0]["cached"] is cache


@pytest.fixture(scope="module")
def seeded_small_similar(backbone, tiny_digits):
    """Two small-similar runs with seed 3, back to back (the base is shared and other tests
    train it), on cached features."""
    def run():
        p = strategies.plan("small-similar", backbone, epochs=2)
        return train.fit(p, tiny_digits, augment=False, seed=3, verbose=0)

    return run(), run()


def test_seed_repeats(seeded_small_similar):
    first, second = seeded_small_similar
    np.testing.assert_allclose(first.history["loss"], second.history["loss"], rtol=1e-5)


def test_cached_head_equals_full_model(seeded_small_similar, tiny_digits):
    model = seeded_small_similar[0].model
    assert seeded_small_similar[0].info["phases"][0]["cached"] is True
    feats = frozen.extract_features(model, tiny_digits.x_test, verbose=0)
    head = frozen.head_model(model)
    np.testing.assert_allclose(head.predict(feats, verbose=0),
                               model.predict(tiny_digits.x_test.astype("float32"), verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_cache_with_augmented_passes(backbone, tiny_digits):
    p = strategies.plan("small-similar", backbone, epochs=1)
    result = train.fit(p, tiny_digits, augment=True, augment_passes=3, verbose=0)
    assert result.info["cache"]["train_features"][0] == 3 * len(tiny_digits.y_train)


class BaseStateAtTrainBegin(keras.callbacks.Callback):
    """Records `base_state(base)` at the start and the end of every phase's `fit`."""

    def __init__(self, base):
        super().__init__()
        self.base, self.states, self.ends = base, [], []

    def on_train_begin(self, logs=None):
        self.states.append(base_state(self.base))

    def on_train_end(self, logs=None):
        self.ends.append(base_state(self.base))


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
def test_large_similar_phase2_changes_only_unfrozen_stages(backbone, tiny_digits, cache):
    p = strategies.plan("large-similar", backbone, epochs=2, unfreeze=1)
    model = p.build_model(tiny_digits.num_classes)
    base = p.base_of(model)
    at_start = BaseStateAtTrainBegin(base)
    result = train.fit(p, tiny_digits, model=model, epochs=None, augment=False,
                       cache_features=cache, callbacks=[at_start], verbose=0)
    # Without augmentation the frozen stages below the fine-tuned one are cached too.
    assert [ph["cached"] for ph in result.info["phases"]] == [cache, cache]
    assert len(at_start.states) == 2
    # Phase 1 is head-only: the base is untouched until phase 2 starts.
    assert changed(at_start.states[0], at_start.states[1]) == set()
    # (at the end of phase 2: the final model may be the head phase's, if its val_loss won)
    diff = changed(at_start.states[1], at_start.ends[1])
    unfrozen = set(backbone.stages[-1].layers)
    assert diff, "the unfrozen stage did not train"
    assert {layer_of(k) for k in diff} <= unfrozen
    # BN moving statistics stay put even in the unfrozen stage (inference mode).
    assert not any("moving_" in k for k in diff)


def test_large_dissimilar_trains_bn_statistics(backbone, tiny_digits):
    p = strategies.plan("large-dissimilar", backbone, epochs=1)
    model = p.build_model(tiny_digits.num_classes)
    base = p.base_of(model)
    before = base_state(base)
    train.fit(p, tiny_digits, model=model, augment=False, verbose=0)
    diff = changed(before, base_state(base))
    assert any("moving_mean" in k for k in diff)
    assert not any(layer_of(k) in backbone.preprocessing_layers for k in diff)


def test_small_dissimilar_runs_with_files(backbone, tiny_digits, tmp_path):
    p = strategies.plan("small-dissimilar", backbone, epochs=2)
    result = train.fit(p, tiny_digits, out_dir=tmp_path, augment=True, verbose=0)
    assert [ph["name"] for ph in result.info["phases"]] == ["head", "fine-tune"]
    # With live augmentation only the head phase runs on cached features: the fine-tune
    # phase's frozen stages are not cached (without augmentation they are, see above).
    assert [ph["cached"] for ph in result.info["phases"]] == [True, False]
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    assert isinstance(result.model.optimizer, keras.optimizers.AdamW)


@pytest.fixture(scope="module")
def resnet50():
    return backbones.build("resnet50", (32, 32, 3), weights=None)


@pytest.mark.parametrize("name", ["backbone", "resnet50"], ids=["mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("unfreeze", [1, 2])
def test_frozen_prefix_split_equals_full_model(name, unfreeze, tiny_digits, request):
    bb = request.getfixturevalue(name)  # MobileNetV2 or ResNet50 at 32x32
    p = strategies.plan("large-similar", bb, epochs=2, unfreeze=unfreeze)
    model = p.build_model(tiny_digits.num_classes)
    p.apply(model, p.phases[1])
    extractor, trainer = frozen.frozen_prefix_split(model)
    # Everything below the cut is frozen; every trainable weight is above it.
    assert not extractor.trainable_weights
    assert {v.path for v in trainer.trainable_weights} == {
        v.path for v in model.trainable_weights}
    x = tiny_digits.x_test[:16].astype("float32")
    np.testing.assert_allclose(trainer.predict(extractor.predict(x, verbose=0), verbose=0),
                               model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_frozen_prefix_split_refuses_a_cut_inside_a_residual_block(resnet50, tiny_digits):
    p = strategies.plan("large-similar", resnet50, epochs=2, unfreeze=1)
    model = p.build_model(tiny_digits.num_classes)
    base = p.base_of(model)
    base.trainable = False
    base.get_layer("conv5_block1_2_conv").trainable = True  # its block's shortcut reads below
    assert frozen.frozen_prefix_split(model) is None


def test_best_val_loss_across_phases_is_the_final_model():
    """A fine-tuning phase that ends worse than the head phase: the head phase's weights win."""
    from tlkit.training.train import _Best

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    head_weights = [w.copy() for w in model.get_weights()]
    records = [{"phase": "head", "epoch": 1, "phase_epoch": 1, "val_loss": 0.9},
               {"phase": "head", "epoch": 2, "phase_epoch": 2, "val_loss": 0.5}]
    best = _Best()
    best.phase_ended(model, "head", records)
    model.set_weights([w + 1 for w in head_weights])  # what fine-tuning left
    records += [{"phase": "fine-tune", "epoch": 3, "phase_epoch": 1, "val_loss": 0.7}]
    best.phase_ended(model, "fine-tune", records)
    assert best.restore(model, verbose=0) == {"phase": "head", "epoch": 2, "phase_epoch": 2,
                                              "val_loss": 0.5, "restored": True}
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), head_weights))


def test_fit_reports_the_best_epoch(backbone, tiny_digits):
    p = strategies.plan("large-similar", backbone, epochs=2)
    result = train.fit(p, tiny_digits, augment=False, verbose=0)
    best = result.info["best"]
    losses = result.history["val_loss"]
    assert best["val_loss"] == pytest.approx(min(losses))
    assert result.history["phase"][best["epoch"] - 1] == best["phase"]
    assert result.info["settings"]["schedule"] == "constant"  # the measured default
