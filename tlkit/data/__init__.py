"""Data sources as an index and a stream: image folders of any size, TFDS, arrays.

Layer: source -> `Dataset` -> tf.data. Imports `core` and `config` only; it knows no model
(tests/test_layering.py): what a model needs of the data (its input shape, channels) is
passed in.

`load(source)` reads an image folder, a TensorFlow Datasets name, an `.npz` file,
Fashion-MNIST or scikit-learn's digits into a `Dataset` split three ways (stratified and
seeded). A folder becomes an index of files (`ImageFiles`: paths, labels, split; no pixels
are read until a pipeline decodes them in parallel, so memory stays flat in the number of
images), a TFDS split becomes records that stream the same way, and the array sources stay
in memory behind the same interface. tlkit models normalise inside the graph, so nothing
here rescales pixels. `pipeline` (or `Dataset.pipeline`) gives a batched `tf.data.Dataset`
of float32 0..255 images, with optional augmentation.

The package, one concept a module: `folder` (scanning a folder), `decode` (decoding and
resizing one image), `files` (`ImageFiles`), `tfds_source`, `arrays` (array sources and
conversion), `splits` (stratified assignment), `dataset` (`Dataset`), `index` (the run's
index file), `pipeline` (tf.data and augmentation).

Example:
    >>> from tlkit import data
    >>> ds = data.load("digits", image_size=16, channels=3)
    >>> ds.image_shape, ds.num_classes, ds.x_train.dtype
    ((16, 16, 3), 10, dtype('uint8'))
    >>> batch_x, batch_y = next(iter(data.pipeline(ds.x_train, ds.y_train, batch_size=8)))
    >>> tuple(batch_x.shape), batch_x.dtype.name
    ((8, 16, 16, 3), 'float32')
"""

import os
import warnings

import numpy as np

from tlkit.data import arrays, decode, folder, overrides, splits
from tlkit.data import index as index_lib
from tlkit.data.arrays import (FASHION_MNIST_CLASSES, FASHION_MNIST_DEBIAN, convert_images,
                               size_arg)
from tlkit.data.dataset import Dataset
from tlkit.data.decode import DEFAULT_RESIZE, IMAGE_EXTENSIONS, RESIZE_MODES, check_resize
from tlkit.data.files import ImageFiles, concat, is_files
from tlkit.data.folder import VALID_SOURCES
from tlkit.data.pipeline import (FLIPS, augmentation, default_autotune, model_batches,
                                 pipeline, predict_labelled)
from tlkit.core.errors import TlkitError, check_choice
from tlkit.config.settings import DATA as _DATA  # load's defaults, as the CLI's data flags
from tlkit.config.settings import RUN as _RUN

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

BAD_IMAGE_POLICIES = ("skip", "error")


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


def data_folder(data):
    """The image folder that `data` reads (a folder source or a folder's Dataset), or None.

    Example:
        >>> data_folder("digits") is None, data_folder("photos/")
        (True, 'photos/')
    """
    if isinstance(data, Dataset):
        return (data.origin or {}).get("root")
    try:
        kind, arg, _ = parse_source(data)
    except TlkitError:
        return None
    return arg if kind == "folder" else None


def read_images(paths, image_size=None, channels=None, resize=DEFAULT_RESIZE):
    """Read a few image files into one uint8 array (N, H, W, C), e.g. for explain.

    Args:
        paths: image file paths.
        image_size: int or (height, width); needed when the images differ in size.
        channels: 1 or 3; None gives 3 if any image is colour, else 1.
        resize: `"squash"`, `"crop"` or `"pad"`.

    Returns:
        uint8 array (N, H, W, C). An unreadable file raises `TlkitError` naming it.
    """
    size = size_arg(image_size)
    images = [decode.read_image(str(p), image_size=size, resize=resize) for p in paths]
    if not images:
        return np.zeros((0, *(size or (1, 1)), channels or 1), np.uint8)
    target = channels or (3 if any(im.shape[-1] >= 3 for im in images) else 1)
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1:
        raise TlkitError(f"Images differ in size ({len(shapes)} sizes, e.g. {paths[0]}). "
                         f"Pass image_size (--image-size), e.g. image_size=224.")
    return np.stack([convert_images(im[None], None, target)[0] for im in images])


def load(source, *, image_size=None, channels=None, val_fraction=_DATA.val_fraction,
         test_fraction=_DATA.test_fraction, seed=_RUN.seed, on_bad_image=_DATA.on_bad_image,
         download=_DATA.download, resize=_DATA.resize, index=_DATA.index,
         exclude=_DATA.exclude, relabel=_DATA.relabel, verbose=0):
    """Load a data source (see `SOURCES`) as a `Dataset`, split three ways.

    Splits are stratified by class and seeded. A source with its own test split (pre-split
    folders, Fashion-MNIST, tfds data sets with "test") keeps it and carves only val from
    train. Folders and TFDS data stream: the result holds file names (or record positions)
    and labels, and images are decoded when a pipeline reads them.

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
        resize: how files are fitted to `image_size`: `"squash"` (default: stretch to the
            size, what Keras's loaders do), `"crop"` (centre crop to the aspect ratio first)
            or `"pad"` (keep the aspect ratio, pad with black).
        index: an `index.json` (a run's, or `tlkit audit --fix-splits`'s) that says which file
            of the folder `source` is in which split, instead of a new split.
        exclude: an audit.csv or a file of paths to leave out (`tlkit.data.overrides`).
        relabel: a `path,label` CSV of labels that replace the folders' ones.
        verbose: 1 shows a progress bar while a large folder is scanned.

    Returns:
        A `Dataset`.

    Example:
        >>> ds = load("digits", val_fraction=0.2, test_fraction=0.2, seed=1)
        >>> ds.summary()["counts"]
        {'train': 1079, 'val': 359, 'test': 359}
    """
    # issue 23: the split of an index, then the audit's exclusions and relabels, on top of the
    # plain load below (tlkit.data.overrides)
    if index is not None:
        kind, arg, _ = parse_source(source)
        dataset = index_lib.load(index, root=arg if kind == "folder" else None,
                                 image_size=size_arg(image_size), channels=channels,
                                 resize=resize)
    else:
        dataset = _load_source(source, image_size=image_size, channels=channels,
                               val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                               on_bad_image=on_bad_image, download=download, resize=resize,
                               verbose=verbose)
    if exclude is None and relabel is None:
        return dataset

    return overrides.apply(dataset, exclude=exclude, relabel=relabel)


def load_for(source, input_shape, *, resize=None, **kwargs):
    """`source` loaded (or a `Dataset` converted) at a model's `input_shape` (H, W, C).

    The one way the entry points (finetune, tune, lr-find, curve, advise) read their data at
    the backbone's input size: a source string goes through `load` with `kwargs` (its split,
    bad-image and file options) at that size and channel count; a loaded `Dataset` is
    converted (arrays now, files as they are read). `resize`: `load`'s, or None for its
    default (a `Dataset` keeps the mode it was loaded with).

    Example:
        >>> load_for("digits", (16, 16, 3)).image_shape
        (16, 16, 3)
    """
    if isinstance(source, Dataset):
        return source.converted(tuple(input_shape), resize)
    if resize is not None:
        kwargs["resize"] = resize
    return load(source, image_size=tuple(input_shape[:2]), channels=int(input_shape[2]),
                **kwargs)


def _load_source(source, *, image_size, channels, val_fraction, test_fraction, seed,
                 on_bad_image, download, resize, verbose):
    """`load` without an index or overrides."""
    kind, arg, split = parse_source(source)
    size = size_arg(image_size)
    if channels not in (None, 1, 3):
        raise TlkitError(f"channels must be 1, 3 or None. Received: channels={channels!r}.")
    splits.check_fractions(val_fraction, test_fraction)
    check_choice("on_bad_image", on_bad_image, BAD_IMAGE_POLICIES)
    check_resize(resize)
    name = os.fspath(source) if isinstance(source, os.PathLike) else source
    if kind == "folder":
        return _load_folder(arg, name, size, channels, resize, val_fraction, test_fraction,
                            seed, on_bad_image, verbose)
    if kind == "tfds":
        return _load_tfds(arg, split, name, size, channels, resize, val_fraction,
                          test_fraction, seed, download)
    loaders = {"npz": lambda: arrays.load_npz(arg), "fashion_mnist": arrays.load_fashion_mnist,
               "digits": arrays.load_digits}
    parts, names = loaders[kind]()
    native = max(_array_channels(x) for x, _ in parts.values())
    if size or channels:
        parts = {k: (convert_images(x, size, channels), y) for k, (x, y) in parts.items()}
    chosen = splits.assign({k: y for k, (x, y) in parts.items()}, val_fraction, test_fraction,
                           seed, name)
    fields = {}
    for k, (origin, pos) in chosen.items():
        x, y = parts[origin]
        fields[f"x_{k}"], fields[f"y_{k}"] = x[pos], y[pos]
    return Dataset(class_names=list(names), source=name, source_channels=native, **fields)


def _array_channels(x):
    """1 for grayscale arrays (N, H, W) or (N, H, W, 1), else 3 (RGB, or RGBA made RGB)."""
    shape = np.shape(x)
    return 1 if len(shape) == 3 or shape[-1] == 1 else 3


def _load_folder(root, name, size, channels, resize, val_fraction, test_fraction, seed,
                 on_bad_image, verbose):
    found = folder.scan(root, on_bad_image=on_bad_image, verbose=verbose)
    for note in found.notes:
        warnings.warn(note, stacklevel=3)
    probes = [p for items in found.items.values() for _, _, p in items]
    native = 3 if any(p.channels == 3 for p in probes) else 1
    channels = channels or native
    if size is None:
        seen = {}
        for items in found.items.values():
            for path, _, p in items:
                seen.setdefault((p.height, p.width), []).append(path)
        if len(seen) > 1:
            common = sorted(seen.items(), key=lambda kv: -len(kv[1]))
            listed = "; ".join(f"{h}x{w}: {len(ps)} (e.g. {ps[0]})" for (h, w), ps in common[:3])
            raise TlkitError(f"Images differ in size ({len(seen)} sizes: {listed}). "
                             f"Pass image_size (--image-size), e.g. image_size=224.")
        size = next(iter(seen))
    labels = {k: np.array([label for _, label, _ in items], np.int64)
              for k, items in found.items.items()}
    chosen = splits.assign(labels, val_fraction, test_fraction, seed, name)
    fields = {}
    for k, (origin, pos) in chosen.items():
        items = found.items[origin]
        picked = [items[i] for i in pos]
        fields[f"x_{k}"] = ImageFiles([p for p, _, _ in picked], size, channels, resize,
                                      [pr.decoder == "pil" for _, _, pr in picked])
        fields[f"y_{k}"] = labels[origin][pos]
    origin = {"kind": "folder", "root": os.path.abspath(found.root), "seed": seed,
              "val_fraction": val_fraction, "test_fraction": test_fraction}
    return Dataset(class_names=found.class_names, source=name,
                   skipped=[p for p, _ in found.skipped], problems=dict(found.skipped),
                   origin=origin, source_channels=native, **fields)


def _load_tfds(tfds_name, split, name, size, channels, resize, val_fraction, test_fraction,
               seed, download):
    # imported here: tensorflow_datasets takes seconds to import, and only tfds: sources need it
    from tlkit.data import tfds_source

    builder = tfds_source.open_builder(tfds_name, download)
    known = list(builder.info.splits)
    if split:
        parts = {"train": split}
    elif known and "train" not in known:
        raise TlkitError(f"tfds:{tfds_name} has no 'train' split; name one: "
                         + ", ".join(f"tfds:{tfds_name}:{s}" for s in known) + ".")
    else:
        parts = {"train": "train"}
        if not known or "test" in known:
            parts["test"] = "test"
    labels, keys = {}, None
    for key, split_name in parts.items():
        try:
            labels[key], *keys = tfds_source.read_labels(builder, tfds_name, split_name,
                                                        download)
        except TlkitError:
            raise
        except (ValueError, KeyError) as e:  # tfds: unknown split
            if key == "test":
                continue  # no test split: carved from train instead
            raise TlkitError(f"tfds:{tfds_name}: cannot load split {split_name!r}: {e}") from None
        if not len(labels[key]):
            raise TlkitError(f"tfds:{tfds_name}: split {split_name!r} is empty.")
    image_key = keys[0]
    num = 1 + max(int(y.max()) for y in labels.values())
    try:
        names = list(builder.info.features[keys[1]].names)
    except (AttributeError, KeyError, TypeError):
        names = []
    if len(names) < num:
        names = [str(i) for i in range(num)]
    shape = builder.info.features[image_key].shape
    if size is None:
        if shape is None or None in tuple(shape[:2]):
            raise TlkitError(f"tfds:{tfds_name} images differ in size; pass image_size "
                             f"(--image-size), e.g. image_size=224.")
        size = tuple(int(s) for s in shape[:2])
    native = None if shape is None or shape[-1] is None else (1 if shape[-1] == 1 else 3)
    channels = channels or native or 3
    chosen = splits.assign(labels, val_fraction, test_fraction, seed, name)
    fields = {}
    for k, (origin, pos) in chosen.items():
        fields[f"x_{k}"] = tfds_source.TfdsRecords(
            tfds_name, parts[origin], pos, len(labels[origin]), size, channels, keys, resize)
        fields[f"y_{k}"] = labels[origin][pos]
    return Dataset(class_names=names, source=name, source_channels=native, **fields)


__all__ = ["Dataset", "ImageFiles", "load", "load_for", "parse_source", "convert_images", "augmentation",
           "pipeline", "model_batches", "predict_labelled", "read_images", "is_files", "concat", "default_autotune",
           "SOURCES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DEBIAN", "IMAGE_EXTENSIONS",
           "RESIZE_MODES", "DEFAULT_RESIZE", "FLIPS", "VALID_SOURCES", "BAD_IMAGE_POLICIES"]
