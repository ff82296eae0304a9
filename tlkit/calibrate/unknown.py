"""Scores of "no known class" (higher = more likely unknown) and the rejection threshold.

From the probabilities and T (what every artifact has):

- `msp`: 1 - the maximum calibrated softmax probability (Hendrycks & Gimpel, ICLR 2017).
- `energy`: -T logsumexp(z / T) over the logits z = log p (Liu et al., NeurIPS 2020). With
  log-probabilities as logits it is (1 - T) x the Renyi entropy of order 1/T of p: it ranks
  images by uncertainty only for T < 1, is 0 for every image at T = 1 and ranks them
  backwards for T > 1 (`calibrate_probs` refuses it there).
- `entropy`: the Shannon entropy of the calibrated probabilities.

From features (the head's input), so not from an artifact's probabilities alone:

- `knn`: distance to the k-th nearest training image in the (L2-normalised) feature space
  (Sun et al., ICML 2022).
- `mahalanobis`: the smallest Mahalanobis distance to a class mean in feature space, one
  shared covariance (Lee et al., NeurIPS 2018); `relative`: less the distance under one
  Gaussian of all training features (Ren et al. 2021) (`fit_gaussians`,
  `mahalanobis_scores`).

The default is `mahalanobis` for every model with a feature layer (`head_pool`: all the
backbone models tlkit builds; `tlkit.calibrate.run.default_score`), stored in every artifact
and computed in the exports' graphs (`tlkit.deploy.feature_score`), and `entropy` for models
without one (zoo models): see DEFAULT_SCORE's comment for the measurements (bench/
bench_calibration.py, 3 seeds; Fashion-MNIST classes 2,3,6,7,9 known, 0,1,4,5,8 held out,
scikit-learn digits far away; bench/results/calibration.json). SavedModel's
`serving_default` computes `EXPORTED_SCORES` in its graph; TFLite and ONNX users compute them
from the probabilities and T in plain Python.

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
from tlkit.core.choices import DEFAULT_UNKNOWN_SCORE, EXPORTED_UNKNOWN_SCORES
from tlkit.deploy import feature_score

PROBABILITY_SCORES = ("msp", "energy", "entropy")  # computable from the probabilities and T
EXPORTED_SCORES = EXPORTED_UNKNOWN_SCORES  # computed inside SavedModel (deploy.saved_model)
# Measured (bench/bench_calibration.py, 3 seeds, mean AUROC held-out classes / digits, and
# the error at 90% coverage over the full error; large-similar, then small-similar, 1,000
# images per class; bench/results/calibration.json):
#   msp          0.608 / 0.878, 0.62x   and 0.677 / 0.858, 0.67x
#   energy       0.544 / 0.654          and 0.499 / 0.493  (T = 1.007 in one large-similar
#                seed and 1.0 in small-similar, whose solved head already fits its scale on
#                val: energy on log-probabilities is chance at T = 1 and backwards above)
#   entropy      0.613 / 0.911, 0.62x   and 0.692 / 0.910, 0.68x
#   mahalanobis  0.881 / 0.940, 0.88x   and 0.845 / 0.979, 0.89x  (features, Ledoit-Wolf)
# Mahalanobis separates best, the only score over 0.80 on held-out classes, so it is the
# default wherever the model has a feature layer: the class means and the whitening matrix
# travel in every artifact (tlkit.deploy.feature_score). Among the scores of the
# probabilities and T alone, entropy is the default for models without features
# (tlkit.core.choices.DEFAULT_UNKNOWN_SCORE): it meets the far target (0.90) in both
# situations, and every artifact computes it (SavedModel in its graph, TFLite and ONNX users in
# three lines of NumPy); energy is unsound at T >= 1. The selective risk (error at 90%
# coverage) ranks images by confidence whatever the unknown score (tlkit.calibrate.run).
DEFAULT_SCORE = DEFAULT_UNKNOWN_SCORE
KNN_K = 10


def scores(probabilities, score=DEFAULT_SCORE, temperature=1.0):
    """Unknown scores (N,) from softmax outputs (raw, uncalibrated) and T.

    Args:
        probabilities: the model's softmax outputs (N, C).
        score: one of `PROBABILITY_SCORES` (`knn` and `mahalanobis` need features:
            `knn_scores`, `mahalanobis_scores`).
        temperature: the fitted T (1: none).
    """
    t = float(temperature or 1.0)
    z = logits(probabilities) / t
    top = z.max(axis=1)
    z = z - top[:, None]
    lse = np.log(np.exp(z).sum(axis=1))
    if score == "msp":  # max softmax(z/T) = exp(max z - logsumexp z)
        return 1.0 - np.exp(-lse)
    if score == "energy":
        return -t * (lse + top)
    if score == "entropy":
        log_q = z - lse[:, None]
        return -(np.exp(log_q) * log_q).sum(axis=1)
    raise ValueError(f"score must be one of {', '.join(PROBABILITY_SCORES)} (knn, "
                     f"mahalanobis: knn_scores, mahalanobis_scores). Received: score={score!r}")


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
    f = np.asarray(train_features, "float64")
    y = np.asarray(train_labels).astype(int)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    mean0 = f.mean(axis=0)
    return {"means": means,
            "whiten": feature_score.whitener(f - means[np.searchsorted(classes, y)], covariance),
            "mean0": mean0, "whiten0": feature_score.whitener(f - mean0, covariance)}


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
