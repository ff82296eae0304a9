"""Calibrate a trained classifier on its validation split, measure it on its test split.

`calibrate_model` is what `tlkit finetune`, `tlkit tune` and `tlkit calibrate` run; its dict
is the report's `"calibration"` and travels in the model's metadata (and so in every export):

    {"method": "temperature", "temperature": T, "ece_before", "ece_after", "nll_before",
     "nll_after", "brier_before", "brier_after", "accuracy", "n_val", "n_test",
     "error_full", "error_at_90", "error_at_95",
     "unknown": {"score": "mahalanobis", "threshold": t, "coverage": 0.95,
                 "val_coverage": ..., "test_coverage": ..., "fit_on": "...",
                 "fit_images": n, "params": FeatureScore}}

The unknown score is `mahalanobis` for models with a feature layer (`head_pool`: every
backbone model tlkit builds), fitted on the cached training features of a head-only run (up
to `FIT_IMAGES`), else on the validation features (the threshold then on out-of-fold
scores), and stored in every artifact (`tlkit.deploy.feature_score`); else `entropy` of the
calibrated probabilities (zoo models).
The error at 90% / 95% coverage ranks the test images by confidence (the calibrated maximum
probability: the "softmax response" of Geifman & El-Yaniv, NeurIPS 2017).

At prediction time (`apply_metadata`): `p_T = softmax(log p / T)`; the unknown score is the
artifact's own (`Artifact.predict_scored`) for `mahalanobis`, else the entropy of p_T (1 -
max p_T for `msp`); rejected when the score > threshold.

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
from tlkit.core.choices import UNKNOWN_FIT_IMAGES
from tlkit.core.errors import TlkitError
from tlkit.deploy import feature_score

# Fewer validation images than this and temperature scaling is refused: T is one parameter,
# but its NLL-optimum is set by the few misclassified images; with under 20 images (at 90%
# accuracy, 2 errors) one image moves T by a factor of 2 or more, and the coverage threshold
# has a resolution of 1/n (5% at n = 20, the size of the 95% coverage target itself).
MIN_VAL_IMAGES = 20
# Cached training features (a head-only run's) that fit the class means and covariance, at
# most: a seeded choice. Ledoit-Wolf shrinks the covariance where they are few against the
# feature dimension.
FIT_IMAGES = UNKNOWN_FIT_IMAGES
FOLDS = 5  # out-of-fold validation scores set the threshold when the score is fitted on val
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


def default_score(model):
    """`mahalanobis` for a model with a feature layer (`head_pool`), else `entropy`."""
    return (feature_score.KIND if feature_score.feature_layer(model) is not None
            else unknown.DEFAULT_SCORE)


def check_score(score, temperature=None, model=None):
    """Refuse an unknown score the artifacts cannot compute, and `energy` at T >= 1."""
    allowed = unknown.EXPORTED_SCORES + (feature_score.KIND,)
    if score not in allowed:
        raise TlkitError(f"score must be one of {', '.join(allowed)} (what every artifact "
                         f"computes). Received: score={score!r}.")
    if score == feature_score.KIND and model is not None and \
            feature_score.feature_layer(model) is None:
        raise TlkitError(f"score='mahalanobis' needs the model's features (a layer named "
                         f"{' or '.join(feature_score.FEATURE_LAYERS)}); this model has "
                         f"none. Use score='entropy'.")
    if score == "energy" and temperature is not None and temperature >= 1.0:
        raise TlkitError(f"score='energy' on log-probabilities is (1 - T) x an entropy: it "
                         f"ranks images by uncertainty only for T < 1, and the fitted T is "
                         f"{temperature:.4g}. Use score='msp'.")
    return score


def calibrate_probs(val_probs, y_val, test_probs, y_test, coverage=DEFAULT_COVERAGE,
                    score=unknown.DEFAULT_SCORE, *, val_scores=None, test_scores=None):
    """The calibration dict (module doc) from validation and test probabilities.

    `val_scores`, `test_scores`: the unknown scores of the splits for a feature score
    (`mahalanobis`; `test_scores` may be None: the test coverage is then not measured);
    probability scores are computed here.
    """
    check_coverage(coverage)
    check_score(score)
    check_val_size(len(y_val))
    t = temp_lib.fit_temperature(val_probs, y_val)
    check_score(score, t)
    before, after = np.asarray(test_probs, "float64"), temp_lib.apply(test_probs, t)
    if score in unknown.PROBABILITY_SCORES:
        val_scores = unknown.scores(val_probs, score, t)
        test_scores = unknown.scores(test_probs, score, t)
    elif val_scores is None:
        raise TlkitError(f"score={score!r} is computed from the model's features: pass "
                         f"val_scores=, or use calibrate_model(model, dataset).")
    thr = unknown.threshold(val_scores, coverage)
    correct = before.argmax(1) == np.asarray(y_test)
    confidence = after.max(axis=1) if len(after) else np.zeros(0)
    out = {"method": "temperature", "temperature": t,
           "ece_before": metrics.ece(before, y_test), "ece_after": metrics.ece(after, y_test),
           "nll_before": metrics.nll(before, y_test), "nll_after": metrics.nll(after, y_test),
           "brier_before": metrics.brier(before, y_test),
           "brier_after": metrics.brier(after, y_test),
           "n_val": int(len(y_val)), "n_test": int(len(y_test)),
           "error_full": float(1 - correct.mean()) if len(correct) else float("nan"),
           "error_at_90": metrics.error_at_coverage(confidence, correct, 0.90),
           "error_at_95": metrics.error_at_coverage(confidence, correct, 0.95),
           "unknown": {"score": score, "threshold": thr, "coverage": float(coverage),
                       "val_coverage": float(np.mean(np.asarray(val_scores) <= thr)),
                       "test_coverage": (float(np.mean(np.asarray(test_scores) <= thr))
                                         if test_scores is not None and len(test_scores)
                                         else None)}}
    if not np.array_equal(after.argmax(1), before.argmax(1)):  # ties broken differently
        raise AssertionError("temperature scaling changed a predicted class")
    return out


def calibrate_model(model, dataset, out_dir=None, coverage=DEFAULT_COVERAGE,
                    method="temperature", *, score=None, batch_size=64,
                    val_probs=None, test_probs=None, features=None, seed=0,
                    test_features=None):
    """Fit T on `dataset`'s validation split and measure on its test split.

    Args:
        model: a classifier ending in softmax (a `keras.Model` or a `tlkit.deploy.artifacts`
            Artifact).
        dataset: a `tlkit.data.Dataset` (`x_val`, `y_val`, `x_test`, `y_test`).
        out_dir: when given, reliability.png goes there.
        coverage: the share of known (validation) images the unknown threshold keeps.
        method: `"temperature"`, or `"none"` (returns None).
        score: the unknown score: `mahalanobis` (features) or one of
            `tlkit.calibrate.unknown.EXPORTED_SCORES`; default `default_score(model)`.
        batch_size: prediction batch size.
        val_probs, test_probs: `(probabilities, labels)` of the validation or test split when
            the caller has them already (`tlkit.evaluation.report.evaluate(predictions=...)`
            for the test split), so they are not predicted again.
        features: `{"train": (features, labels), "val": (features, labels)}` of the feature
            layer when the caller has them (the feature cache of a head-only run; with
            `val_probs` of the same validation rows), so no image is read again.
        seed: the folds of the validation images (the threshold's out-of-fold scores) when
            the feature score is fitted on them.
        test_features: the feature layer's output on the test images (the rows of
            `test_probs`), so the feature score's test coverage is measured.

    Returns:
        The calibration dict (module doc), or None for `method="none"`.

    Raises:
        TlkitError: a coverage outside (0, 1], a validation split under MIN_VAL_IMAGES, or
            a score that is not one of `EXPORTED_SCORES` (`energy` at a fitted T >= 1).
    """
    check_method(method)
    check_coverage(coverage)
    score = score or default_score(model)
    check_score(score, model=model)
    if method == "none":
        return None
    check_val_size(len(dataset.y_val))
    fs = val_scores = None
    if score == feature_score.KIND:
        fs, val_probs, val_scores, fit_on, n_fit = _fit_feature_score(
            model, dataset, features, val_probs, batch_size, seed)
    if val_probs is None:
        val_probs = data_lib.predict_labelled(model, dataset.x_val, dataset.y_val,
                                              batch_size=batch_size)
    val_probs, y_val = val_probs
    if test_probs is None and fs is not None:  # probabilities and features in one pass
        (test_features, p_test), y_read = data_lib.predict_labelled(
            feature_score.feature_model(model, fs.layer), dataset.x_test, dataset.y_test,
            batch_size=batch_size)
        test_probs = (p_test, y_read)
    if test_probs is None:
        test_probs = data_lib.predict_labelled(model, dataset.x_test, dataset.y_test,
                                               batch_size=batch_size)
    probs, y_test = test_probs
    test_scores = (fs.scores(np.asarray(test_features).reshape(len(test_features), -1))
                   if fs is not None and test_features is not None else None)
    out = calibrate_probs(val_probs, y_val, probs, y_test, coverage, score,
                          val_scores=val_scores, test_scores=test_scores)
    if fs is not None:
        out["unknown"].update(fit_on=fit_on, fit_images=n_fit, params=fs)
    if out_dir is not None:
        path = pathlib.Path(out_dir) / "reliability.png"
        plots.plot_reliability(probs, temp_lib.apply(probs, out["temperature"]), y_test,
                               out["temperature"], path)
        out["files"] = {"reliability": str(path)}
    return out


def _fit_feature_score(model, dataset, features, val_probs, batch_size, seed):
    """`(FeatureScore, (val probabilities, labels), val scores, fitted on, images)`.

    With the training features at hand (`features`: a head-only run's cache) the means and
    covariance are fitted on them (at most FIT_IMAGES) and the validation images are scored
    as they are. Otherwise one pass over the validation split gives its probabilities and
    features (the pass temperature scaling needs anyway), the score is fitted on them, and
    the threshold is set on out-of-fold scores (each of `FOLDS` folds scored by a fit on the
    others), not on distances to means the images themselves moved. A pass over training
    images instead would cost about 2.5x calibration's time budget on the demo (a forward
    pass over 2,000 images where the run's whole calibration may take 5%).
    """
    layer = feature_score.feature_layer(model)
    if features is not None and val_probs is not None:
        (f_train, y_train), (f_val, _) = features["train"], features["val"]
        if len(f_train) > FIT_IMAGES:
            keep = np.sort(np.random.default_rng(seed).choice(len(f_train), FIT_IMAGES,
                                                              replace=False))
            f_train, y_train = np.asarray(f_train)[keep], np.asarray(y_train)[keep]
        f_train = np.asarray(f_train).reshape(len(f_train), -1)
        fs = feature_score.FeatureScore.fit(f_train, y_train, layer=layer)
        f_val = np.asarray(f_val).reshape(len(f_val), -1)
        return fs, val_probs, fs.scores(f_val), "training images (cached features)", \
            len(f_train)
    (f_val, p_val), y_val = data_lib.predict_labelled(feature_score.feature_model(model, layer),
                                                      dataset.x_val, dataset.y_val,
                                                      batch_size=batch_size)
    f_val = np.asarray(f_val).reshape(len(f_val), -1)
    fold = np.random.default_rng(seed).permutation(len(f_val)) % FOLDS
    oof = np.zeros(len(f_val))
    for k in range(FOLDS):
        part = feature_score.FeatureScore.fit(f_val[fold != k], y_val[fold != k], layer=layer)
        oof[fold == k] = part.scores(f_val[fold == k])
    fs = feature_score.FeatureScore.fit(f_val, y_val, layer=layer)
    return fs, (p_val, y_val), oof, f"validation images ({FOLDS}-fold for the threshold)", \
        len(f_val)


def from_metadata(metadata):
    """`(temperature, unknown dict or None)` from a model's metadata (T = 1 when absent)."""
    cal = (metadata or {}).get("calibration") or {}
    return float(cal.get("temperature") or 1.0), cal.get("unknown")


def apply_metadata(probabilities, metadata, feature_scores=None):
    """Calibrated probabilities, unknown scores and rejections from raw softmax outputs.

    Args:
        probabilities: the model's raw softmax outputs (N, C).
        metadata: the model's tlkit metadata.
        feature_scores: the artifact's own unknown scores (N,) for a `mahalanobis` score
            (`tlkit.deploy.artifacts.Artifact.predict_scored`).

    Returns:
        `(probabilities (N, C), scores (N,), rejected (N,) bool)`; without a threshold in
        the metadata the scores are the default score's and nothing is rejected; a
        `mahalanobis` score without `feature_scores` (an int8 TFLite file leaves it out) is
        NaN and rejects nothing (`tlkit predict --reject` refuses such an artifact first).
    """
    t, unk = from_metadata(metadata)
    probs = temp_lib.apply(probabilities, t)
    kind = (unk or {}).get("score", unknown.DEFAULT_SCORE)
    if kind == feature_score.KIND:
        if feature_scores is None:
            return probs, np.full(len(probs), np.nan), np.zeros(len(probs), bool)
        s = np.asarray(feature_scores, "float64")
    else:
        s = unknown.scores(probabilities, kind, t)
    rejected = (unknown.reject(s, unk["threshold"]) if unk and unk.get("threshold") is not None
                else np.zeros(len(s), bool))
    return probs, s, rejected
