"""Per-stage learning rates: lower stages get smaller updates, by the factor asked for."""

import keras
import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import optimizers, phases, strategies
from tlkit.core.errors import TlkitError


def stage_updates(decay, tiny_digits):
    """Mean |update| per stage after one Adam step of large-dissimilar, same start."""
    keras.utils.set_random_seed(0)
    bb = backbones.build("zoo:resnet_small", (32, 32, 3), weights=None)
    p = strategies.plan("large-dissimilar", bb, epochs=1)
    model = p.build_model(tiny_digits.num_classes)
    p.apply(model, p.phases[0])
    mult = optimizers.stage_multipliers(p, p.phases[0], model, decay)
    phases.compile_phase(model, p, p.phases[0], multipliers=mult)
    base = p.base_of(model)
    kernels = {s.index: [base.get_layer(n).kernel for n in s.layers
                         if hasattr(base.get_layer(n), "kernel")] for s in bb.stages}
    before = {k: [v.numpy().copy() for v in vs] for k, vs in kernels.items()}
    model.train_on_batch(np.asarray(tiny_digits.x_train[:16], "float32"),
                         tiny_digits.y_train[:16])
    return {k: np.mean([np.abs(v.numpy() - b).mean() for v, b in zip(kernels[k], before[k])])
            for k in kernels}, len(bb.stages)


def test_lower_stages_get_smaller_updates(tiny_digits):
    plain, n = stage_updates(1.0, tiny_digits)
    decayed, _ = stage_updates(0.5, tiny_digits)
    top = n - 1
    for k in range(n):
        # Adam's first step is about lr x sign(gradient): the ratio is the multiplier.
        assert decayed[k] / plain[k] == pytest.approx(0.5 ** (top - k), rel=0.05)
    assert decayed[0] < decayed[top]


def test_multipliers_cover_the_trained_stages_only():
    bb = backbones.build("zoo:resnet_small", (32, 32, 3), weights=None)
    p = strategies.plan("large-similar", bb, epochs=2, unfreeze=2)
    model = p.build_model(3)
    mult = optimizers.stage_multipliers(p, p.phases[1], model, 0.1)
    assert sorted({round(m, 6) for _, m in mult}) == [0.1, 1.0]
    assert optimizers.stage_multipliers(p, p.phases[0], model, 0.1) == []  # the head phase
    assert type(optimizers.make(1e-3, multipliers=mult)).__name__ == "StageRatesAdam"


@pytest.mark.parametrize("bad", [0, 1.5, -0.1])
def test_bad_decay(bad):
    with pytest.raises(TlkitError, match=r"--lr-decay-per-stage must be a number in \(0, 1\]"):
        optimizers.check_decay(bad)
