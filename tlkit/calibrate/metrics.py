"""Calibration and selective-prediction metrics on probabilities (N, C) and labels (N,).

- `ece`: expected calibration error over 15 equal-width confidence bins (Guo et al. 2017).
- `nll`, `brier`: mean negative log-likelihood; multi-class Brier score (sum over classes).
- `risk_coverage`: the error among the images kept when the least confident are rejected,
  at every coverage; `error_at_coverage` reads it at 90% or 95%.
- `auroc`, `fpr_at_tpr`: how well an unknown-score separates unknown images from known ones.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> y = np.array([0, 0, 1, 1])
    >>> round(ece(p, y), 3), round(nll(p, y), 3), round(brier(p, y), 3)
    (0.3, 0.4, 0.25)
    >>> error_at_coverage(p.max(1), p.argmax(1) == y, 0.75)
    0.0
"""

import numpy as np

BINS = 15
EPS = 1e-12


def _two_columns(p):
    p = np.asarray(p, "float64")
    return np.concatenate([1 - p, p], axis=1) if p.ndim == 2 and p.shape[1] == 1 else p


def reliability_bins(probabilities, y, bins=BINS):
    """Per equal-width confidence bin: `(count, mean confidence, accuracy)` arrays."""
    p = _two_columns(probabilities)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == np.asarray(y)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    safe = np.maximum(count, 1)
    return (count, np.bincount(which, conf, bins) / safe,
            np.bincount(which, correct, bins) / safe)


def ece(probabilities, y, bins=BINS):
    """Expected calibration error: sum over bins of (share of images) x |accuracy - confidence|.
    """
    count, conf, acc = reliability_bins(probabilities, y, bins)
    return float((count * np.abs(acc - conf)).sum() / max(count.sum(), 1))


def nll(probabilities, y):
    """Mean negative log-likelihood of the true classes."""
    p = _two_columns(probabilities)
    y = np.asarray(y).astype(int)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], EPS, 1)).mean())


def brier(probabilities, y):
    """Multi-class Brier score: mean over images of sum over classes of (p - one-hot)^2."""
    p = _two_columns(probabilities)
    onehot = np.eye(p.shape[1])[np.asarray(y).astype(int)]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def risk_coverage(confidence, correct):
    """The risk-coverage curve: keep the `k` most confident images, for k = 1..N.

    Args:
        confidence: higher = more sure (e.g. max probability, or minus an unknown score).
        correct: booleans, whether each prediction is right.

    Returns:
        `(coverage, risk)` arrays of length N: the share kept and the error among them.
    """
    order = np.argsort(-np.asarray(confidence, "float64"), kind="stable")
    wrong = 1.0 - np.asarray(correct, "float64")[order]
    k = np.arange(1, len(order) + 1)
    return k / len(order), np.cumsum(wrong) / k


def error_at_coverage(confidence, correct, coverage):
    """The error among the `ceil(coverage x N)` most confident images."""
    cov, risk = risk_coverage(confidence, correct)
    if not len(cov):
        return float("nan")
    k = max(1, int(np.ceil(coverage * len(cov) - 1e-9)))
    return float(risk[k - 1])


def auroc(known_scores, unknown_scores):
    """Area under the ROC curve of an unknown-score (higher = more likely unknown): the
    chance that a random unknown image scores above a random known one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    s = np.concatenate([known_scores, unknown_scores])
    t = np.concatenate([np.zeros(len(known_scores)), np.ones(len(unknown_scores))])
    return float(roc_auc_score(t, s))


def fpr_at_tpr(known_scores, unknown_scores, tpr=0.95):
    """The share of unknown images accepted when the threshold accepts `tpr` of the known
    ones (FPR at 95% TPR, known images as positives, as in Hendrycks & Gimpel 2017)."""
    threshold = np.quantile(np.asarray(known_scores, "float64"), tpr)
    return float(np.mean(np.asarray(unknown_scores) <= threshold))
