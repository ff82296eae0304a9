"""The demo's data: the four target situations, and how a class subset is described."""

import dataclasses

from tlkit.experiments.config import FASHION_CLASSES


def _subset(ds, ids, per_class, val_per_class, test_per_class, seed):
    """`ds` restricted to classes `ids`, with caps per class on train, val and test."""
    out = ds.select(ids, per_class=per_class, seed=seed)
    if val_per_class is not None:
        v = ds.select(ids, eval_per_class=val_per_class, seed=seed + 1)
        out = dataclasses.replace(out, x_val=v.x_val, y_val=v.y_val)
    if test_per_class is not None:
        t = ds.select(ids, eval_per_class=test_per_class, seed=seed + 2)
        out = dataclasses.replace(out, x_test=t.x_test, y_test=t.y_test)
    return out


def situations(fashion, digits, target_ids, config, seed=0):
    """The four target data sets, by situation name.

    Args:
        fashion: Fashion-MNIST as a `tlkit.data.Dataset` (all ten classes, 28x28x1).
        digits: scikit-learn's digits at 28x28x1.
        target_ids: the Fashion-MNIST target class ids (the similar situations).
        config: a `DemoConfig`.
        seed: seed of the subsets.

    Returns:
        `{situation: Dataset}` in `SITUATIONS` order.
    """
    c = config
    all_digits = list(range(digits.num_classes))
    return {
        "small-similar": _subset(fashion, target_ids, c.small_per_class, c.small_val_per_class,
                                 c.test_per_class, seed),
        "small-dissimilar": _subset(digits, all_digits, c.small_per_class,
                                    c.small_val_per_class, None, seed),
        "large-similar": _subset(fashion, target_ids, c.large_per_class, c.large_val_per_class,
                                 c.test_per_class, seed),
        "large-dissimilar": digits,
    }


def _names(ids, sep=", "):
    names = [FASHION_CLASSES[i] for i in ids]
    return names if sep is None else sep.join(names) + f" (ids {', '.join(map(str, ids))})"


def _counts(ds):
    return f"{len(ds.y_train)} train / {len(ds.y_val)} val / {len(ds.y_test)} test"
