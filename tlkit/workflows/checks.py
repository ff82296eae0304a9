"""A run's up-front checks and its warnings: what `finetune` (and `curve`, `tune`) refuse
before any data is read or any folder is made, and what they warn about once the data and
the base are known.

- Refusals (one line, naming the flag or the split): `check_settings`, `check_splits`.
- Warnings (returned as text, warned with the run's other notes): `channels_note`,
  `random_base_warning`, `chance_warning`.
- What the base's weights were: `pretrained_base`, `weights_record` (the metadata's
  `weights`).

Example:
    >>> check_settings(epochs=3, batch_size=16, learning_rate=1e-3) is None
    True
    >>> random_base_warning(None, "mobilenet_v2", "large-dissimilar") is None
    True
"""

import math
import numbers
import os

from tlkit import data as data_lib
from tlkit.config.settings import RUN
from tlkit.core.errors import TlkitError
from tlkit.deploy import saving
from tlkit.evaluation import report as report_lib
from tlkit.models.backbones import specs as backbone_specs

def channels_note(backbone, data, dataset, input_shape):
    """`tlkit.models.backbones.specs.channels_note` for `dataset` (loaded from `data`) and a model
    taking `input_shape`: the channels of the source images; for a `Dataset` given as data,
    colour only when its images are colour and its source was (digits made RGB are gray)."""
    have = dataset.source_channels
    if isinstance(data, data_lib.Dataset):
        have = min(data.source_channels or data.image_shape[2], data.image_shape[2])
    return backbone_specs.channels_note(os.fspath(backbone), have, int(input_shape[2]))


def check_splits(dataset):
    """Refuse a dataset with an empty split or a class without training images (one line
    naming the split and class); returns warnings for classes missing from val or test."""
    return data_lib.splits.check_populated(
        {"train": dataset.y_train, "val": dataset.y_val, "test": dataset.y_test},
        dataset.class_names, source=str(dataset.source))


def check_settings(*, epochs, batch_size, learning_rate, fine_tune_lr=None,
                   patience=RUN.patience, augment_passes=RUN.augment_passes, head_epochs=None,
                   dropout=None):
    """Refuse impossible run settings up front, naming the flag (before any data is read).

    Example:
        >>> check_settings(epochs=1, batch_size=0, learning_rate=1e-3)
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: --batch-size must be an integer >= 1. Received: 0.
    """
    def integer(flag, value, low):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise TlkitError(f"{flag} must be an integer >= {low}. Received: {value!r}.")

    def rate(flag, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value) or value <= 0:
            raise TlkitError(f"{flag} must be a finite number > 0, e.g. 1e-3. "
                             f"Received: {value!r}.")

    if epochs is not None:
        integer("--epochs", epochs, 1)
    integer("--batch-size", batch_size, 1)
    integer("--patience", patience, 0)
    integer("--augment-passes", augment_passes, 1)
    if head_epochs is not None:
        integer("--head-epochs", head_epochs, 1)
    if learning_rate is not None:
        rate("--lr", learning_rate)
    if fine_tune_lr is not None:
        rate("--fine-tune-lr", fine_tune_lr)
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(
            dropout, numbers.Real) or not 0 <= dropout < 1):
        raise TlkitError(f"--dropout must be a number in [0, 1). Received: {dropout!r}.")


def random_base_warning(weights, backbone, strategy):
    """The warning for a frozen base with random weights, or None."""
    if pretrained_base(weights, backbone) or strategy == "large-dissimilar":
        return None
    frozen = "the whole base" if strategy == "small-similar" else "its lower stages"
    return (f"{strategy} with random base weights (weights=None) keeps {frozen} frozen: "
            f"those features are random. Use --weights imagenet, a trained model as "
            f"--backbone (a .h5 file), or --strategy large-dissimilar to train everything.")


def chance_warning(rep, num_classes):
    """The warning for a test accuracy near chance, or for a test set too small to tell.

    The 95% (Wilson) interval of the accuracy decides: a model is called at chance only when
    the interval includes chance and the accuracy is near it (within a quarter of the way
    from chance to 1); an interval that includes chance around an accuracy far from it means
    the test set is too small to tell, and says so. Returns None otherwise.

    Example:
        >>> chance_warning({"n": 2, "accuracy": 1.0}, 2)[:50]
        'the test split has 2 images: too few to tell this '
        >>> chance_warning({"n": 500, "accuracy": 0.9}, 2) is None
        True
    """
    n, acc = rep.get("n", 0), rep.get("accuracy", float("nan"))
    if not n or not num_classes or not math.isfinite(acc):
        return None
    chance = 1.0 / num_classes
    low, high = report_lib.accuracy_interval(acc, n)
    if low > chance:
        return None
    perfect_low = report_lib.accuracy_interval(1.0, n)[0]
    if perfect_low > chance and acc <= chance + (1 - chance) / 4:
        return (f"test accuracy {acc:.3f} is at chance level (1/{num_classes} = {chance:.3f}, "
                f"n={n}, 95% interval {low:.3f}-{high:.3f}): the model has not learned this "
                f"task. Check the data and labels, the learning rate, and whether the base's "
                f"weights are random.")
    return (f"the test split has {n} images: too few to tell this model from chance (test "
            f"accuracy {acc:.3f}, 95% interval {low:.3f}-{high:.3f}, chance {chance:.3f}). "
            f"Add test images for a figure you can trust.")


UNTRAINED = "untrained"  # metadata key of a model file that holds initial (random) weights


def pretrained_base(weights, backbone):
    """True when the base starts from trained weights (ImageNet, a weights file, a classifier).

    A model file whose tlkit metadata says `"untrained": true` (a saved random
    initialisation, as the demo's `source_init.h5`) counts as random weights.

    Example:
        >>> pretrained_base(None, "mobilenet_v2"), pretrained_base(None, "no-such.h5")
        (False, True)
    """
    if str(backbone).lower().endswith((".h5", ".keras")):
        try:
            return not saving.read_metadata(backbone).get(UNTRAINED, False)
        except Exception:  # unreadable here: backbones.build names the problem
            return True
    return not weights_record(weights, backbone).startswith("none")


def weights_record(weights, backbone):
    """What the base's weights truly were, for the metadata."""
    if str(backbone).lower().endswith((".h5", ".keras")):
        return f"from {backbone}"
    if str(backbone).startswith("zoo:") or weights is None:
        return "none (random initialisation)"
    return str(weights)
