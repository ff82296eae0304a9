"""Test-time augmentation: the average of a model's probabilities over N flip/crop variants.

The variants are deterministic and in a fixed order, so `N` means the first N of them:

0. the original image;
1. its horizontal flip;
2. the centre crop (90% of height and width) resized back to the input size;
3. that crop flipped;
4.-11. the four corner crops (90%), each as is and flipped.

So `tta=1` is plain prediction, `tta=2` adds the flip, and `MAX_TTA` = 12 uses them all.
Crops are resized back with bilinear interpolation (`tf.image.crop_and_resize`).

Example:
    >>> import numpy as np
    >>> from tlkit.evaluation import tta
    >>> x = np.arange(2 * 4 * 4 * 1, dtype="float32").reshape(2, 4, 4, 1)
    >>> [v.shape for v in tta.variants(x, 3)]
    [(2, 4, 4, 1), (2, 4, 4, 1), (2, 4, 4, 1)]
    >>> bool((tta.variants(x, 2)[1] == x[:, :, ::-1]).all())
    True
"""

import numbers

import numpy as np

from tlkit.core.errors import TlkitError

CROP = 0.9
_LO = 1.0 - CROP
_BOXES = [(_LO / 2, _LO / 2, 1 - _LO / 2, 1 - _LO / 2),  # centre: y1, x1, y2, x2
          (0.0, 0.0, CROP, CROP), (0.0, _LO, CROP, 1.0),
          (_LO, 0.0, 1.0, CROP), (_LO, _LO, 1.0, 1.0)]
# (flip, crop box or None), in the documented order.
PLAN = [(False, None), (True, None)] + [(flip, box) for box in _BOXES for flip in (False, True)]
MAX_TTA = len(PLAN)


def check(n, name="tta"):
    """Return `n` if it is an integer in 1..`MAX_TTA`, else raise `TlkitError` naming `name`
    (the CLI shows it as `--tta`).

    Example:
        >>> check(0)
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: tta must be an integer from 1 (none) to 12. Received: 0.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_TTA:
        raise TlkitError(f"{name} must be an integer from 1 (none) to {MAX_TTA}. "
                         f"Received: {n!r}.")
    return int(n)


def variants(images, n):
    """The first `n` variants (see the module doc) of a batch (B, H, W, C), as float32 numpy."""
    import tensorflow as tf

    check(n, "n")
    x = tf.convert_to_tensor(np.asarray(images, "float32"))
    size = tf.shape(x)[1:3]
    out = []
    for flip, box in PLAN[:n]:
        v = x
        if box is not None:
            boxes = tf.tile(tf.constant([box], tf.float32), [tf.shape(x)[0], 1])
            v = tf.image.crop_and_resize(v, boxes, tf.range(tf.shape(x)[0]), size)
        if flip:
            v = tf.image.flip_left_right(v)
        out.append(v.numpy())
    return out


class TTAModel:
    """Wraps a model (Keras or `tlkit.deploy.artifacts.Artifact`): `predict_on_batch` averages its
    probabilities over `n` variants. With `n=1` it is the model's own output."""

    def __init__(self, model, n):
        self.model, self.n = model, check(n)
        self.output_shape = model.output_shape

    def predict_on_batch(self, x):
        """The mean of the model's probabilities over the variants of batch `x`."""
        if self.n == 1:
            return np.asarray(self.model.predict_on_batch(x))
        probs = [np.asarray(self.model.predict_on_batch(v), "float64")
                 for v in variants(x, self.n)]
        return np.mean(probs, axis=0).astype("float32")


def wrap(model, n):
    """`model` itself for `n=1`, else a `TTAModel`."""
    return model if check(n) == 1 else TTAModel(model, n)
