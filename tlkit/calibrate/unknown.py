"""Scores of "no known class" (higher = more likely unknown) and the rejection threshold.

- `msp`: 1 - the maximum calibrated softmax probability (Hendrycks & Gimpel, ICLR 2017).
- `energy`: -T logsumexp(z / T) over the logits z = log p (Liu et al., NeurIPS 2020). With
  log-probabilities as logits it is T x the Renyi entropy of order 1/T of p: at T = 1 it is
  0 for every image, so it is only informative at the fitted T.
- `knn`: distance to the k-th nearest training image in the (L2-normalised) feature space
  (Sun et al., ICML 2022); needs the features and the training features, so it cannot be
  computed from an artifact's probabilities alone.
- `mahalanobis`: the smallest Mahalanobis distance to a class mean in feature space, one
  shared covariance (Lee et al., NeurIPS 2018); `relative`: less the distance under one
  Gaussian of all training features (Ren et al. 2021). Like `knn`, they need features
  (`fit_gaussians`, `mahalanobis_scores`).

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


def fit_gaussians(train_features, train_labels, covariance="ledoit_wolf"):
    """Class means, their shared precision, and one background Gaussian, from training features.

    Args:
        train_features: (M, D) features of training images (e.g. the head's input).
        train_labels: (M,) their integer labels.
        covariance: `"ledoit_wolf"` (shrunk towards a scaled identity by Ledoit and Wolf's
            formula) or `"pooled"` (the plain pooled covariance, with a 1e-6 ridge floor).

    Returns:
        A dict of float64 arrays: `means` (C, D) of the classes present, `whiten` (D, D) with
        `whiten @ whiten.T` the inverse of the class-centred covariance; `mean0` (D,) and
        `whiten0` (D, D) the same for one Gaussian of all features.
    """
    from sklearn.covariance import ledoit_wolf  # here: predict imports this module, not it

    f = np.asarray(train_features, "float64")
    y = np.asarray(train_labels).astype(int)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(axis=0) for c in classes])

    def whitener(centred):
        if covariance == "ledoit_wolf":
            cov = ledoit_wolf(centred, assume_centered=True)[0]
        elif covariance == "pooled":
            cov = centred.T @ centred / max(len(centred) - 1, 1)
        else:
            raise ValueError(f"covariance must be ledoit_wolf or pooled. "
                             f"Received: covariance={covariance!r}")
        cov = cov + np.eye(len(cov)) * 1e-6 * max(np.trace(cov) / len(cov), 1e-12)
        # cov = L L^T (Cholesky): x @ inv(L).T has squared norm x^T cov^-1 x
        return np.linalg.inv(np.linalg.cholesky(cov)).T

    mean0 = f.mean(axis=0)
    return {"means": means, "whiten": whitener(f - means[np.searchsorted(classes, y)]),
            "mean0": mean0, "whiten0": whitener(f - mean0)}


def mahalanobis_scores(features, gaussians, relative=False):
    """The smallest squared Mahalanobis distance to a class mean (higher = more unknown).

    Args:
        features: (N, D) features of the images to score.
        gaussians: `fit_gaussians`'s dict.
        relative: subtract the squared distance under the background Gaussian (Ren et al.
            2021's relative Mahalanobis distance).
    """
    f = np.asarray(features, "float64")
    w = gaussians["whiten"]
    fw, mw = f @ w, gaussians["means"] @ w
    d = ((fw ** 2).sum(1)[:, None] - 2 * fw @ mw.T + (mw ** 2).sum(1)[None]).min(axis=1)
    if relative:
        d = d - (((f - gaussians["mean0"]) @ gaussians["whiten0"]) ** 2).sum(1)
    return d


def threshold(val_scores, coverage):
    """The smallest threshold that keeps at least `coverage` of `val_scores` (kept:
    `score <= threshold`)."""
    s = np.sort(np.asarray(val_scores, "float64"))
    k = max(1, int(np.ceil(coverage * len(s) - 1e-9)))
    return float(s[k - 1])


def reject(unknown_scores, thr):
    """Booleans: which images are rejected as unknown (`score > threshold`)."""
    return np.asarray(unknown_scores) > thr
