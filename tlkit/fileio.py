"""Writing files so that a crash never leaves a half-written one: a temporary name, a rename.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.json")
    >>> write_json({"a": 1}, path).name
    'x.json'
"""

import contextlib
import json
import os
import pathlib
import tempfile

from tlkit.errors import TlkitError


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside `path`; on success it is renamed to `path`.

    The temporary name starts with `.NAME.` and ends with `suffix` (give the real extension
    where a writer insists on it, e.g. `.png`); on any error it is removed.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(obj, path, indent=2):
    """Write `obj` as JSON to `path` atomically; returns the path."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, default=str)
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path, suffixes=(), what="--out"):
    """Validate an output path before any work is done; return it as a `Path`.

    Raises `TlkitError` naming the path when the suffix is wrong or the folder cannot be
    created or written.
    """
    path = pathlib.Path(path)
    if suffixes and not str(path).endswith(tuple(suffixes)):
        raise TlkitError(f"{what} {path}: the file name must end with {' or '.join(suffixes)}.")
    if path.exists() and path.is_dir():
        raise TlkitError(f"{what} {path} is a folder; give a file name ending with {suffixes[0]}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TlkitError(f"{what} {path}: cannot create folder {path.parent} ({e.strerror}).")
    if not os.access(path.parent, os.W_OK):
        raise TlkitError(f"{what} {path}: folder {path.parent} is not writable.")
    return path


def check_folder_writable(folder, what="--out"):
    """Validate an output folder before any work is done; return it as a `Path`.

    Raises `TlkitError` naming the folder when it is a file, cannot be created, or is not
    writable.
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TlkitError(f"{what} {folder} is a file, not a folder; give a folder path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TlkitError(f"{what} {folder}: cannot create the folder ({e.strerror}).") from None
    if not os.access(folder, os.W_OK):
        raise TlkitError(f"{what} {folder}: the folder is not writable.")
    return folder
