"""Outliers: the images farthest from their nearest neighbours in feature space.

An image's outlier score is the mean cosine distance to its `k` nearest neighbours (from
`tlkit.audit.duplicates.neighbours`, the same search as for near duplicates, so it costs
nothing more); the top `share` of images by that score are flagged. Scores are rescaled to
0..1 by the largest one, so that they read like the other kinds' scores.

Example:
    >>> import numpy as np
    >>> dist = np.array([[0.1, 0.2], [0.1, 0.1], [0.9, 0.8], [0.2, 0.1]])
    >>> flagged(scores(dist), share=0.25).tolist()
    [2]
"""

import numpy as np

DEFAULT_SHARE = 0.01


def scores(dist):
    """Mean distance to the neighbours of each row (N,), in 0..1 after scaling by the max."""
    s = np.asarray(dist, np.float64).mean(axis=1) if np.size(dist) else np.zeros(len(dist))
    top = s.max() if len(s) else 0.0
    return s / top if top > 0 else s


def flagged(score, share=DEFAULT_SHARE):
    """Positions of the top `share` of `score` (at least one when share > 0), worst first."""
    n = len(score)
    count = int(np.ceil(share * n)) if share > 0 else 0
    if not count:
        return np.zeros(0, np.int64)
    return np.argsort(-np.asarray(score), kind="stable")[:count]
