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
