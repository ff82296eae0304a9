"""Class weights for imbalanced training sets: `balanced` or an explicit mapping.

`balanced` weighs class c by `n_train / (n_classes * count_c)` (scikit-learn's rule), so every
class carries the same total weight in the training loss. A mapping names classes
(`{"cat": 2, "dog": 1}`, or the CLI's `cat=2,dog=1`); classes it leaves out weigh 1. Keras's
`fit(class_weight=...)` turns the weights into per-example weights of the training loss only;
val_loss stays unweighted.

Example:
    >>> import numpy as np
    >>> resolve("balanced", ["a", "b"], np.array([0, 0, 0, 1]))
    {0: 0.6667, 1: 2.0}
    >>> resolve("b=3", ["a", "b"], np.array([0, 1]))
    {0: 1.0, 1: 3.0}
"""

import math
import numbers

import numpy as np

from tlkit.core.errors import TlkitError


def parse(text):
    """`"cat=2,dog=1"` -> {"cat": 2.0, "dog": 1.0}; `"balanced"`/`"none"` pass through."""
    if text is None or isinstance(text, dict):
        return text
    text = str(text).strip()
    if text.lower() in ("balanced", "none", ""):
        return None if text.lower() in ("none", "") else "balanced"
    out = {}
    for item in text.split(","):
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise TlkitError(f"--class-weight must be balanced or a mapping like cat=2,dog=1. "
                             f"Received: {text!r}.") from None
    return out


def resolve(spec, class_names, y_train):
    """{class index: weight} for Keras's `fit(class_weight=...)`, or None for no weighting.

    Args:
        spec: None, `"balanced"`, a mapping {class name: weight} or its `name=w,...` text.
        class_names: the data set's class names (index order).
        y_train: training labels (for `balanced`).
    """
    spec = parse(spec)
    if spec is None:
        return None
    names = [str(n) for n in class_names]
    if spec == "balanced":
        counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=len(names))
        total, k = int(counts.sum()), len(names)
        return {i: (round(total / (k * int(c)), 4) if c else 1.0) for i, c in enumerate(counts)}
    unknown = [str(n) for n in spec if str(n) not in names]
    if unknown:
        raise TlkitError(f"--class-weight names unknown class(es) {', '.join(unknown)}; the "
                         f"classes are: {', '.join(names)}.")
    for name, w in spec.items():
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) \
                or w < 0:
            raise TlkitError(f"--class-weight {name}={w!r}: a weight must be a finite "
                             f"number >= 0.")
    return {i: float(spec.get(n, 1.0)) for i, n in enumerate(names)}
