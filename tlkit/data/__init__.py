"""Loading and validating image data into uint8 arrays, and tf.data pipelines.

`load(source)` reads an image folder, a TensorFlow Datasets name, an `.npz` file, Fashion-MNIST
or scikit-learn's digits into a `Dataset`: uint8 images (N, H, W, C) with raw pixels 0..255,
int64 labels and class names, split into train / val / test (stratified and seeded). tlkit
models normalise inside the graph, so nothing here rescales pixels. `pipeline` turns arrays
into a batched `tf.data.Dataset` of float32 0..255 images, with optional augmentation.

Example:
    >>> from tlkit import data
    >>> ds = data.load("digits", image_size=16, channels=3)
    >>> ds.image_shape, ds.num_classes, ds.x_train.dtype
    ((16, 16, 3), 10, dtype('uint8'))
    >>> batch_x, batch_y = next(iter(data.pipeline(ds.x_train, ds.y_train, batch_size=8)))
    >>> tuple(batch_x.shape), batch_x.dtype.name
    ((8, 16, 16, 3), 'float32')
"""

import dataclasses
import gzip
import numbers
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlkit.errors import TlkitError, check_choice, suggest

SOURCES = """\
Data sources (`load(source)`, `--data` on the command line):
  DIR                an image folder, one subfolder per class: DIR/cats/*.jpg, DIR/dogs/*.jpg;
                     or pre-split: DIR/train/<class>/, DIR/val/<class>/ (or validation/),
                     DIR/test/<class>/ (a missing val or test is carved from train)
  tfds:NAME[:SPLIT]  a TensorFlow Datasets data set, e.g. tfds:beans or tfds:mnist:train[:10%]
                     (download=True / --download fetches it into the tfds data dir)
  npz:PATH           a .npz file with x (N,H,W) or (N,H,W,C), y (N,), optional class_names
                     (and optional x_val/y_val, x_test/y_test); a path ending in .npz also works
  fashion_mnist      Fashion-MNIST: Debian's dataset-fashion-mnist, the Keras cache or the internet
  digits             scikit-learn's bundled 8x8 handwritten digits (1,797 images)"""

VALID_SOURCES = ("Valid sources: an image folder (DIR/<class>/*.jpg or DIR/train/<class>/...), "
                 "tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits.")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", None)
BAD_IMAGE_POLICIES = ("skip", "error")
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
_SPLIT_DIRS = ("train", "val", "validation", "test")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_CHUNK = 512  # images resized per tf.image.resize call (bounds the float32 copy)


@dataclasses.dataclass
class Dataset:
    """Images (uint8, N x H x W x C, raw 0..255) and int64 labels, split three ways."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    source: str
    skipped: list = dataclasses.field(default_factory=list)

    @property
    def num_classes(self):
        """The number of classes (labels are 0 .. num_classes - 1)."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """(height, width, channels) of every image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def summary(self):
        """A JSON-able dict: source, classes, image shape, split counts, train count per class.

        Example:
            >>> load("digits").summary()["counts"]
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
            "skipped": len(self.skipped),
        }

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
            >>> small = load("digits").select(["3", "8"], per_class=20)
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
                       [self.class_names[i] for i in ids], self.source, list(self.skipped))

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


# ---------------------------------------------------------------------------------------------
# Public helpers: sources, conversion, augmentation, pipelines


def parse_source(source):
    """Split a `source` string into `(kind, arg, split)`; see `SOURCES` for the forms.

    `kind` is `"folder"`, `"tfds"`, `"npz"`, `"fashion_mnist"` or `"digits"`. Anything that is not
    one of the named forms is taken as a folder path (pass `./digits` for a folder so named).

    Example:
        >>> parse_source("tfds:mnist:train[:10%]")
        ('tfds', 'mnist', 'train[:10%]')
        >>> parse_source("photos")
        ('folder', 'photos', None)
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise TlkitError(f"Invalid data source {source!r}. {VALID_SOURCES}")
    source = source.strip()
    if source.startswith("tfds:"):
        _, name, *rest = source.split(":", 2)
        if not name:
            raise TlkitError(f"Invalid data source {source!r}: expected tfds:NAME or "
                             f"tfds:NAME:SPLIT.")
        return "tfds", name, (rest[0] or None) if rest else None
    if source.startswith("npz:"):
        return "npz", source[4:], None
    if source.lower().endswith(".npz"):
        return "npz", source, None
    if source in ("fashion_mnist", "fashion-mnist"):
        return "fashion_mnist", None, None
    if source == "digits":
        return "digits", None, None
    return "folder", source, None


def convert_images(x, image_size=None, channels=None):
    """Resize images and convert their channels; returns a new uint8 array, `x` is unchanged.

    Resizing is `tf.image.resize` (bilinear, antialias); grayscale becomes RGB by copying the
    channel, RGB becomes grayscale with ITU-R 601 luma weights, RGBA drops its alpha.

    Args:
        x: images (N, H, W) or (N, H, W, C) with C in 1, 3, 4; values 0..255.
        image_size: int or (height, width); None keeps the size.
        channels: 1 or 3; None keeps grayscale grayscale and makes RGBA RGB.

    Returns:
        uint8 array (N, height, width, channels).

    Example:
        >>> convert_images(np.zeros((2, 8, 8), np.uint8), image_size=(4, 6), channels=3).shape
        (2, 4, 6, 3)
    """
    original = x
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise TlkitError(f"Images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4. "
                         f"Received: shape={tuple(x.shape)}.")
    size = _size_arg(image_size)
    if channels not in (None, 1, 3):
        raise TlkitError(f"channels must be 1, 3 or None. Received: channels={channels!r}.")
    if x.dtype != np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    target = channels or (1 if x.shape[-1] == 1 else 3)
    if target < x.shape[-1]:
        x = _to_channels(x, target)  # fewer channels first: less to resize
    if size and size != x.shape[1:3]:
        out = np.empty((len(x), *size, x.shape[-1]), np.uint8)
        for i in range(0, len(x), _CHUNK):
            resized = tf.image.resize(x[i:i + _CHUNK], size, antialias=True).numpy()
            out[i:i + _CHUNK] = np.clip(np.round(resized), 0, 255)
        x = out
    x = _to_channels(x, target)
    return x.copy() if np.may_share_memory(x, original) else x


def augmentation(flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.0, *, seed=None):
    """Keras preprocessing layers for training-time augmentation, or None when all are off.

    The layers work on float 0..255 images and are active only when called with
    `training=True` (as `pipeline(augment=...)` does, or inside `model.fit`).

    Args:
        flip: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"` or None.
        rotation: RandomRotation factor (fraction of a full turn, 0.1 = up to +-36 degrees).
        zoom: RandomZoom factor (0.1 = up to +-10%), below 1.
        contrast: RandomContrast factor, 0..1.
        seed: seed of the first layer (the next ones get seed + 1, ...); None is unseeded.

    Returns:
        A `keras.Sequential` named "augmentation", or None.

    Example:
        >>> [layer.name for layer in augmentation(contrast=0.2).layers]
        ['aug_flip', 'aug_rotation', 'aug_zoom', 'aug_contrast']
    """
    flip = None if flip in (False, "none") else flip
    check_choice("flip", flip, FLIPS)
    limits = {"rotation": (">= 0", lambda v: v >= 0), "zoom": ("in [0, 1)", lambda v: 0 <= v < 1),
              "contrast": ("in [0, 1]", lambda v: 0 <= v <= 1)}
    for arg, value in (("rotation", rotation), ("zoom", zoom), ("contrast", contrast)):
        text, ok = limits[arg]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
            raise TlkitError(f"Augmentation {arg} must be a number {text}. "
                             f"Received: {arg}={value!r}.")
    seeds = iter(range(seed, seed + 4)) if seed is not None else iter([None] * 4)
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=next(seeds), name="aug_flip"))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=next(seeds), name="aug_rotation"))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, seed=next(seeds), name="aug_zoom"))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=next(seeds),
                                                  name="aug_contrast"))
    return keras.Sequential(layers, name="augmentation") if layers else None


AUTOTUNE_MIN_CPUS = 5  # tf.data autotuning by default only on machines with more cores


def default_autotune():
    """Whether tf.data autotuning is on by default here: with more than 4 CPU cores.

    On 2 cores autotuning sometimes stalls ~20 s between epochs, and with a fixed prefetch a
    whole fine-tuning run was 1.1-1.3x faster (bench/bench_options.py); tlkit's pipelines only
    cast and augment in-memory images, so a fixed depth loses nothing measurable there.
    """
    return (os.cpu_count() or 1) >= AUTOTUNE_MIN_CPUS


def pipeline(x, y, *, batch_size=32, shuffle=False, augment=None, seed=0, cache=False,
             autotune=None, prefetch=2, drop_remainder=False):
    """A batched `tf.data.Dataset` of (float32 images 0..255, int64 labels).

    Order: from_tensor_slices -> [cache] -> [shuffle] -> batch -> cast (+ augment) -> prefetch.

    Args:
        x: uint8 images (N, H, W, C).
        y: labels (N,), or None for a dataset of images only (prediction).
        batch_size: images per batch.
        shuffle: shuffle the whole set, seeded, in a new order every epoch (training).
        augment: a Keras layer/model called with `training=True` on every batch (e.g. from
            `augmentation()`); True means `augmentation()`; None or False: no augmentation.
        seed: shuffle seed.
        cache: True caches the elements in memory; a string caches to that file.
        autotune: True for tf.data autotuning; False turns it off and uses a fixed `prefetch`
            depth (avoids the ~20 s stalls between epochs autotune sometimes causes on 2-core
            machines); None (default): `default_autotune()`, on with 5 or more CPU cores.
        prefetch: batches prefetched when autotune is off (0: none).
        drop_remainder: drop the last, smaller batch.

    Returns:
        A `tf.data.Dataset`.

    Example:
        >>> ds = pipeline(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10), batch_size=4,
        ...               shuffle=True, autotune=False)
        >>> [int(b.shape[0]) for b, _ in ds]
        [4, 4, 2]
    """
    if augment is True:
        augment = augmentation()
    elif augment is False:
        augment = None
    if augment is not None and not callable(augment):
        raise TlkitError(f"augment must be a Keras layer, True, False or None. "
                         f"Received: augment={augment!r}.")
    if not _is_int(batch_size) or batch_size < 1:
        raise TlkitError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}.")
    if not _is_int(prefetch) or prefetch < 0:
        raise TlkitError(f"prefetch must be an int >= 0. Received: prefetch={prefetch!r}.")
    x = np.asarray(x)
    if y is not None:
        y = np.asarray(y, dtype=np.int64)
        if len(y) != len(x):
            raise TlkitError(f"x and y differ in length: {len(x)} images, {len(y)} labels.")
    if autotune is None:
        autotune = default_autotune()
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(max(len(x), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def prepare(images, *labels):
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, training=True)
        return (images, *labels) if labels else images

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE if autotune else None)
    if autotune:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)
    return ds.prefetch(prefetch) if prefetch else ds


def read_images(paths, image_size=None, channels=None):
    """Read image files into one uint8 array, decoded as `load` does (for prediction).

    Args:
        paths: image file paths.
        image_size: int or (height, width); needed when the images differ in size.
        channels: 1 or 3; None gives 3 if any image is colour, else 1.

    Returns:
        uint8 array (N, H, W, C). An unreadable file raises `TlkitError` naming it.
    """
    size = _size_arg(image_size)
    paths = [str(p) for p in paths]
    images = [_read_image(p, size, on_bad_image="error")[0] for p in paths]
    return _stack(images, paths, size, channels)


# ---------------------------------------------------------------------------------------------
# load


def load(source, *, image_size=None, channels=None, val_fraction=0.1, test_fraction=0.1,
         seed=0, on_bad_image="skip", download=False):
    """Load a data source (see `SOURCES`) as a `Dataset` of uint8 images, split three ways.

    Splits are stratified by class and seeded. A source with its own test split (pre-split
    folders, Fashion-MNIST, tfds data sets with "test") keeps it and carves only val from train.

    Args:
        source: a folder, `tfds:NAME[:SPLIT]`, `npz:PATH`, `fashion_mnist` or `digits`.
        image_size: int or (height, width) to resize to; needed when images differ in size.
        channels: 1 or 3; default: 3 if any image is colour, else 1.
        val_fraction: share of the images carved out for validation when the source has no
            val split (a share of train when the source has its own test split).
        test_fraction: the same for test, when the source has no test split.
        seed: seed of the splits.
        on_bad_image: `"skip"` (warn once, list them in `Dataset.skipped`) or `"error"`.
        download: let tfds download a data set that is not in its data dir.

    Returns:
        A `Dataset`.

    Example:
        >>> ds = load("digits", val_fraction=0.2, test_fraction=0.2, seed=1)
        >>> ds.summary()["counts"]
        {'train': 1079, 'val': 359, 'test': 359}
    """
    kind, arg, split = parse_source(source)
    size = _size_arg(image_size)
    if channels not in (None, 1, 3):
        raise TlkitError(f"channels must be 1, 3 or None. Received: channels={channels!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
            raise TlkitError(f"{name} must be a number with 0 <= {name} < 1. "
                             f"Received: {name}={value!r}.")
    if val_fraction + test_fraction >= 1:
        raise TlkitError(f"val_fraction + test_fraction must be below 1 to leave training images. "
                         f"Received: val_fraction={val_fraction}, test_fraction={test_fraction}.")
    check_choice("on_bad_image", on_bad_image, BAD_IMAGE_POLICIES)
    notes, skipped = [], []
    if kind == "folder":
        splits, names = _load_folder(arg, size, channels, on_bad_image, notes, skipped)
    elif kind == "tfds":
        splits, names = _load_tfds(arg, split, size, channels, download)
    elif kind == "npz":
        splits, names = _load_npz(arg)
    elif kind == "fashion_mnist":
        splits, names = _load_fashion_mnist()
    else:
        splits, names = _load_digits()
    if kind in ("npz", "fashion_mnist", "digits") and (size or channels):
        splits = {k: (convert_images(x, size, channels), y) for k, (x, y) in splits.items()}
    for note in notes:
        warnings.warn(note, stacklevel=2)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _split(
        splits, val_fraction, test_fraction, seed, source)
    return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, list(names),
                   os.fspath(source) if isinstance(source, os.PathLike) else source, skipped)


def _split(splits, val_fraction, test_fraction, seed, source):
    """Carve the missing val / test splits out of train; returns three (x, y) pairs."""
    x, y = splits["train"]
    if len(y) == 0:
        raise TlkitError(f"No training images in {source!r}.")
    n = len(y)
    n_test = 0 if "test" in splits else _count(test_fraction, n)
    n_val = 0 if "val" in splits else _count(val_fraction, n)
    if n - n_test - n_val < 1:
        raise TlkitError(f"{source!r} has only {n} training images: too few for "
                         f"val_fraction={val_fraction} and test_fraction={test_fraction}.")
    if "test" not in splits:
        x, y, *test = _carve(x, y, n_test, seed)
        splits = {**splits, "test": test}
    if "val" not in splits:
        x, y, *val = _carve(x, y, n_val, seed)
        splits = {**splits, "val": val}
    order = np.random.default_rng(seed).permutation(len(y))  # pre-split folders come class by class
    return (x[order], y[order]), tuple(splits["val"]), tuple(splits["test"])


def _count(fraction, n):
    return 0 if fraction == 0 else max(1, int(round(fraction * n)))


def _carve(x, y, n_out, seed):
    """Split off `n_out` samples: stratified when every class allows it, else a seeded shuffle."""
    if n_out == 0:
        return x, y, x[:0], y[:0]
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    counts = counts[counts > 0]
    k = len(counts)
    stratify = y if counts.min() >= 2 and n_out >= k and len(y) - n_out >= k else None
    keep, out = train_test_split(np.arange(len(y)), test_size=n_out, random_state=seed,
                                 stratify=stratify)
    return x[keep], y[keep], x[out], y[out]


# ---------------------------------------------------------------------------------------------
# Image folders


def _load_folder(root, size, channels, on_bad_image, notes, skipped):
    root = Path(root)
    if not root.exists():
        raise TlkitError(f"Data folder not found: {str(root)!r}. {VALID_SOURCES}")
    if not root.is_dir():
        raise TlkitError(f"Data source {str(root)!r} is a file, not a folder. {VALID_SOURCES}")
    dirs = {p.name: p for p in _visible(root) if p.is_dir()}
    if "train" in dirs:
        others = sorted(set(dirs) - set(_SPLIT_DIRS))
        if others:
            raise TlkitError(f"{root} mixes split folders (train/, val/, test/) with other folders "
                             f"({', '.join(others)}): put the class folders inside the split "
                             f"folders.")
        if "val" in dirs and "validation" in dirs:
            raise TlkitError(f"{root} has both val/ and validation/: keep one.")
        layout = {"train": dirs["train"], "val": dirs.get("val", dirs.get("validation")),
                  "test": dirs.get("test")}
        layout = {k: v for k, v in layout.items() if v is not None}
    elif dirs and set(dirs) <= set(_SPLIT_DIRS):
        raise TlkitError(f"{root} has {', '.join(sorted(dirs))}/ but no train/: "
                         f"add train/<class>/.")
    else:
        layout = {"train": root}
    classes = {k: {p.name: p for p in _visible(d) if p.is_dir()} for k, d in layout.items()}
    for k, d in layout.items():
        if not classes[k]:
            what = "holds files but no" if any(p.is_file() for p in _visible(d)) else "has no"
            raise TlkitError(f"{d} {what} class subfolders. Expected one subfolder per class, "
                             f"e.g. photos/cats/*.jpg and photos/dogs/*.jpg (or "
                             f"photos/train/cats/..., photos/val/..., photos/test/...).")
    names = sorted(set().union(*classes.values()))
    read = {k: {c: _read_class(p, size, on_bad_image, skipped) for c, p in classes[k].items()}
            for k in layout}
    empty = [c for c in names if not read["train"].get(c)]
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        notes.append(f"Skipped {len(skipped)} unreadable or non-image file(s) in {root}: {shown}")
    if empty:
        notes.append(f"Excluded {len(empty)} class folder(s) with no readable training images: "
                     f"{', '.join(empty)}")
        names = [c for c in names if c not in empty]
    if len(names) < 2:
        raise TlkitError(f"{root} has {len(names)} class folder(s) with images "
                         f"({', '.join(names) or 'none'}); a classifier needs at least two, "
                         f"e.g. photos/cats/*.jpg and photos/dogs/*.jpg.")
    images, paths, owner = [], [], []
    for k in layout:
        for label, c in enumerate(names):
            for path, image in read[k].get(c, []):
                images.append(image)
                paths.append(path)
                owner.append((k, label))
    x = _stack(images, paths, size, channels)
    splits_of = np.array([k for k, _ in owner])
    labels = np.array([label for _, label in owner], dtype=np.int64)
    return {k: (x[splits_of == k], labels[splits_of == k]) for k in layout}, names


def _visible(folder):
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))


def _read_class(folder, size, on_bad_image, skipped):
    """[(path, image)] for the readable images under `folder` (recursively), in name order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            path = os.path.join(dirpath, name)
            image, problem = _read_image(path, size, on_bad_image)
            if problem:
                skipped.append(path)
            else:
                out.append((path, image))
    return out


def _read_image(path, size, on_bad_image):
    """(uint8 array H x W x 1|3, None), or (None, reason) for a file that is skipped."""
    from PIL import Image, ImageOps

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        problem = f"not an image file (extensions: {' '.join(IMAGE_EXTENSIONS)})"
    else:
        try:
            with Image.open(path) as img:
                if size and img.format == "JPEG":  # decode big photos at a reduced scale
                    img.draft(img.mode, (2 * max(size), 2 * max(size)))
                img.load()  # decodes now: truncated files fail here
                img = ImageOps.exif_transpose(img)
                img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
                image = np.asarray(img)
            image = image[..., None] if image.ndim == 2 else image
            if size and image.shape[:2] != size:  # resize now: keeps memory to the target size
                image = convert_images(image[None], size)[0]
            return image, None
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
            problem = f"{type(e).__name__}: {e}"
    if on_bad_image == "error":
        raise TlkitError(f"Cannot read image {path}: {problem}. Remove it, or pass "
                         f"on_bad_image='skip' (--on-bad-image skip) to skip such files.")
    return None, problem


def _stack(images, paths, size, channels):
    """Stack (H, W, C) uint8 images into (N, H, W, C): common channels, and a common size."""
    if not images:
        return np.zeros((0, *(size or (1, 1)), channels or 1), np.uint8)
    target = channels or (3 if any(im.shape[-1] >= 3 for im in images) else 1)
    images = [_to_channels(im, target) for im in images]
    shapes = {}
    for im, p in zip(images, paths):
        shapes.setdefault(im.shape[:2], []).append(p)
    if len(shapes) == 1:
        x = np.stack(images)
        return convert_images(x, size) if size and size != x.shape[1:3] else x
    if not size:
        seen = sorted(shapes.items(), key=lambda kv: -len(kv[1]))
        listed = "; ".join(f"{h}x{w}: {len(ps)} (e.g. {ps[0]})" for (h, w), ps in seen[:3])
        raise TlkitError(f"Images differ in size ({len(shapes)} sizes: {listed}). "
                         f"Pass image_size (--image-size), e.g. image_size=224.")
    return np.stack([convert_images(im[None], size)[0] for im in images])


def _to_channels(x, channels):
    """Numpy channel conversion on (..., C): RGBA -> RGB, 1 -> 3 by copying, 3 -> 1 by luma."""
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    luma = x.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets, npz, Fashion-MNIST, digits


def _load_tfds(name, split, size, channels, download):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.registered import DatasetNotFoundError

    data_dir = os.environ.get("TFDS_DATA_DIR") or None  # read now, not at tfds import
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except DatasetNotFoundError:
        import difflib

        close = difflib.get_close_matches(name, tfds.list_builders(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TlkitError(f"Unknown tfds data set {name!r}.{hint} tfds.list_builders() lists "
                         f"them all (https://www.tensorflow.org/datasets/catalog).") from None
    known = list(builder.info.splits)

    def read(split_name):
        try:
            ds, info = tfds.load(name, split=split_name, as_supervised=True, download=download,
                                 with_info=True, data_dir=data_dir)
        except AssertionError:  # tfds: "could not find data in <data dir>"
            where = data_dir or tfds.core.constants.DATA_DIR
            raise TlkitError(f"tfds data set {name!r} is not in the tfds data dir ({where}); "
                             f"pass download=True (--download) to fetch it.") from None
        images, labels = [], []
        for image, label in tfds.as_numpy(ds):
            if image.ndim != 3:
                raise TlkitError(f"tfds:{name} is not an image data set "
                                 f"(example shape {image.shape}).")
            images.append(image)
            labels.append(int(label))
        return images, np.array(labels, dtype=np.int64), info

    if split:
        parts = {"train": split}
    elif known and "train" not in known:
        raise TlkitError(f"tfds:{name} has no 'train' split; name one: "
                         + ", ".join(f"tfds:{name}:{s}" for s in known) + ".")
    else:
        parts = {"train": "train"}
        if not known or "test" in known:
            parts["test"] = "test"
    splits, info = {}, None
    for key, split_name in parts.items():
        try:
            images, labels, info = read(split_name)
        except TlkitError:
            raise
        except (ValueError, KeyError) as e:  # tfds: unknown split
            if key == "test":
                continue  # no test split: carved from train instead
            raise TlkitError(f"tfds:{name}: cannot load split {split_name!r}: {e}") from None
        if not len(labels):
            raise TlkitError(f"tfds:{name}: split {split_name!r} is empty.")
        splits[key] = (images, labels)
    num = 1 + max(int(labels.max()) for _, labels in splits.values())
    try:
        names = list(info.features[info.supervised_keys[1]].names)
    except (AttributeError, KeyError, TypeError, IndexError):
        names = [str(i) for i in range(num)]
    if len(names) < num:
        names = [str(i) for i in range(num)]
    images = [im for ims, _ in splits.values() for im in ims]
    x = _stack(images, [f"tfds:{name} example {i}" for i in range(len(images))], size, channels)
    out, start = {}, 0
    for key, (ims, labels) in splits.items():
        out[key] = (x[start:start + len(ims)], labels)
        start += len(ims)
    return out, names


def _load_npz(path):
    if not os.path.isfile(path):
        raise TlkitError(f"npz file not found: {path!r}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise TlkitError(f"Cannot read npz file {path!r}: {e}") from None
    if "x" not in arrays or "y" not in arrays:
        raise TlkitError(f"{path} must hold arrays 'x' (N,H,W[,C]) and 'y' (N,). "
                         f"Found: {', '.join(sorted(arrays)) or 'none'}.")
    label_arrays = [arrays[k] for k in ("y", "y_val", "y_test") if k in arrays]
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
    elif any(a.dtype.kind in "UO" for a in label_arrays):
        names = sorted({str(v) for a in label_arrays for v in a})
    else:
        names = [str(i) for i in range(1 + max(int(a.max()) for a in label_arrays if a.size))]
    splits = {}
    keys = (("train", "x", "y"), ("val", "x_val", "y_val"), ("test", "x_test", "y_test"))
    for key, xk, yk in keys:
        if xk not in arrays:
            continue
        x, y = arrays[xk], arrays.get(yk)
        if y is None or y.ndim != 1 or len(y) != len(x):
            raise TlkitError(f"{path}: {yk!r} must be a 1-D array as long as {xk!r} ({len(x)}).")
        if y.dtype.kind in "UO":
            lookup = {n: i for i, n in enumerate(names)}
            if not set(map(str, y)) <= set(lookup):
                raise TlkitError(f"{path}: labels in {yk!r} missing from class_names.")
            y = np.array([lookup[str(v)] for v in y])
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= len(names))):
            raise TlkitError(f"{path}: {yk!r} must hold class ids 0..{len(names) - 1} "
                             f"(one per class name) or class-name strings.")
        splits[key] = (_npz_images(x, path, xk), y.astype(np.int64))
    if len(names) < 2:
        raise TlkitError(f"{path} has {len(names)} class; a classifier needs at least two.")
    return splits, names


def _npz_images(x, path, key):
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise TlkitError(f"{path}: {key!r} must be (N,H,W) or (N,H,W,C) with C in 1, 3, 4. "
                         f"Received: shape={x.shape}.")
    if x.dtype.kind not in "uif":
        raise TlkitError(f"{path}: {key!r} must be numeric. Received: dtype={x.dtype}.")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise TlkitError(f"{path}: {key!r} must hold raw pixels 0..255. "
                         f"Received: values {x.min()}..{x.max()}.")
    if x.dtype.kind == "f" and x.size and 0 < x.max() <= 1.0:
        raise TlkitError(f"{path}: {key!r} looks normalised to 0..1; tlkit wants raw pixels "
                         f"0..255 (models normalise inside): save x * 255.")
    x = x if x.ndim == 4 else x[..., None]
    return convert_images(x) if x.dtype != np.uint8 or x.shape[-1] == 4 else x


def _load_fashion_mnist():
    files = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    for folder in (FASHION_MNIST_DEBIAN, os.path.join(keras_home, "datasets", "fashion-mnist")):
        if all(os.path.isfile(os.path.join(folder, f)) for f in files):
            x_tr, y_tr, x_te, y_te = (_read_idx(os.path.join(folder, f)) for f in files)
            break
    else:
        try:
            (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
        except Exception:  # noqa: BLE001 - no network, proxy, certificate, ...: all mean "not here"
            raise TlkitError("Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
                             "(apt-get install dataset-fashion-mnist) or connect to the "
                             "internet.") from None
    return ({"train": (x_tr[..., None], y_tr.astype(np.int64)),
             "test": (x_te[..., None], y_te.astype(np.int64))}, list(FASHION_MNIST_CLASSES))


def _read_idx(path):
    """A gzipped IDX file (the MNIST format) as a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return {"train": (x, digits.target.astype(np.int64))}, [str(i) for i in range(10)]


def _size_arg(image_size):
    """None, or (height, width) from an int or a pair of positive ints."""
    if image_size is None:
        return None
    size = (image_size, image_size) if _is_int(image_size) else tuple(image_size) \
        if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        raise TlkitError(f"image_size must be a positive int or (height, width). "
                         f"Received: image_size={image_size!r}.")
    return tuple(int(s) for s in size)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


__all__ = ["Dataset", "load", "parse_source", "convert_images", "augmentation", "pipeline",
           "read_images", "SOURCES", "FASHION_MNIST_CLASSES", "IMAGE_EXTENSIONS"]
