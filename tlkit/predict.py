"""Using a saved model: top-k predictions for image files, and evaluation on a data set.

Example:
    >>> from tlkit import predict
    >>> rows = predict.predict_files("saved_models/photos.h5", "photos/cats", top_k=2)  # doctest: +SKIP
    >>> rows[0]["top"][0]  # doctest: +SKIP
    ('cats', 0.97)
"""

import pathlib

import numpy as np

from tlkit import data as data_lib
from tlkit import report as report_lib
from tlkit import saving
from tlkit.errors import TlkitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def image_paths(path):
    """The image files at `path`: the file itself, or the images in a folder (recursively)."""
    path = pathlib.Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise TlkitError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}.")
        return files
    raise TlkitError(f"Image path not found: {path}")


def predict_files(model_path, inputs, top_k=3, batch_size=32):
    """Top-k class names and probabilities for an image file or a folder of images.

    Returns:
        A list of `{"path": str, "top": [(class_name, probability), ...]}`.
    """
    model, meta = saving.load(model_path)
    names = saving.class_names(model, meta)
    paths = image_paths(inputs)
    if top_k < 1:
        raise TlkitError(f"--top-k must be >= 1. Received: {top_k}.")
    shape = model.input_shape[1:]
    x = data_lib.read_images(paths, tuple(shape[:2]), shape[2])
    probs = model.predict(x.astype("float32"), batch_size=batch_size, verbose=0)
    if probs.shape[-1] == 1:  # one sigmoid unit
        probs = np.concatenate([1 - probs, probs], axis=-1)
    k = min(top_k, probs.shape[-1])
    rows = []
    for p, pr in zip(paths, probs):
        idx = np.argsort(-pr)[:k]
        rows.append({"path": str(p), "top": [(names[i], float(pr[i])) for i in idx]})
    return rows


def evaluate_file(model_path, source, *, split="test", out_dir=None, seed=0, val_fraction=0.1,
                  test_fraction=0.1, on_bad_image="skip", download=False, batch_size=64):
    """Evaluate a saved model on a data source; the data is converted to the model's input.

    Args:
        model_path: a `.h5`/`.keras` model.
        source: any `tlkit.data.load` source.
        split: `"test"` (the same seeded split `finetune` held out), `"val"`, `"train"` or
            `"all"`.
        out_dir: where report.json and confusion_matrix.png go (None: nothing written).

    Returns:
        The report dict of `tlkit.report.evaluate`.
    """
    if split not in ("test", "val", "train", "all"):
        raise TlkitError(f"--split {split!r} is not valid: use test, val, train or all.")
    model, meta = saving.load(model_path)
    shape = tuple(model.input_shape[1:])
    ds = data_lib.load(source, image_size=shape[:2], channels=shape[2], seed=seed,
                       val_fraction=val_fraction, test_fraction=test_fraction,
                       on_bad_image=on_bad_image, download=download)
    parts = {"train": [(ds.x_train, ds.y_train)], "val": [(ds.x_val, ds.y_val)],
             "test": [(ds.x_test, ds.y_test)]}
    parts["all"] = parts["train"] + parts["val"] + parts["test"]
    x = np.concatenate([a for a, _ in parts[split]])
    y = np.concatenate([b for _, b in parts[split]])
    model_names = meta.get("class_names")
    if model_names and list(model_names) != list(ds.class_names):
        missing = sorted(set(ds.class_names) - set(model_names))
        if missing:
            raise TlkitError(f"Data {source} has classes the model {model_path} does not know: "
                             f"{', '.join(missing[:10])}. The model's classes: "
                             f"{', '.join(model_names)}.")
        remap = np.array([model_names.index(c) for c in ds.class_names])
        y = remap[y]
    names = list(model_names) if model_names else list(ds.class_names)
    if len(x) == 0:
        raise TlkitError(f"The {split} split of {source} is empty.")
    return report_lib.evaluate(model, x, y, names, out_dir=out_dir, batch_size=batch_size,
                               extra={"model": str(model_path), "data": str(source),
                                      "split": split})
