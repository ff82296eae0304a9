"""The learning-rate finder: a sweep that leaves the model bit-identical, files, the rule."""

import json

import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import lr_sweep as lr_finder, strategies
from tlkit.core.errors import TlkitError


def layers(model):
    return lr_finder._layers(model)


@pytest.mark.parametrize("strategy", ["small-similar", "large-dissimilar"])
def test_sweep_leaves_the_model_bit_identical(strategy, tiny_digits, tmp_path):
    # small-similar sweeps the head on cached features; large-dissimilar the whole network
    # on images, BatchNormalization statistics moving.
    bb = backbones.build("zoo:resnet_small", (32, 32, 3), weights=None)
    p = strategies.plan(strategy, bb, epochs=1)
    model = p.build_model(tiny_digits.num_classes)
    before = [w.copy() for w in model.get_weights()]
    flags = [layer.trainable for layer in layers(model)]
    r = lr_finder.sweep(model, p, tiny_digits, steps=30, batch_size=16, out_dir=tmp_path)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert [layer.trainable for layer in layers(model)] == flags
    assert getattr(model, "optimizer", None) is None  # never compiled by the sweep
    assert len(r.losses) >= 10 and np.std(r.losses) > 0  # it did train while sweeping
    assert r.lrs == sorted(r.lrs) and r.min_lr <= r.suggested_lr <= r.max_lr
    doc = json.loads((tmp_path / "lr_find.json").read_text())
    assert any("suggest" in k for k in doc) and doc["suggested_lr"] == r.suggested_lr
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000


def test_valley_rule_on_a_known_curve():
    lrs = np.logspace(-6, 0, 120)
    x = np.log10(lrs)
    losses = 2.5 - 2 * (np.tanh(2 * (x + 3.5)) + 1) / 2 + np.where(x > -1.5, 3 * (x + 1.5), 0)
    s, lowest, _ = lr_finder.suggest(lrs, losses, window=1)
    assert 1e-4 < s < 1e-3 < lowest  # well into the fall, before the minimum


@pytest.mark.parametrize("kwargs,match", [
    ({"min_lr": 1.0, "max_lr": 0.1, "steps": 100}, "--min-lr must be below --max-lr"),
    ({"min_lr": 0, "max_lr": 1.0, "steps": 100}, "--min-lr must be a finite number > 0"),
    ({"min_lr": 1e-6, "max_lr": 1.0, "steps": 3}, "--steps must be an integer >= 10"),
])
def test_bad_range(kwargs, match):
    with pytest.raises(TlkitError, match=match):
        lr_finder.check_range(**kwargs)


def test_cli_strategy_choices_leave_out_auto(capsys):
    from cli_helpers import run_cli

    code, out, _ = run_cli(capsys, "lr-find", "--help")
    assert code == 0
    offered = out.split("--strategy {", 1)[1].split("}", 1)[0].split(",")
    assert offered == list(strategies.STRATEGIES) and "auto" not in offered
    code, out, err = run_cli(capsys, "lr-find", "--data", "digits", "--strategy", "auto")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'auto'" in err
