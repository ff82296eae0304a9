"""Label issues: out-of-fold probabilities of a linear probe, scored and flagged.

Every image gets predicted probabilities from a K-fold linear probe on its frozen features,
from the fold that did not train on it (`out_of_fold`), so an image's own, possibly wrong,
label never votes for itself. From them:

- a label-quality score per image (`quality`): the self-confidence p[given] (Northcutt et al.,
  JAIR 2021), or the normalised margin (p[given] - max other p + 1) / 2;
- the flags of confident learning (`confident_learning`): per-class thresholds (the mean
  self-confidence of each class), the calibrated confident joint of given versus likely true
  labels, and pruning by noise rate: for each pair (given i, true j) the C[i][j] images labelled
  i with the largest margin p[j] - p[i] are flagged; an image whose given label is also the
  probe's prediction is never flagged. This is the method and the default
  (`filter_by="prune_by_noise_rate"`) of `cleanlab.filter.find_label_issues`, written here in
  NumPy so that cleanlab is not a dependency (bench/bench_audit.py measures the agreement).

Example:
    >>> import numpy as np
    >>> probs = np.array([[.9, .1], [.8, .2], [.2, .8], [.1, .9], [.85, .15]])
    >>> labels = np.array([0, 0, 1, 1, 1])  # the last is labelled 1 but looks like a 0
    >>> np.flatnonzero(confident_learning(probs, labels)).tolist()
    [4]
    >>> quality(probs, labels).round(2).tolist()
    [0.9, 0.8, 0.8, 0.9, 0.15]
"""

import numpy as np

from tlkit.core.errors import TlkitError

SCORES = ("self_confidence", "normalized_margin")
DEFAULT_FOLDS = 5


def check_folds(labels, class_names, folds):
    """Raise `TlkitError` unless every class has at least `folds` images (K-fold needs K)."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise TlkitError(f"--folds must be an integer >= 2. Received: {folds!r}.")
    counts = np.bincount(labels, minlength=len(class_names))
    few = [(class_names[i], int(counts[i])) for i in np.flatnonzero(counts < folds)]
    if few:
        listed = ", ".join(f"{name!r} ({n})" for name, n in few[:5])
        raise TlkitError(f"The {folds}-fold label check needs at least {folds} images in every "
                         f"class; {listed} {'has' if len(few) == 1 else 'have'} fewer. Add "
                         f"images, or lower --folds to {max(2, min(n for _, n in few))}.")


def out_of_fold(features, labels, *, folds=DEFAULT_FOLDS, seed=0, num_classes=None):
    """Predicted probabilities of every row from a probe that did not train on it.

    scikit-learn's `cross_val_predict` over a stratified K-fold with `LogisticRegression`
    (lbfgs, multinomial): a linear probe is what the frozen features are for (the head of a
    small-similar run is one), it is calibrated enough for confident learning's thresholds,
    and on a few thousand rows of a few hundred channels it takes a second. Features are
    standardised inside each fold (a pipeline), so the held-out fold leaks no statistics.
    The fits run with one BLAS thread (threadpoolctl, a scikit-learn dependency): lbfgs's
    products are small, and OpenBLAS's threads spin against each other on them. Measured on
    2 cores, 6,150 x 128 features of 5 classes: 25.2 s with OpenBLAS's 2 threads, 3.1 s
    with one, the same probabilities to rounding.

    Args:
        features: (N, D) float features.
        labels: (N,) int given labels.
        folds: K.
        seed: seed of the fold assignment.
        num_classes: width of the result (classes with no rows get probability 0).

    Returns:
        float (N, num_classes) probabilities, rows summing to 1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    present = np.unique(labels)
    k = num_classes or int(labels.max()) + 1
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):
        got = cross_val_predict(probe, np.asarray(features, np.float32), labels, cv=cv,
                                method="predict_proba")
    probs = np.zeros((len(labels), k), np.float64)
    probs[:, present] = got
    return probs


def quality(probs, labels, score="self_confidence"):
    """Label-quality of every row in [0, 1], higher is better (see the module doc)."""
    if score not in SCORES:
        raise TlkitError(f"Unknown label score {score!r}. Valid: {', '.join(SCORES)}.")
    probs = np.asarray(probs, np.float64)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    if score == "self_confidence":
        return given
    other = probs.copy()
    other[rows, labels] = -np.inf
    return (given - other.max(axis=1) + 1) / 2


def confident_joint(probs, labels):
    """The calibrated confident joint C[given][true] (integer counts summing to N)."""
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    counts = np.bincount(labels, minlength=k)
    thresholds = np.array([probs[labels == c, c].mean() if counts[c] else 1.0
                           for c in range(k)])
    above = probs >= thresholds - 1e-6
    n_above = above.sum(axis=1)
    guess = np.where(n_above > 1, probs.argmax(axis=1), above.argmax(axis=1))
    sure = n_above > 0
    joint = np.zeros((k, k), np.float64)
    np.add.at(joint, (labels[sure], guess[sure]), 1)
    # calibrate: each row (given class) sums to that class's count, the whole to N
    rows = joint.sum(axis=1, keepdims=True)
    joint = np.divide(joint, rows, out=np.zeros_like(joint), where=rows > 0) * counts[:, None]
    joint = joint / max(joint.sum(), 1) * n
    return _round_rows(joint)


def _round_rows(m):
    """Round to integers keeping each row's (rounded) total (largest remainders first)."""
    out = np.floor(m).astype(np.int64)
    for i, row in enumerate(m):
        short = int(round(row.sum())) - int(out[i].sum())
        if short > 0:
            out[i, np.argsort(-(row - np.floor(row)))[:short]] += 1
    return out


def confident_learning(probs, labels, min_per_class=1):
    """A boolean mask of the rows confident learning flags as label issues (module doc)."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    k = probs.shape[1]
    joint = confident_joint(probs, labels)
    flagged = np.zeros(len(labels), bool)
    for i in range(k):
        rows = np.flatnonzero(labels == i)
        # keep at least `min_per_class` images of each class (cleanlab's default is 1)
        budget = max(0, len(rows) - min_per_class)
        for j in range(k):
            count = min(int(joint[i, j]), budget) if j != i else 0
            if count <= 0 or not len(rows):
                continue
            margin = probs[rows, j] - probs[rows, i]
            worst = rows[np.argsort(-margin, kind="stable")[:count]]
            flagged[worst] = True
    flagged[probs.argmax(axis=1) == labels] = False
    return flagged
