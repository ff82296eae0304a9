"""The finish step's reuse of what training already computed."""

import dataclasses

import pytest

from model_helpers import finetune_tiny
from tlkit import data as data_lib
from tlkit.calibrate import run as calibrate_run


def test_a_cached_head_hands_its_validation_probabilities_to_calibration(tiny_digits,
                                                                          monkeypatch):
    """small-similar: calibration fits T on the head's own validation probabilities (no
    forward pass over the validation images), and gets what a pass would give."""
    seen = []
    real = data_lib.predict_labelled

    def spy(model, x, y, **kw):
        seen.append(len(y))
        return real(model, x, y, **kw)

    monkeypatch.setattr(data_lib, "predict_labelled", spy)
    ds = tiny_digits.select(per_class=12, eval_per_class=3, seed=0)
    ds = dataclasses.replace(ds, x_test=ds.x_test[:25], y_test=ds.y_test[:25])  # val: 30
    result = finetune_tiny(ds, strategy="small-similar", calibrate="temperature",
                           precision="float32")
    assert seen == [25]  # the test split only was predicted
    cal = result.report["calibration"]
    probs, y = real(result.model, result.dataset.x_val, result.dataset.y_val)
    again = calibrate_run.calibrate_model(result.model, result.dataset, val_probs=(probs, y))
    assert again["temperature"] == pytest.approx(cal["temperature"], rel=1e-4)
    assert again["unknown"]["threshold"] == pytest.approx(cal["unknown"]["threshold"],
                                                          rel=1e-4, abs=1e-6)
