"""The index of a run's data: which file is in which split, with which label, saved as JSON.

`tlkit finetune` writes `index.json` into the run folder. `tlkit evaluate` reads it back, so
it scores exactly the test files of that run, even after files were added to the folder,
and it opens only those files. Paths are stored relative to the data folder, so the folder
may move (`load(path, root=NEW)`); each file's size and mtime are kept for the feature
cache's content key.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from tlkit import data
    >>> root = tempfile.mkdtemp()
    >>> for c in ("cats", "dogs"):
    ...     os.makedirs(os.path.join(root, c))
    ...     for i in range(5):
    ...         Image.new("RGB", (4, 4), (50 * i, 0, 0)).save(os.path.join(root, c, f"{i}.png"))
    >>> ds = data.load(root, val_fraction=0.2, test_fraction=0.2)
    >>> path = save(ds, os.path.join(root, "index.json"))
    >>> again = load(path)
    >>> list(again.x_test.paths) == list(ds.x_test.paths)
    True
"""

import json
import os

import numpy as np

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.data.dataset import SPLITS, Dataset
from tlkit.data.files import ImageFiles

FORMAT = "tlkit-index"
VERSION = 1
FILENAME = "index.json"


def save(dataset, path):
    """Write the index of `dataset` (a folder source) to `path` atomically; returns the path.

    Raises `TlkitError` for a dataset whose images are arrays (they have no files to index).
    """
    if not dataset.streams or not dataset.origin:
        raise TlkitError(f"Only image-folder data has an index; {dataset.source!r} is held "
                         f"as arrays.")
    root = dataset.origin["root"]
    splits = {}
    for name in SPLITS:
        x, y = dataset.split(name)
        splits[name] = {"paths": [os.path.relpath(p, root) for p in x.paths],
                        "labels": [int(v) for v in y],
                        "pil": [int(i) for i in np.flatnonzero(x.use_pil)],
                        "stats": x.stats.tolist()}
    doc = {"format": FORMAT, "version": VERSION, "source": dataset.source, "root": root,
           "class_names": list(dataset.class_names),
           "image_size": list(dataset.x_train.image_size), "channels": dataset.x_train.channels,
           "resize": dataset.x_train.resize,
           "settings": {k: v for k, v in dataset.origin.items() if k != "root"},
           "splits": splits,
           "skipped": [{"path": p, "reason": dataset.problems.get(p, "")}
                       for p in dataset.skipped]}
    return fileio.write_json(doc, path, indent=None)


def load(path, root=None, *, image_size=None, channels=None, resize=None):
    """The `Dataset` an index describes; `root` replaces the folder it was written for.

    Args:
        path: an `index.json`.
        root: the data folder now (default: the one recorded).
        image_size, channels, resize: decode at these instead of the recorded ones.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise TlkitError(f"Index file not found: {path}.") from None
    except (OSError, ValueError) as e:
        raise TlkitError(f"Cannot read index file {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TlkitError(f"{path} is not a tlkit index (no \"format\": \"{FORMAT}\").")
    root = os.path.abspath(root if root is not None else doc["root"])
    size = tuple(image_size or doc["image_size"])
    channels = channels or doc["channels"]
    resize = resize or doc["resize"]
    parts = {}
    for name in SPLITS:
        s = doc["splits"][name]
        use_pil = np.zeros(len(s["paths"]), bool)
        use_pil[s["pil"]] = True
        files = ImageFiles([os.path.join(root, p) for p in s["paths"]], size, channels, resize,
                           use_pil, np.asarray(s["stats"], np.int64).reshape(-1, 2))
        parts[f"x_{name}"] = files
        parts[f"y_{name}"] = np.asarray(s["labels"], np.int64)
    skipped = [item["path"] for item in doc.get("skipped", [])]
    problems = {item["path"]: item.get("reason", "") for item in doc.get("skipped", [])}
    return Dataset(class_names=list(doc["class_names"]), source=doc["source"], skipped=skipped,
                   problems=problems, origin={**doc.get("settings", {}), "root": root,
                                              "index": os.fspath(path)}, **parts)
