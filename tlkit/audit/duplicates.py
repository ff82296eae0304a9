"""Exact duplicates, split leakage and duplicate groups; the nearest-neighbour search.

- Exact duplicates: equal pixel hashes (`tlkit.audit.properties.pixel_hash`), grouped.
- Near duplicates are matched on the pixels (`tlkit.audit.pixels`, which says why not on the
  features); this module turns their pairs, and the exact ones, into the issues' terms.
- A pair whose images sit in different splits (train-val, train-test, val-test) is a leak;
  `leak_rates` gives the share of each split's images that have a copy in an earlier split.
- `groups` joins all pairs into duplicate groups (union-find), for `--fix-splits`.

The neighbour search (`neighbours`: the outliers' feature neighbours, and the near-duplicate
candidates of `tlkit.audit.pixels`) is scikit-learn's `NearestNeighbors` with brute force over
L2-normalised rows (the Euclidean distance of unit vectors orders pairs exactly as the
cosine similarity does), queried in batches: brute force is a chunked matrix product, which
beats ball and KD trees on vectors of hundreds of dimensions (trees degrade to a scan beyond
a few tens of dimensions), and the batches keep memory at `batch` x N distances (with
`QUERY_BATCH` = 512 and N = 100,000: 0.4 GB), not N x N. faiss-cpu would be faster on
millions of images but is one more binary dependency; at 60,000 images and 256 dimensions the
search takes 20 s on two cores.

Example:
    >>> import numpy as np
    >>> f = np.array([[1, 0], [0.99, 0.05], [0, 1.0]])
    >>> dist, idx = neighbours(f, k=1)
    >>> idx[:, 0].tolist()
    [1, 0, 1]
    >>> ordered(0, 1, ["train", "test"]), pair_kind(0, 1, ["train", "test"], exact=False)
    ((1, 0), 'leak')
"""

import numpy as np

QUERY_BATCH = 512
DEFAULT_K = 10
SPLIT_ORDER = ("train", "val", "test")


def normalise(features):
    """Rows scaled to unit length (float32); zero rows stay zero."""
    f = np.asarray(features, np.float32)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def neighbours(features, k=DEFAULT_K, batch=QUERY_BATCH):
    """Each row's `k` nearest other rows by cosine distance (1 - similarity).

    Args:
        features: (N, D).
        k: neighbours per row (capped at N - 1).
        batch: rows per query (memory is `batch` x N distances).

    Returns:
        `(distances, indices)`, both (N, k), nearest first; a row is never its own neighbour.
    """
    from sklearn.neighbors import NearestNeighbors

    f = normalise(features)
    n = len(f)
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="euclidean").fit(f)
    dist = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for start in range(0, n, batch):
        d, j = index.kneighbors(f[start:start + batch], n_neighbors=k + 1)
        for r in range(len(j)):
            row = start + r
            keep = j[r] != row  # the row itself (or, with exact copies, one of them) goes
            if keep.all():
                keep[-1] = False
            dist[row] = d[r][keep][:k]
            idx[row] = j[r][keep][:k]
    # unit vectors: |a - b|^2 = 2 - 2 cos(a, b)
    return np.clip(dist ** 2 / 2, 0, 2), idx


def exact_groups(hashes):
    """Groups (lists of positions, in order) of two or more equal hashes; None is skipped."""
    by_hash = {}
    for i, h in enumerate(hashes):
        if h is not None:
            by_hash.setdefault(h, []).append(i)
    return [g for g in by_hash.values() if len(g) > 1]


def ordered(i, j, splits):
    """`(copy, original)` of a pair: the one in the later split (or later position) first."""
    a, b = SPLIT_ORDER.index(splits[i]), SPLIT_ORDER.index(splits[j])
    return (i, j) if (a, i) > (b, j) else (j, i)


def pair_kind(i, j, splits, exact):
    """`leak` across splits, else `exact_duplicate` or `near_duplicate`."""
    if splits[i] != splits[j]:
        return "leak"
    return "exact_duplicate" if exact else "near_duplicate"


def leak_rates(pairs, splits):
    """{"train-test": share of test images with a copy in train, ...} for each split pair."""
    splits = np.asarray(splits)
    sizes = {s: int((splits == s).sum()) for s in SPLIT_ORDER}
    hit = {}
    for i, j in pairs:
        copy, orig = ordered(i, j, splits)
        if splits[copy] != splits[orig]:
            hit.setdefault(f"{splits[orig]}-{splits[copy]}", set()).add(copy)
    out = {}
    for a_pos, a in enumerate(SPLIT_ORDER):
        for b in SPLIT_ORDER[a_pos + 1:]:
            if sizes[a] and sizes[b]:
                got = len(hit.get(f"{a}-{b}", ()))
                out[f"{a}-{b}"] = {"images": got, "rate": round(got / sizes[b], 4)}
    return out


def groups(n, pairs):
    """Connected groups (lists of positions, two or more) of `pairs` over `n` items."""
    parent = list(range(n))

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    out = {}
    for i in range(n):
        out.setdefault(root(i), []).append(i)
    return [g for g in out.values() if len(g) > 1]


def fixed_splits(splits, pairs):
    """Splits in which every duplicate group sits in one split: the earliest of its members
    (train before val before test), so that test keeps no copy of a training image.

    Example:
        >>> fixed_splits(["train", "test", "val", "test"], [(0, 1), (2, 3)])
        ['train', 'train', 'val', 'val']
    """
    out = list(splits)
    for g in groups(len(splits), pairs):
        first = min((out[i] for i in g), key=SPLIT_ORDER.index)
        for i in g:
            out[i] = first
    return out
