"""Representative images for full-integer (int8) quantization: a sample folder, or the
training images recorded for the model.

A model that `tlkit finetune` saved as `saved_models/photos.h5` has its report folder
`saved_models/photos/` with `index.json`: the training files of that run. For array sources
(`digits`, `fashion_mnist`, `npz:PATH`) the metadata's data summary names the source, which
is loaded again. `tlkit export --sample DIR` overrides both.

The images are a seeded random choice of at most `REPRESENTATIVE_SIZE` training images, at
the model's input size, as float32 raw pixels.

Example:
    >>> from tlkit.deploy import calibration
    >>> calibration.folder_images("photos/", (32, 32, 3)).shape   # doctest: +SKIP
    (36, 32, 32, 3)
"""

import pathlib

import numpy as np

from tlkit import data as data_lib
from tlkit.core.errors import TlkitError
from tlkit.data import folder, listing
from tlkit.data import index as index_lib

REPRESENTATIVE_SIZE = 128  # TensorFlow's guide: "around 100-500 samples"
CHECK_SIZE = 256  # test images of the run an export is compared on, at most
SEED = 0
ARRAY_SOURCES = ("digits", "fashion_mnist", "npz")


def folder_images(path, input_shape, limit=REPRESENTATIVE_SIZE, resize=None):
    """Up to `limit` images of an image file or folder (`tlkit.data.listing`: recursively,
    sorted; then a seeded choice), read at `input_shape` (H, W, C) as float32 raw pixels."""
    try:
        files = listing.image_files(path)
    except TlkitError as e:
        raise TlkitError(f"--sample: {e}") from None
    files = [p for p in files if folder.probe_file(str(p)).decoder is not None]
    if not files:
        raise TlkitError(f"--sample {path}: no readable images "
                         f"({', '.join(data_lib.IMAGE_EXTENSIONS)}).")
    files = _choose(files, limit)
    x = data_lib.read_images(files, image_size=tuple(input_shape[:2]), channels=input_shape[2],
                             resize=resize or data_lib.DEFAULT_RESIZE)
    return x.astype("float32")


def training_images(model_path, metadata, input_shape, limit=REPRESENTATIVE_SIZE):
    """Up to `limit` training images of the run that saved `model_path` (see the module doc).

    Raises:
        TlkitError: when neither an index nor an array source is recorded; pass `--sample`.
    """
    model_path = pathlib.Path(model_path) if model_path is not None else None
    index = model_path.with_suffix("") / index_lib.FILENAME if model_path else None
    h, w, c = input_shape
    if index is not None and index.is_file():
        ds = index_lib.load(index, image_size=(h, w), channels=c)
        x = ds.x_train[np.sort(_choose(np.arange(len(ds.x_train)), limit))]
        images = x.to_numpy()
        if len(images):
            return images.astype("float32")
    source = (metadata.get("data") or {}).get("source")
    if source:
        kind, _, _ = data_lib.parse_source(source)
        if kind in ARRAY_SOURCES:
            ds = data_lib.load(source, image_size=(h, w), channels=c, seed=SEED)
            return np.asarray(ds.x_train[np.sort(_choose(np.arange(len(ds.x_train)), limit))],
                              "float32")
    where = (f"{index} does not exist and the metadata names no array source"
             if index is not None else "the model was not loaded from a file")
    raise TlkitError(f"int8 quantization needs representative images: pass --sample DIR (a "
                     f"folder of training-like images; in Python representative=); no record "
                     f"of the training data was found ({where}).")


def test_images(model_path, input_shape, limit=CHECK_SIZE, resize=None):
    """Up to `limit` test images of the run that saved `model_path` (its report folder's
    `index.json`, see the module doc), a seeded choice in index order, as float32 raw
    pixels; files that no longer read are left out.

    Args:
        resize: how files are fitted (the model's recorded mode); None: the index's.

    Returns:
        `(images, index path)`, or `(None, reason)` when there is no index or none of its
        test files can be read.
    """
    if model_path is None:
        return None, "the model was not loaded from a file"
    index = pathlib.Path(model_path).with_suffix("") / index_lib.FILENAME
    if not index.is_file():
        return None, f"no {index_lib.FILENAME} of the run in {index.parent}"
    h, w, c = input_shape
    ds = index_lib.load(index, image_size=(h, w), channels=c, resize=resize)
    images = []
    for i in _choose(range(len(ds.x_test)), limit):
        try:
            images.append(ds.x_test[i])
        except TlkitError:  # moved or changed since the run: the others still count
            continue
    if not images:
        return None, f"none of the {len(ds.x_test)} test files of {index} can be read"
    return np.stack(images).astype("float32"), index


def _choose(items, limit):
    if len(items) <= limit:
        return list(items)
    rng = np.random.default_rng(SEED)
    return [items[i] for i in sorted(rng.choice(len(items), limit, replace=False))]
