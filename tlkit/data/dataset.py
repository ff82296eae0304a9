"""`Dataset`: the three splits of a source, as arrays or as image files that stream.

Each split's images are either a uint8 array (N, H, W, C) (array sources) or an
`ImageFiles` (folders, decoded in tf.data as they are read); labels are always int64 arrays.
Both answer `len`, `shape` and indexing, so `select`, `summary`, `pipeline` and the feature
cache treat them alike.

Example:
    >>> from tlkit import data
    >>> ds = data.load("digits", image_size=16, channels=3)
    >>> ds.image_shape, ds.num_classes, ds.x_train.dtype
    ((16, 16, 3), 10, dtype('uint8'))
    >>> batch_x, batch_y = next(iter(ds.pipeline("train", batch_size=8)))
    >>> tuple(batch_x.shape), batch_x.dtype.name
    ((8, 16, 16, 3), 'float32')
"""

import dataclasses
import numbers

import numpy as np

from tlkit.core.errors import TlkitError, suggest
from tlkit.data import arrays
from tlkit.data.files import ImageFiles, is_files
from tlkit.data.pipeline import pipeline as _pipeline

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Dataset:
    """Images (uint8 arrays or `ImageFiles`, raw 0..255) and int64 labels, split three ways.

    `skipped` lists the files left out (unreadable at the scan, or failing to decode in a
    pass, see `note_failed`), `problems` says why for each; `source_channels` is how many
    channels the source's images have before any conversion (3 when any is colour, 1 when
    all are grayscale; None when unknown, e.g. loaded from an index), so that a model taking
    other channels can say so (`tlkit.models.backbones.specs.channels_note`); `origin` holds what
    the index of a folder source records (root, relative paths, seed and fractions; see
    `tlkit.data.index`); `overrides` what `--exclude` / `--relabel` changed
    (`tlkit.data.overrides`), recorded in `summary()`.
    """

    x_train: object
    y_train: np.ndarray
    x_val: object
    y_val: np.ndarray
    x_test: object
    y_test: np.ndarray
    class_names: list
    source: str
    skipped: list = dataclasses.field(default_factory=list)
    problems: dict = dataclasses.field(default_factory=dict)
    origin: dict = None
    overrides: dict = None  # what --exclude / --relabel changed (tlkit.data.overrides)
    source_channels: int = None  # channels of the source images before conversion

    @property
    def num_classes(self):
        """The number of classes (labels are 0 .. num_classes - 1)."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """(height, width, channels) of every image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def streams(self):
        """True when the images are files decoded as they are read (not arrays)."""
        return is_files(self.x_train)

    def split(self, name):
        """`(images, labels)` of split `name` (`"train"`, `"val"` or `"test"`)."""
        if name not in SPLITS:
            raise TlkitError(f"Unknown split {name!r}. Valid: {', '.join(SPLITS)}.")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def pipeline(self, split, **kwargs):
        """`tlkit.data.pipeline` over split `split`; keyword arguments pass through."""
        x, y = self.split(split)
        return _pipeline(x, y, **kwargs)

    def summary(self):
        """A JSON-able dict: source, classes, image shape, split counts, train count per class,
        and `resize`: how files were fitted to the image shape (None for arrays).

        Example:
            >>> from tlkit import data
            >>> data.load("digits").summary()["counts"]
            {'train': 1437, 'val': 180, 'test': 180}
        """
        per_class = np.bincount(self.y_train, minlength=self.num_classes)
        return {
            "source": self.source,
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "counts": {"train": len(self.y_train), "val": len(self.y_val),
                       "test": len(self.y_test)},
            "train_per_class": {n: int(c) for n, c in zip(self.class_names, per_class)},
            "streamed": self.streams,
            "resize": getattr(self.x_train, "resize", None) if self.streams else None,
            "skipped": len(self.skipped),
            "skipped_files": [{"path": p, "reason": self.problems.get(p, "")}
                              for p in self.skipped],
            **({"overrides": dict(self.overrides)} if self.overrides else {}),
        }

    def note_failed(self):
        """Add the files that failed to decode in a finished pass to `skipped`; return them."""
        new = []
        for name in SPLITS:
            x, _ = self.split(name)
            if is_files(x):
                for path in x.failed():
                    if path not in self.problems:
                        self.problems[path] = "could not be decoded in the pass (changed "\
                                              "or corrupt after the scan)"
                        self.skipped.append(path)
                        new.append(path)
        return new

    def converted(self, input_shape, resize=None):
        """This data at `input_shape` (H, W, C): arrays are resized now, files when read."""
        size, channels = tuple(int(s) for s in input_shape[:2]), int(input_shape[2])
        if self.image_shape == (*size, channels) and (resize is None or not self.streams
                                                      or self.x_train.resize == resize):
            return self
        out = {}
        for name in SPLITS:
            x, _ = self.split(name)
            if is_files(x):
                x = ImageFiles(x.paths, size, channels, resize or x.resize, x.use_pil, x.stats)
            else:
                x = arrays.convert_images(x, size, channels)
            out[f"x_{name}"] = x
        return dataclasses.replace(self, **out)

    def select(self, classes=None, per_class=None, seed=0, eval_per_class=None):
        """A new `Dataset` with a subset of the classes and/or fewer images per class.

        Args:
            classes: class names or ids to keep, in the order they get their new labels
                (0 .. k-1; `class_names` follows). None keeps all classes.
            per_class: keep at most this many TRAIN images per class (a seeded random choice
                per class, so the result stays stratified). None keeps all.
            seed: seed of that choice.
            eval_per_class: the same cap for val and test; None leaves them untouched.

        Returns:
            A new `Dataset`; this one is not changed.

        Example:
            >>> from tlkit import data
            >>> small = data.load("digits").select(["3", "8"], per_class=20)
            >>> small.class_names, len(small.y_train)
            (['3', '8'], 40)
        """
        ids = list(range(self.num_classes)) if classes is None else self._class_ids(classes)
        if len(ids) < 2:
            raise TlkitError(f"select needs at least two classes (a classifier needs two). "
                             f"Received: classes={classes!r}.")
        for arg, value in (("per_class", per_class), ("eval_per_class", eval_per_class)):
            if value is not None and (not _is_int(value) or value < 1):
                raise TlkitError(f"{arg} must be a positive int or None. "
                                 f"Received: {arg}={value!r}.")
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        rng = np.random.default_rng(seed)

        def take(x, y, limit):
            idx = np.flatnonzero(remap[y] >= 0)
            if limit is not None:
                parts = [idx[y[idx] == c] for c in ids]
                idx = np.sort(np.concatenate(
                    [p if len(p) <= limit else rng.choice(p, limit, replace=False) for p in parts]))
            return x[idx], remap[y[idx]]

        x_train, y_train = take(self.x_train, self.y_train, per_class)
        x_val, y_val = take(self.x_val, self.y_val, eval_per_class)
        x_test, y_test = take(self.x_test, self.y_test, eval_per_class)
        return Dataset(x_train, y_train, x_val, y_val, x_test, y_test,
                       [self.class_names[i] for i in ids], self.source, list(self.skipped),
                       dict(self.problems), None, source_channels=self.source_channels)

    def subset(self, train=None, val=None, test=None):
        """A new `Dataset` holding only the items at the given positions of each split.

        Unlike `select` (a seeded choice inside), the caller chooses the items, e.g. nested
        draws where a smaller set is a prefix of a larger one (`tlkit.workflows.curve`).

        Args:
            train, val, test: integer positions into that split (kept in the order given),
                or None to keep the split whole.

        Returns:
            A new `Dataset` with the same classes and labels (this one is not changed); its
            `origin` is dropped, as in `select`: the source's index no longer describes it.

        Example:
            >>> from tlkit import data
            >>> ds = data.load("digits")
            >>> part = ds.subset(train=[0, 5, 9])
            >>> list(part.y_train) == list(ds.y_train[[0, 5, 9]])
            True
            >>> len(part.y_test) == len(ds.y_test)
            True
        """
        out = {}
        for name, idx in (("train", train), ("val", val), ("test", test)):
            x, y = self.split(name)
            if idx is not None:
                idx = np.asarray(idx, dtype=np.int64).reshape(-1)
                if len(idx) and (idx.min() < 0 or idx.max() >= len(y)):
                    raise TlkitError(f"subset: positions of the {name} split must be in "
                                     f"0..{len(y) - 1}. Received: {name}={idx.tolist()!r}.")
                x, y = x[idx], y[idx]
            out[f"x_{name}"], out[f"y_{name}"] = x, y
        return dataclasses.replace(self, skipped=list(self.skipped),
                                   problems=dict(self.problems), origin=None, **out)

    def _class_ids(self, classes):
        if isinstance(classes, (str, int)):
            classes = [classes]
        ids = []
        for c in classes:
            if _is_int(c) and 0 <= c < self.num_classes:
                i = int(c)
            elif isinstance(c, str) and c in self.class_names:
                i = self.class_names.index(c)
            else:
                raise suggest(c, self.class_names, "class")
            if i not in ids:
                ids.append(i)
        return ids


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
