"""Stratified, seeded train / val / test assignment of items by their labels.

The split works on item positions, never on pixels: an image folder, a TFDS split and an
array source are split the same way, and only the positions (and the labels) are kept.

Example:
    >>> import numpy as np
    >>> from tlkit.data.splits import assign
    >>> parts = assign({"train": np.repeat([0, 1], 10)}, val_fraction=0.2, test_fraction=0.2)
    >>> {k: (origin, len(pos)) for k, (origin, pos) in parts.items()}
    {'train': ('train', 12), 'val': ('train', 4), 'test': ('train', 4)}
"""

import numbers

import numpy as np

from tlkit.core.errors import TlkitError

SPLITS = ("train", "val", "test")


def check_fractions(val_fraction, test_fraction):
    """Raise `TlkitError` unless both are numbers in [0, 1) that leave training items."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
            raise TlkitError(f"{name} must be a number with 0 <= {name} < 1. "
                             f"Received: {name}={value!r}.")
    if val_fraction + test_fraction >= 1:
        raise TlkitError(f"val_fraction + test_fraction must be below 1 to leave training images. "
                         f"Received: val_fraction={val_fraction}, test_fraction={test_fraction}.")


def assign(labels, val_fraction=0.1, test_fraction=0.1, seed=0, source="the data"):
    """Positions of each split: the given ones kept, the missing val / test carved from train.

    Args:
        labels: a dict split name -> int labels of the items the source already puts in that
            split (`"train"` required; `"val"`, `"test"` optional).
        val_fraction, test_fraction: shares of train carved out when the source lacks them.
        seed: seed of the carving (stratified by class where every class allows it) and of
            the training order.
        source: named in errors.

    Returns:
        A dict split -> `(origin, positions)`: the source split the items come from and their
        positions in it (train is in a seeded random order; val and test in source order).
    """
    y = np.asarray(labels["train"], dtype=np.int64)
    n = len(y)
    if n == 0:
        raise TlkitError(f"No training images in {source!r}.")
    n_test = 0 if "test" in labels else _count(test_fraction, n)
    n_val = 0 if "val" in labels else _count(val_fraction, n)
    if n - n_test - n_val < 1:
        raise TlkitError(f"{source!r} has only {n} training images: too few for "
                         f"val_fraction={val_fraction} and test_fraction={test_fraction}.")
    train = np.arange(n)
    out = {}
    if "test" in labels:
        out["test"] = ("test", np.arange(len(labels["test"])))
    else:
        train, test = _carve(train, y[train], n_test, seed)
        out["test"] = ("train", test)
    if "val" in labels:
        out["val"] = ("val", np.arange(len(labels["val"])))
    else:
        train, val = _carve(train, y[train], n_val, seed)
        out["val"] = ("train", val)
    order = np.random.default_rng(seed).permutation(len(train))  # folders come class by class
    out["train"] = ("train", train[order])
    return {k: out[k] for k in SPLITS}


def check_populated(labels, class_names, source="the data", needs=("train", "val", "test")):
    """Refuse empty splits, and say which split lacks which class (returned as notes).

    Args:
        labels: split name -> int labels of that split.
        class_names: the names of the classes, by label.
        source: named in messages.
        needs: the splits that must not be empty.

    Returns:
        Lines for a warning: the classes missing from a validation or test split.

    Example:
        >>> import numpy as np
        >>> check_populated({"train": np.array([0, 1]), "val": np.array([0, 1]),
        ...                  "test": np.array([], int)}, ["cat", "dog"], "photos")
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: The test split of 'photos' is empty: a run needs at least 1 test image of each of its 2 classes (2 images); add images, or give a test/ folder with one subfolder per class.
    """
    k = len(class_names)
    for name in needs:
        if len(labels.get(name, ())) == 0:
            raise TlkitError(
                f"The {name} split of {source!r} is empty: a run needs at least 1 {name} image "
                f"of each of its {k} classes ({k} images); add images, or give a {name}/ "
                f"folder with one subfolder per class.")
    counts = np.bincount(np.asarray(labels["train"], dtype=np.int64), minlength=k)
    if counts.min() == 0:
        missing = [class_names[i] for i in np.flatnonzero(counts == 0)]
        raise TlkitError(f"Class {missing[0]!r} of {source!r} has no training image"
                         f"{'s' if len(missing) == 1 else ' (nor ' + ', '.join(missing[1:]) + ')'}"
                         f": every class needs at least 3 images (1 each for train, val and "
                         f"test) when tlkit splits the folder.")
    notes = []
    for name in ("val", "test"):
        if name not in labels or not len(labels[name]):
            continue
        have = np.bincount(np.asarray(labels[name], dtype=np.int64), minlength=k)
        missing = [class_names[i] for i in np.flatnonzero(have == 0)]
        if missing:
            notes.append(f"The {name} split of {source!r} has no image of class"
                         f"{'es' if len(missing) > 1 else ''} {', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}: each needs at least 3 images "
                         f"for tlkit to put one in every split, or a {name}/ folder of its own.")
    return notes


def _count(fraction, n):
    return 0 if fraction == 0 else max(1, int(round(fraction * n)))


def _carve(pos, y, n_out, seed):
    """Split off `n_out` of `pos`: stratified when every class allows it, else seeded.

    With few images per class (`n_out` below the number of classes) the carved split still
    gets one image of every class that has at least two, so a 5-image-per-class folder gets a
    validation split that holds every class.
    """
    if n_out == 0:
        return pos, pos[:0]
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    counts = counts[counts > 0]
    k = len(counts)
    if counts.min() >= 2 and n_out < k <= len(y) - k:
        n_out = k
    stratify = y if counts.min() >= 2 and n_out >= k and len(y) - n_out >= k else None
    keep, out = train_test_split(np.arange(len(y)), test_size=n_out, random_state=seed,
                                 stratify=stratify)
    return pos[keep], pos[out]
