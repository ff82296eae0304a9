"""Calibrate a trained classifier on its validation split, measure it on its test split.

`calibrate_model` is what `tlkit finetune`, `tlkit tune` and `tlkit calibrate` run; its dict
is the report's `"calibration"` and travels in the model's metadata (and so in every export):

    {"method": "temperature", "temperature": T, "ece_before", "ece_after", "nll_before",
     "nll_after", "brier_before", "brier_after", "accuracy", "n_val", "n_test",
     "error_full", "error_at_90", "error_at_95",
     "unknown": {"score": "entropy", "threshold": t, "coverage": 0.95, "val_coverage": ...}}

At prediction time (`apply_metadata`): `p_T = softmax(log p / T)`; unknown score = the
entropy of p_T (the default score; 1 - max p_T for `msp`); rejected when the score >
threshold.

Example:
    >>> import numpy as np
    >>> meta = {"calibration": {"temperature": 2.0, "unknown": {"score": "msp",
    ...                                                           "threshold": 0.3}}}
    >>> p, s, r = apply_metadata(np.array([[0.99, 0.01], [0.7, 0.3]]), meta)
    >>> [round(float(v), 3) for v in p[:, 0]], r.tolist()
    ([0.909, 0.604], [False, True])
"""

import numbers
import pathlib

import numpy as np

from tlkit import data as data_lib
from tlkit.calibrate import metrics, plots, unknown
from tlkit.calibrate import temperature as temp_lib
from tlkit.core.errors import TlkitError

# Fewer validation images than this and temperature scaling is refused: T is one parameter,
# but its NLL-optimum is set by the few misclassified images; with under 20 images (at 90%
# accuracy, 2 errors) one image moves T by a factor of 2 or more, and the coverage threshold
# has a resolution of 1/n (5% at n = 20, the size of the 95% coverage target itself).
MIN_VAL_IMAGES = 20
METHODS = ("none", "temperature")
DEFAULT_COVERAGE = 0.95


def check_coverage(coverage, flag="--coverage"):
    """Refuse a coverage outside (0, 1] (one line, naming the flag)."""
    if isinstance(coverage, bool) or not isinstance(coverage, numbers.Real) or \
            not 0 < coverage <= 1:
        raise TlkitError(f"{flag} must be a number in (0, 1], e.g. 0.95 (the share of "
                         f"known images kept). Received: {coverage!r}.")
    return float(coverage)


def check_method(method):
    """Refuse a calibration method tlkit does not have."""
    if method not in METHODS:
        raise TlkitError(f"--calibrate must be one of {', '.join(METHODS)}. "
                         f"Received: {method!r}.")
    return method


def resolve_method(method, n_val):
    """`(method, warning or None)` for a run whose validation split has `n_val` images: None
    becomes `"temperature"`, or `"none"` with a warning below MIN_VAL_IMAGES; an explicit
    `"temperature"` below it is refused (`check_val_size`)."""
    if method is None:
        if n_val >= MIN_VAL_IMAGES:
            return "temperature", None
        return "none", (f"not calibrated: the validation split has {n_val} images, fitting a "
                        f"temperature needs at least {MIN_VAL_IMAGES} (predict --reject needs "
                        f"it; tlkit calibrate adds it later)")
    check_method(method)
    if method == "temperature":
        check_val_size(n_val)
    return method, None


def check_val_size(n, what="the validation split"):
    """Refuse fitting T on fewer than MIN_VAL_IMAGES images (one line, saying how many)."""
    if n < MIN_VAL_IMAGES:
        raise TlkitError(f"{what} has {n} images: fitting a temperature needs at least "
                         f"{MIN_VAL_IMAGES}. Add images, raise --val-fraction, or pass "
                         f"--calibrate none.")


def check_score(score, temperature=None):
    """Refuse an unknown score the artifacts cannot compute, and `energy` at T >= 1."""
    if score not in unknown.EXPORTED_SCORES:
        raise TlkitError(f"score must be one of {', '.join(unknown.EXPORTED_SCORES)} (what "
                         f"every artifact computes). Received: score={score!r}.")
    if score == "energy" and temperature is not None and temperature >= 1.0:
        raise TlkitError(f"score='energy' on log-probabilities is (1 - T) x an entropy: it "
                         f"ranks images by uncertainty only for T < 1, and the fitted T is "
                         f"{temperature:.4g}. Use score='msp'.")
    return score


def calibrate_probs(val_probs, y_val, test_probs, y_test, coverage=DEFAULT_COVERAGE,
                    score=unknown.DEFAULT_SCORE):
    """The calibration dict (module doc) from validation and test probabilities."""
    check_coverage(coverage)
    check_score(score)
    check_val_size(len(y_val))
    t = temp_lib.fit_temperature(val_probs, y_val)
    check_score(score, t)
    before, after = np.asarray(test_probs, "float64"), temp_lib.apply(test_probs, t)
    val_scores = unknown.scores(val_probs, score, t)
    thr = unknown.threshold(val_scores, coverage)
    correct = before.argmax(1) == np.asarray(y_test)
    test_scores = unknown.scores(test_probs, score, t)
    out = {"method": "temperature", "temperature": t,
           "ece_before": metrics.ece(before, y_test), "ece_after": metrics.ece(after, y_test),
           "nll_before": metrics.nll(before, y_test), "nll_after": metrics.nll(after, y_test),
           "brier_before": metrics.brier(before, y_test),
           "brier_after": metrics.brier(after, y_test),
           "n_val": int(len(y_val)), "n_test": int(len(y_test)),
           "error_full": float(1 - correct.mean()) if len(correct) else float("nan"),
           "error_at_90": metrics.error_at_coverage(-test_scores, correct, 0.90),
           "error_at_95": metrics.error_at_coverage(-test_scores, correct, 0.95),
           "unknown": {"score": score, "threshold": thr, "coverage": float(coverage),
                       "val_coverage": float(np.mean(val_scores <= thr)),
                       "test_coverage": float(np.mean(test_scores <= thr))
                       if len(test_scores) else float("nan")}}
    if not np.array_equal(after.argmax(1), before.argmax(1)):  # ties broken differently
        raise AssertionError("temperature scaling changed a predicted class")
    return out


def calibrate_model(model, dataset, out_dir=None, coverage=DEFAULT_COVERAGE,
                    method="temperature", *, score=unknown.DEFAULT_SCORE, batch_size=64,
                    val_probs=None, test_probs=None):
    """Fit T on `dataset`'s validation split and measure on its test split.

    Args:
        model: a classifier ending in softmax (a `keras.Model` or a `tlkit.deploy.artifacts`
            Artifact).
        dataset: a `tlkit.data.Dataset` (`x_val`, `y_val`, `x_test`, `y_test`).
        out_dir: when given, reliability.png goes there.
        coverage: the share of known (validation) images the unknown threshold keeps.
        method: `"temperature"`, or `"none"` (returns None).
        score: the unknown score (`tlkit.calibrate.unknown.EXPORTED_SCORES`).
        batch_size: prediction batch size.
        val_probs, test_probs: `(probabilities, labels)` of the validation or test split when
            the caller has them already (`tlkit.evaluation.report.evaluate(predictions=...)`
            for the test split), so they are not predicted again.

    Returns:
        The calibration dict (module doc), or None for `method="none"`.

    Raises:
        TlkitError: a coverage outside (0, 1], a validation split under MIN_VAL_IMAGES, or
            a score that is not one of `EXPORTED_SCORES` (`energy` at a fitted T >= 1).
    """
    check_method(method)
    check_coverage(coverage)
    check_score(score)
    if method == "none":
        return None
    check_val_size(len(dataset.y_val))
    if val_probs is None:
        val_probs = data_lib.predict_labelled(model, dataset.x_val, dataset.y_val,
                                              batch_size=batch_size)
    val_probs, y_val = val_probs
    if test_probs is None:
        test_probs = data_lib.predict_labelled(model, dataset.x_test, dataset.y_test,
                                               batch_size=batch_size)
    probs, y_test = test_probs
    out = calibrate_probs(val_probs, y_val, probs, y_test, coverage, score)
    if out_dir is not None:
        path = pathlib.Path(out_dir) / "reliability.png"
        plots.plot_reliability(probs, temp_lib.apply(probs, out["temperature"]), y_test,
                               out["temperature"], path)
        out["files"] = {"reliability": str(path)}
    return out


def from_metadata(metadata):
    """`(temperature, unknown dict or None)` from a model's metadata (T = 1 when absent)."""
    cal = (metadata or {}).get("calibration") or {}
    return float(cal.get("temperature") or 1.0), cal.get("unknown")


def apply_metadata(probabilities, metadata):
    """Calibrated probabilities, unknown scores and rejections from raw softmax outputs.

    Returns:
        `(probabilities (N, C), scores (N,), rejected (N,) bool)`; without a threshold in
        the metadata the scores are the default score's and nothing is rejected.
    """
    t, unk = from_metadata(metadata)
    probs = temp_lib.apply(probabilities, t)
    s = unknown.scores(probabilities, (unk or {}).get("score", unknown.DEFAULT_SCORE), t)
    rejected = (unknown.reject(s, unk["threshold"]) if unk and unk.get("threshold") is not None
                else np.zeros(len(s), bool))
    return probs, s, rejected
