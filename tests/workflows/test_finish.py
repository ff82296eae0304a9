"""The finish step's reuse of what training already computed."""

import dataclasses

import numpy as np
import pytest

from model_helpers import finetune_tiny
from tlkit import data as data_lib
from tlkit.calibrate import run as calibrate_run
from tlkit.deploy import feature_score


def test_a_cached_head_hands_its_validation_probabilities_to_calibration(tiny_digits,
                                                                          monkeypatch):
    """small-similar: calibration fits T on the head's own validation probabilities and its
    unknown score on the cached features (no forward pass over the training or validation
    images), and gets what passes would give."""
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
    assert cal["unknown"]["fit_on"] == "training images (cached features)"
    fs = cal["unknown"]["params"]
    both = feature_score.feature_model(result.model)
    (f_val, probs), y = real(both, result.dataset.x_val, result.dataset.y_val)
    (f_train, _), y_train = real(both, result.dataset.x_train, result.dataset.y_train)
    again = calibrate_run.calibrate_model(result.model, result.dataset, val_probs=(probs, y),
                                          features={"train": (f_train, y_train),
                                                    "val": (f_val, y)})
    np.testing.assert_allclose(again["unknown"]["params"].centres, fs.centres, rtol=1e-3,
                               atol=1e-4)
    assert again["temperature"] == pytest.approx(cal["temperature"], rel=1e-4)
    assert again["unknown"]["threshold"] == pytest.approx(cal["unknown"]["threshold"],
                                                          rel=1e-4, abs=1e-6)
