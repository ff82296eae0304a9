"""tlkit.training.phases: the one compile (`compile_classifier`) and the runners' options."""

import keras
import numpy as np
import pytest

from tlkit.training import phases


def _tiny():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def test_compile_classifier_builds_the_optimizer_and_names_accuracy():
    model = phases.compile_classifier(_tiny(), keras.optimizers.Adam(1e-3))
    assert model.optimizer.built
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    h = model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), epochs=1, verbose=0)
    assert sorted(h.history) == ["accuracy", "loss"]


def test_compile_classifier_one_hot_and_loss_only():
    model = phases.compile_classifier(_tiny(), keras.optimizers.SGD(0.1), one_hot=True)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    model = phases.compile_classifier(_tiny(), keras.optimizers.SGD(0.1), metrics=False)
    h = model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), epochs=1, verbose=0)
    assert sorted(h.history) == ["loss"]


def test_options_fill_defaults_reject_unknown_names_and_are_frozen():
    import dataclasses

    o = phases.PhaseOptions(batch_size=8, keras_batches=True)
    assert o.batch_size == 8 and o.keras_batches and o.suited_momentum
    with pytest.raises(TypeError, match="batchsize"):
        phases.PhaseOptions(batchsize=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.batch_size = 16
