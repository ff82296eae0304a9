"""Scanning an image folder into items: paths, labels, source splits and header facts.

The scan reads no pixels: it lists the class folders (flat `DIR/<class>/` or pre-split
`DIR/train/<class>/`, `val/` or `validation/`, `test/`), reads each file's header
(`tlkit.data.decode.probe`: format, size, mode, EXIF orientation) and checks that JPEG and
PNG files end where their format says, which finds non-images and truncated files without
decoding them. Symbolic links to folders are followed once: a link back into a folder
already being scanned (a loop, or a second path to the same class) is skipped with a note.
Folders that a tlkit run wrote (`tlkit.core.fileio.is_run_folder`: a run's lock, state or report)
are never scanned, so a run's own PNGs cannot become training images.

Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for c in ("cats", "dogs"):
    ...     os.makedirs(os.path.join(root, c))
    ...     Image.new("RGB", (4, 4)).save(os.path.join(root, c, "a.png"))
    >>> found = scan(root)
    >>> found.class_names, {k: len(v) for k, v in found.items.items()}
    (['cats', 'dogs'], {'train': 2})
"""

import dataclasses
import os
from pathlib import Path

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.data import decode

VALID_SOURCES = ("Valid sources: an image folder (DIR/<class>/*.jpg or DIR/train/<class>/...), "
                 "tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits.")
SPLIT_DIRS = ("train", "val", "validation", "test")
_PROGRESS_FROM = 2000  # files: a progress bar for scans at least this long (when verbose)


@dataclasses.dataclass
class Scan:
    """What `scan` found: per source split, (path, label, Probe) items; notes to warn."""

    root: str
    class_names: list
    items: dict
    skipped: list  # [(path, reason)]
    notes: list


def scan(root, on_bad_image="skip", verbose=0):
    """List and probe the images of folder `root` (see the module doc).

    Args:
        root: the folder.
        on_bad_image: `"skip"` (note them in `Scan.skipped`) or `"error"` (raise at the first).
        verbose: 1 shows a progress bar while a large folder is probed.

    Returns:
        A `Scan`. Raises `TlkitError` for a missing folder, no class folders, fewer than two
        classes with images, or a folder in which no file is a readable image.
    """
    root = Path(root)
    if not root.exists():
        raise TlkitError(f"Data folder not found: {str(root)!r}. {VALID_SOURCES}")
    if not root.is_dir():
        raise TlkitError(f"Data source {str(root)!r} is a file, not a folder. {VALID_SOURCES}")
    visited = {os.path.realpath(root)}
    notes = []
    dirs = {p.name: p for p in _subdirs(root, visited, notes)}
    if "train" in dirs:
        others = sorted(set(dirs) - set(SPLIT_DIRS))
        if others:
            raise TlkitError(f"{root} mixes split folders (train/, val/, test/) with other folders "
                             f"({', '.join(others)}): put the class folders inside the split "
                             f"folders.")
        if "val" in dirs and "validation" in dirs:
            raise TlkitError(f"{root} has both val/ and validation/: keep one.")
        layout = {"train": dirs["train"], "val": dirs.get("val", dirs.get("validation")),
                  "test": dirs.get("test")}
        layout = {k: v for k, v in layout.items() if v is not None}
    elif dirs and set(dirs) <= set(SPLIT_DIRS):
        raise TlkitError(f"{root} has {', '.join(sorted(dirs))}/ but no train/: "
                         f"add train/<class>/.")
    else:
        layout = {"train": root}
    classes = {k: {p.name: p for p in (_subdirs(d, visited, notes) if d != root
                                       else dirs.values())}
               for k, d in layout.items()}
    for k, d in layout.items():
        if not classes[k]:
            what = "holds files but no" if any(p.is_file() for p in _visible(d)) else "has no"
            raise TlkitError(f"{d} {what} class subfolders. Expected one subfolder per class, "
                             f"e.g. photos/cats/*.jpg and photos/dogs/*.jpg (or "
                             f"photos/train/cats/..., photos/val/..., photos/test/...).")
    listed = {k: {c: _list_files(p, visited, notes) for c, p in classes[k].items()}
              for k in layout}
    total = sum(len(f) for per in listed.values() for f in per.values())
    bar = None
    if verbose and total >= _PROGRESS_FROM:
        import keras

        print(f"tlkit: scanning {total:,} files in {root}")
        bar = keras.utils.Progbar(total, unit_name="file")
    skipped, probed, done = [], {}, 0
    for k in layout:
        probed[k] = {}
        for c, files in listed[k].items():
            good = []
            for path in files:
                p = probe_file(path)
                if p.decoder is None:
                    if on_bad_image == "error":
                        raise TlkitError(f"Cannot read image {path}: {p.problem}. Remove it, or "
                                         f"pass on_bad_image='skip' (--on-bad-image skip) to "
                                         f"skip such files.")
                    skipped.append((path, p.problem))
                else:
                    good.append((path, p))
                done += 1
                if bar is not None and (done % 500 == 0 or done == total):
                    bar.update(done)
            probed[k][c] = good
    if total and len(skipped) == total:
        path, reason = skipped[0]
        raise TlkitError(f"No file in {root} is a readable image ({total} tried; e.g. {path}: "
                         f"{reason}). Image files end in {' '.join(decode.IMAGE_EXTENSIONS)}.")
    names = sorted(set().union(*classes.values()))
    empty = [c for c in names if not probed["train"].get(c)]
    if skipped:
        shown = ", ".join(p for p, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        notes.append(f"Skipped {len(skipped)} unreadable or non-image file(s) in {root}: {shown}")
    if empty:
        notes.append(f"Excluded {len(empty)} class folder(s) with no readable training images: "
                     f"{', '.join(empty)}")
        names = [c for c in names if c not in empty]
    if len(names) < 2:
        raise TlkitError(f"{root} has {len(names)} class folder(s) with images "
                         f"({', '.join(names) or 'none'}); a classifier needs at least two, "
                         f"e.g. photos/cats/*.jpg and photos/dogs/*.jpg.")
    items = {k: [(path, label, p) for label, c in enumerate(names)
                 for path, p in probed[k].get(c, [])] for k in layout}
    return Scan(str(root), [readable_name(n) for n in names], items, skipped, notes)


def readable_name(name):
    """A class folder's name as text: bytes that are not UTF-8 become U+FFFD.

    File names are bytes on Linux; Python keeps undecodable ones as lone surrogates, which
    plots, JSON readers and terminals refuse. The folder itself is still read by its path.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def probe_file(path):
    """`decode.probe`, plus a check that a JPEG or PNG is not cut short.

    A JPEG normally ends with its end-of-image marker and a PNG with its IEND chunk; a file
    whose last kilobyte lacks them (cut short, or with data appended, as some cameras do) is
    decoded once with PIL to decide, so only those rare files cost a full decode.
    """
    p = decode.probe(path)
    if p.decoder is None:
        return p
    marker = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}.get(
        os.path.splitext(path)[1].lower())
    if marker is None:
        return p
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 1024))
            tail = f.read()
    except OSError as e:
        return decode.Probe(None, f"{type(e).__name__}: {e}")
    if marker in tail:
        return p
    try:
        decode.read_image(path)
    except TlkitError:
        return decode.Probe(None, "truncated or corrupt image data")
    return p


def _visible(folder):
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))


def _subdirs(folder, visited, notes):
    """Visible sub-folders of `folder`, following a symlink only to a folder not yet seen."""
    out = []
    for p in _visible(folder):
        if not p.is_dir():
            continue
        if fileio.is_run_folder(p):
            notes.append(f"Not scanning {p}: it is a tlkit run folder, not images")
            continue
        real = os.path.realpath(p)
        if p.is_symlink() and (real in visited or _inside(os.path.realpath(folder), real)):
            notes.append(f"Not following {p}: it links to {real}, a folder already scanned")
            continue
        out.append(p)
    return out


def _inside(path, ancestor):
    return os.path.commonpath([path, ancestor]) == ancestor


def _list_files(folder, visited, notes):
    """Visible files under `folder`, recursively, in name order, without link loops."""
    out = []
    real = os.path.realpath(folder)
    if real in visited and os.path.islink(folder):
        return out
    visited.add(real)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(x for x in dirnames if not x.startswith(".")):
            target = os.path.realpath(os.path.join(dirpath, d))
            if fileio.is_run_folder(target):
                notes.append(f"Not scanning {os.path.join(dirpath, d)}: it is a tlkit run "
                             f"folder, not images")
                continue
            if target in visited:
                notes.append(f"Not following {os.path.join(dirpath, d)}: it links to {target}, "
                             f"a folder already scanned")
                continue
            visited.add(target)
            keep.append(d)
        dirnames[:] = keep
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    return out
