"""The files of an audit folder: audit.json, audit.csv, label_scores.csv, the galleries,
summary.md and (with `--fix-splits`) index.json, staged in a hidden folder inside `out` and
moved into place at the end, so that an error leaves no partial audit; and how the findings
name an image (`names`).

Example:
    >>> import numpy as np
    >>> names(None, "train", np.zeros((2, 8, 8, 1)))
    ['train/00000', 'train/00001']
"""

import csv
import os
import pathlib
import shutil
import tempfile

import numpy as np

from tlkit.audit import duplicates, gallery, report
from tlkit.audit.report import KINDS
from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.data import ImageFiles, decode
from tlkit.data import index as index_lib

FIELDS = ("path", "split", "kind", "score", "given", "suggested", "other")
SPLITS = duplicates.SPLIT_ORDER


def names(dataset, split, x):
    """Paths relative to the data root (folders), tfds record names, or `split/NNNNN`."""
    if hasattr(x, "paths"):
        root = (dataset.origin or {}).get("root")
        return [os.path.relpath(p, root) if root and not str(p).startswith("tfds:") else str(p)
                for p in x.paths]
    return [f"{split}/{i:05d}" for i in range(len(x))]


def reader(dataset):
    """path (as in the issues) -> uint8 image, for the galleries."""
    where = {}
    for s in SPLITS:
        x, _ = dataset.split(s)
        for i, name in enumerate(names(dataset, s, x)):
            where[name] = (x, i)

    def read(name):
        x, i = where.get(name, (None, None))
        if x is None:
            return None
        try:
            if isinstance(x, ImageFiles):
                return decode.read_image(x.paths[i])
            return np.asarray(x[i])
        except TlkitError:
            return None

    return read


def write(result, out, dataset, fixed):
    """Write every file into a staging folder, then move them into `out`; return the paths."""
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = pathlib.Path(tempfile.mkdtemp(prefix=".audit-", dir=out))
    try:
        if fixed is not None:
            index_lib.save(fixed[0], stage / index_lib.FILENAME)
            result.summary["fix_splits"] = {"index": str(out / index_lib.FILENAME),
                                            "moved": fixed[1]}
        fileio.write_json(result.to_dict(), stage / "audit.json")
        with open(stage / "audit.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(result.issues)
        with open(stage / "label_scores.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, list(result.label_scores[0]) if result.label_scores else
                               ["path", "label_quality"])
            w.writeheader()
            w.writerows(result.label_scores)
        read = reader(dataset)
        shown = []
        for kind in KINDS:
            rows = [r for r in result.issues if r["kind"] == kind]
            if rows:
                gallery.save(kind, rows, read, stage / "galleries" / f"{kind}.png",
                             total=result.summary["counts"][kind])
                shown.append(kind)
        (stage / "summary.md").write_text(report.markdown(result, shown), encoding="utf-8")
        files = []
        for p in sorted(stage.rglob("*")):
            if p.is_file():
                target = out / p.relative_to(stage)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, target)
                files.append(target)
        return files
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
