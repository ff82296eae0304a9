"""Acting on an audit: leave files out (`exclude`) and correct labels (`relabel`).

- `exclude`: an `audit.csv` (every row's `path` is left out; its `kind` column may be
  filtered with `kinds`), or a text file of paths, one a line (`#` starts a comment).
- `relabel`: a CSV of `path,label` rows (a header line `path,label` is optional); `label` is
  a class name of the data.

Paths are relative to the data folder (as `tlkit audit` writes them) or absolute. They apply
to image-folder data (an index of files); `apply` returns a new `Dataset` whose summary
records what was changed (`Dataset.overrides`), which report.json and the model card keep.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from tlkit import data
    >>> root = tempfile.mkdtemp()
    >>> for c in ("cats", "dogs"):
    ...     os.makedirs(os.path.join(root, c))
    ...     for i in range(5):
    ...         Image.new("RGB", (4, 4), (50 * i, 0, 0)).save(os.path.join(root, c, f"{i}.png"))
    >>> listed = os.path.join(root, "drop.txt")
    >>> _ = open(listed, "w").write("cats/0.png\\n")
    >>> ds = data.load(root, exclude=listed, val_fraction=0.2, test_fraction=0.2)
    >>> sum(len(ds.split(s)[1]) for s in ("train", "val", "test")), ds.overrides["excluded"]
    (9, 1)
"""

import csv
import dataclasses
import os

import numpy as np

from tlkit.core.errors import TlkitError

SPLITS = ("train", "val", "test")


def _rows(path, what):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    except FileNotFoundError:
        raise TlkitError(f"{what} file not found: {path}.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TlkitError(f"Cannot read {what} file {path}: {e}") from None


def read_exclude(path, kinds=None):
    """The paths an exclude file lists: an audit.csv's `path` column, or one path a line."""
    rows = _rows(path, "--exclude")
    if rows and rows[0][:1] == ["path"] and "kind" in rows[0]:
        head = rows[0]
        p, k = head.index("path"), head.index("kind")
        return [r[p] for r in rows[1:] if len(r) > max(p, k) and (kinds is None or r[k] in kinds)]
    return [r[0].strip() for r in rows if r[0].strip()]


def read_relabel(path):
    """{path: class name} of a `path,label` CSV."""
    rows = _rows(path, "--relabel")
    if rows and [c.strip() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    out = {}
    for n, r in enumerate(rows, start=1):
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            raise TlkitError(f"--relabel {path}: row {n} is not `path,label`: {','.join(r)!r}.")
        out[r[0].strip()] = r[1].strip()
    return out


def _key(path, root):
    path = os.path.normpath(path)
    return os.path.normpath(os.path.relpath(path, root)) if os.path.isabs(path) else path


def apply(dataset, exclude=None, relabel=None):
    """`dataset` without the files `exclude` lists and with the labels `relabel` gives.

    Args:
        dataset: a `Dataset` of an image folder (its images are files).
        exclude: an audit.csv or a file of paths, or None.
        relabel: a `path,label` CSV, or None.

    Returns:
        A new `Dataset`; `overrides` records the files and counts. A path that matches no
        file, or a label that is not a class, raises `TlkitError`.
    """
    if exclude is None and relabel is None:
        return dataset
    if not (dataset.streams and dataset.origin and hasattr(dataset.x_train, "paths")):
        raise TlkitError(f"--exclude and --relabel name image files: they need an image "
                         f"folder as --data, not {dataset.source!r}.")
    root = dataset.origin["root"]
    drop = {_key(p, root) for p in read_exclude(exclude)} if exclude is not None else set()
    new_labels = ({_key(p, root): v for p, v in read_relabel(relabel).items()}
                  if relabel is not None else {})
    unknown = sorted({v for v in new_labels.values() if v not in dataset.class_names})
    if unknown:
        raise TlkitError(f"--relabel {relabel}: {unknown[0]!r} is not a class of the data. "
                         f"Classes: {', '.join(dataset.class_names)}.")
    fields, seen, excluded, relabelled = {}, set(), 0, 0
    for s in SPLITS:
        x, y = dataset.split(s)
        keys = [_key(p, root) for p in x.paths]
        seen.update(keys)
        keep = np.array([k not in drop for k in keys], bool)
        y = y.copy()
        for i, k in enumerate(keys):
            if k in new_labels and keep[i]:
                target = dataset.class_names.index(new_labels[k])
                relabelled += int(y[i] != target)
                y[i] = target
        excluded += int((~keep).sum())
        fields[f"x_{s}"], fields[f"y_{s}"] = x[np.flatnonzero(keep)], y[keep]
    missing = sorted((drop | set(new_labels)) - seen - set(dataset.skipped))
    if missing:
        raise TlkitError(f"{len(missing)} path(s) of --exclude/--relabel match no image of "
                         f"the data, e.g. {missing[0]!r} (paths are relative to {root}).")
    record = {"exclude": os.fspath(exclude) if exclude is not None else None,
              "excluded": excluded,
              "relabel": os.fspath(relabel) if relabel is not None else None,
              "relabelled": relabelled}
    return dataclasses.replace(dataset, overrides=record, **fields)
