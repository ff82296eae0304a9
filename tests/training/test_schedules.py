"""Learning-rate schedules: the expected rates at given steps, warm-up only when fine-tuning."""

import pytest

from tlkit.training import schedules
from tlkit.core.errors import TlkitError


def rates(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_constant_is_the_rate():
    assert schedules.make("constant", 3e-4, total_steps=50) == 3e-4


def test_cosine_with_warmup_at_given_steps():
    s = schedules.make("cosine", 1e-3, total_steps=110, warmup_steps=10)
    got = rates(s, [0, 5, 10, 60, 110])
    assert got == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0], abs=1e-9)


def test_cosine_without_warmup_halfway_is_half():
    s = schedules.make("cosine", 2e-3, total_steps=100)
    assert rates(s, [0, 50, 100]) == pytest.approx([2e-3, 1e-3, 0.0], abs=1e-9)


def test_onecycle_rises_then_anneals():
    s = schedules.make("onecycle", 1e-3, total_steps=100)
    start, peak, mid, end = rates(s, [0, 30, 65, 100])
    assert start == pytest.approx(1e-3 / 25)
    assert peak == pytest.approx(1e-3)
    assert mid == pytest.approx(0.5e-3, rel=1e-3)  # half-way through the cosine half
    assert end == pytest.approx(1e-3 / 25 / 1e4, rel=1e-3)


def test_warmup_only_in_fine_tuning_phases():
    head = schedules.for_phase("cosine", 1e-3, epochs=2, steps_per_epoch=10, fine_tuning=False)
    tune = schedules.for_phase("cosine", 1e-3, epochs=2, steps_per_epoch=10, fine_tuning=True,
                               warmup=0.1)
    assert float(head(0)) == pytest.approx(1e-3)
    assert float(tune(0)) == 0.0 and float(tune(2)) == pytest.approx(1e-3)


@pytest.mark.parametrize("kwargs,match", [
    ({"schedule": "linear"}, "--schedule must be one of constant, cosine, onecycle"),
    ({"schedule": "cosine", "warmup": 1.0}, "--warmup"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(TlkitError, match=match):
        schedules.check(**kwargs)
