"""Scores of "no known class" (higher = more likely unknown) and the rejection threshold.

- `msp`: 1 - the maximum calibrated softmax probability (Hendrycks & Gimpel, ICLR 2017).
- `energy`: -T logsumexp(z / T) over the logits z = log p (Liu et al., NeurIPS 2020). With
  log-probabilities as logits it is T x the Renyi entropy of order 1/T of p: at T = 1 it is
  0 for every image, so it is only informative at the fitted T.
- `knn`: distance to the k-th nearest training image in the (L2-normalised) feature space
  (Sun et al., ICML 2022); needs the features and the training features, so it cannot be
  computed from an artifact's probabilities alone.

The default is `msp`. Measured by bench/bench_calibration.py (3 seeds, Fashion-MNIST
classes 1,3,5,7,9 known, 0,2,4,6,8 held out, sklearn digits far away; bench/results/
calibration.json): see DEFAULT_SCORE's comment. MSP and energy need only the probabilities
and T, so every artifact (TFLite and ONNX included) computes them in plain Python.

`threshold(scores, coverage)` on validation scores rejects `score > threshold` and keeps
at least `coverage` of the validation images.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.98, 0.02], [0.6, 0.4], [0.55, 0.45]])
    >>> np.round(scores(p, "msp"), 2).tolist()
    [0.02, 0.4, 0.45]
    >>> threshold(scores(p, "msp"), 2 / 3)
    0.4
"""

import numpy as np

from tlkit.calibrate.temperature import logits

SCORES = ("msp", "energy", "knn")
PROBABILITY_SCORES = ("msp", "energy")  # computable from the probabilities and T
# Measured (bench/bench_calibration.py, 3 seeds, see bench/results/calibration.json): the
# figures are in the README's "Calibrated probabilities and unknown" section. MSP is the
# default: it needs nothing but the calibrated probabilities (every artifact), and it was
# best or within noise of the best on held-out classes.
DEFAULT_SCORE = "msp"
KNN_K = 10


def scores(probabilities, score=DEFAULT_SCORE, temperature=1.0):
    """Unknown scores (N,) from softmax outputs (raw, uncalibrated) and T.

    Args:
        probabilities: the model's softmax outputs (N, C).
        score: `msp` or `energy` (`knn` needs features: `knn_scores`).
        temperature: the fitted T (1: none).
    """
    z = logits(probabilities) / float(temperature or 1.0)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    if score == "msp":  # max softmax(z/T) = exp(max z - logsumexp z)
        return 1.0 - np.exp(-lse)
    if score == "energy":
        full = lse + (logits(probabilities) / float(temperature or 1.0)).max(axis=1)
        return -float(temperature or 1.0) * full
    raise ValueError(f"score must be one of {', '.join(PROBABILITY_SCORES)} (knn: "
                     f"knn_scores). Received: score={score!r}")


def knn_scores(features, train_features, k=KNN_K):
    """Distance to the k-th nearest training feature (L2-normalised, cosine geometry).

    Args:
        features: (N, D) features of the images to score (e.g. the head's input).
        train_features: (M, D) features of training images.
        k: which neighbour.
    """
    def unit(a):
        a = np.asarray(a, "float32")
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    f, t = unit(features), unit(train_features)
    out = []
    for i in range(0, len(f), 1024):
        d = np.sqrt(np.maximum(2 - 2 * f[i:i + 1024] @ t.T, 0))
        out.append(np.partition(d, min(k, d.shape[1]) - 1, axis=1)[:, min(k, d.shape[1]) - 1])
    return np.concatenate(out) if out else np.zeros(0, "float32")


def threshold(val_scores, coverage):
    """The smallest threshold that keeps at least `coverage` of `val_scores` (kept:
    `score <= threshold`)."""
    s = np.sort(np.asarray(val_scores, "float64"))
    k = max(1, int(np.ceil(coverage * len(s) - 1e-9)))
    return float(s[k - 1])


def reject(unknown_scores, thr):
    """Booleans: which images are rejected as unknown (`score > threshold`)."""
    return np.asarray(unknown_scores) > thr
