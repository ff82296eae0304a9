"""Training targets: one-hot labels, label smoothing, mixup and cutmix, as a tf.data map.

All of these change the training batches only; validation and test batches keep their
exact labels (one-hot when the training ones are, so that one loss serves both), so
val_loss, EarlyStopping and the best-checkpoint choice measure the true cross-entropy.

- label smoothing `S`: targets `(1 - S) * one_hot + S / classes` (timm's and Keras's rule);
- mixup `A`: each training example is blended with another of its batch,
  `lam * x_i + (1 - lam) * x_j` and the same for the targets, `lam ~ Beta(A, A)` per example
  (Zhang et al. 2018). On a phase that trains on cached features the blend is of the cached
  features (mixup in feature space, as manifold mixup does at that layer);
- cutmix `A`: a box of another example of the batch is pasted into each image, its share of
  the area `1 - lam` with `lam ~ Beta(A, A)`, and the targets mixed by the true pasted area
  (Yun et al. 2019). It needs images: phases with cutmix train on images, not cached features.

Keras 3's `keras.layers.MixUp`/`CutMix` exist, but they take dict batches
(`{"images", "labels"}`) and 4-D images only; this map works on any batch of
(inputs, integer labels), features included, and is seeded like the rest of the run.

Example:
    >>> import numpy as np
    >>> t = Targets(num_classes=3, label_smoothing=0.3)
    >>> x, y = t(np.zeros((2, 4), "float32"), np.array([0, 2]))
    >>> np.round(y.numpy().astype(float), 2).tolist()
    [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]
"""

import dataclasses
import numbers

import keras
import numpy as np

from tlkit.core.errors import TlkitError


def check(label_smoothing=0.0, mixup=0.0, cutmix=0.0):
    """Refuse values outside their ranges, naming the flags."""
    s = label_smoothing
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0 <= s < 1:
        raise TlkitError(f"--label-smoothing must be a number in [0, 1), e.g. 0.1. "
                         f"Received: {s!r}.")
    for flag, a in (("--mixup", mixup), ("--cutmix", cutmix)):
        if isinstance(a, bool) or not isinstance(a, numbers.Real) or not a >= 0 or \
                a == float("inf"):
            raise TlkitError(f"{flag} must be a finite number >= 0 (the Beta(A, A) "
                             f"parameter, e.g. 0.2; 0: off). Received: {a!r}.")


def _beta(shape, alpha, seed):
    import tensorflow as tf

    a = tf.random.gamma(shape, alpha, seed=seed)
    b = tf.random.gamma(shape, alpha, seed=None if seed is None else seed + 1)
    return a / tf.maximum(a + b, 1e-12)


@dataclasses.dataclass
class Targets:
    """The training-batch map: `(x, integer y) -> (x', soft targets)`.

    Attributes:
        num_classes: width of the one-hot targets.
        label_smoothing, mixup, cutmix: see the module docstring (0: off).
        seed: op seed of the random draws (the run's seed).
    """

    num_classes: int
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check(self.label_smoothing, self.mixup, self.cutmix)

    @property
    def active(self):
        """Whether training targets differ from plain integer labels."""
        return bool(self.label_smoothing or self.mixup or self.cutmix)

    def one_hot(self, x, y):
        """`(x, one-hot y)`: the map for validation batches."""
        import tensorflow as tf

        return x, tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), self.num_classes)

    def __call__(self, x, y):
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        x, t = self.one_hot(x, y)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        n = tf.shape(x)[0]
        if self.mixup:
            perm = tf.random.shuffle(tf.range(n), seed=self.seed)
            lam = _beta([n], float(self.mixup), self.seed + 2)
            lx = tf.reshape(lam, tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
            x = lx * x + (1.0 - lx) * tf.gather(x, perm)
            t = lam[:, None] * t + (1.0 - lam[:, None]) * tf.gather(t, perm)
        if self.cutmix:
            x, t = self._cutmix(x, t, n)
        return x, t

    def _cutmix(self, x, t, n):
        import tensorflow as tf

        if x.shape.rank != 4:
            raise TlkitError("--cutmix needs image batches (N, H, W, C); this phase trains on "
                             "features.")
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        perm = tf.random.shuffle(tf.range(n), seed=self.seed + 4)
        lam = _beta([n], float(self.cutmix), self.seed + 5)
        cut = tf.sqrt(1.0 - lam)  # box sides as shares of the image's sides
        cy = tf.random.uniform([n], 0, 1, seed=self.seed + 7) * hf
        cx = tf.random.uniform([n], 0, 1, seed=self.seed + 8) * wf
        y0 = tf.clip_by_value(tf.round(cy - cut * hf / 2), 0, hf)
        y1 = tf.clip_by_value(tf.round(cy + cut * hf / 2), 0, hf)
        x0 = tf.clip_by_value(tf.round(cx - cut * wf / 2), 0, wf)
        x1 = tf.clip_by_value(tf.round(cx + cut * wf / 2), 0, wf)
        rows = tf.cast(tf.range(h), tf.float32)[None, :, None]
        cols = tf.cast(tf.range(w), tf.float32)[None, None, :]
        box = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None]) &
               (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))
        box = tf.cast(box, x.dtype)[..., None]
        x = (1 - box) * x + box * tf.gather(x, perm)
        pasted = (y1 - y0) * (x1 - x0) / (hf * wf)  # the true area, after clipping
        t = (1.0 - pasted[:, None]) * t + pasted[:, None] * tf.gather(t, perm)
        return x, t

    def train(self, data):
        """`data` (tf.data batches or a `keras.utils.PyDataset`) with this map applied."""
        return _apply(data, self)

    def val(self, data):
        """`data` with one-hot labels only (validation)."""
        return _apply(data, self.one_hot)

    def to_dict(self):
        """The settings, for reports."""
        return {"label_smoothing": self.label_smoothing, "mixup": self.mixup,
                "cutmix": self.cutmix}


def _apply(data, fn):
    if isinstance(data, keras.utils.PyDataset):
        return _MappedBatches(data, fn)
    return data.map(fn)


class _MappedBatches(keras.utils.PyDataset):
    """A PyDataset (the memory-mapped feature cache) with a batch map applied."""

    def __init__(self, inner, fn):
        super().__init__()
        self.inner, self.fn = inner, fn

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        x, y = self.inner[i]
        x, t = self.fn(x, y)
        return np.asarray(x), np.asarray(t)

    def on_epoch_end(self):
        self.inner.on_epoch_end()
