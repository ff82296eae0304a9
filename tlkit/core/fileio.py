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

from tlkit.core.errors import TlkitError


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


def json_default(obj):
    """`json.dumps`'s `default=` for tlkit's files: an object's `to_json()` summary when it
    has one (`tlkit.deploy.feature_score.FeatureScore`, whose arrays are stored in binary),
    else `str(obj)`."""
    to_json = getattr(obj, "to_json", None)
    return to_json() if callable(to_json) else str(obj)


def write_json(obj, path, indent=2):
    """Write `obj` as JSON to `path` atomically; returns the path."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, default=json_default)
    return path


def printable_path(path):
    """`path` as text that any UTF-8 writer accepts: bytes that are not UTF-8 become `\\xNN`.

    Linux file names are bytes; Python keeps undecodable ones as lone surrogates, which a
    UTF-8 file or terminal refuses (`UnicodeEncodeError`). CSV and console output use this
    form; JSON escapes the same characters itself (`\\udcNN`), which reads back as the path.

    Example:
        >>> printable_path(b"photos/caf\\xe9.jpg".decode("utf-8", "surrogateescape"))
        'photos/caf\\\\xe9.jpg'
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_model_name(path, suffixes, accepted, folders=False):
    """Refuse a path that by its name is no model file (a photo given as the model), before
    a loader answers with a paragraph about formats it cannot read.

    Args:
        path: the path the user gave as a model.
        suffixes: the model file suffixes accepted here (lower case, with the dot).
        accepted: what to give instead, for the message (`"a .h5 or .keras model"`).
        folders: whether a folder is accepted (a SavedModel): then a folder passes.

    Raises:
        TlkitError: `"X is not a model file; give ACCEPTED."` (one line).

    Example:
        >>> check_model_name("photos/cat.jpg", (".h5", ".keras"), "a .h5 or .keras model")
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: photos/cat.jpg is not a model file; give a .h5 or .keras model.
    """
    p = pathlib.Path(path)
    if (folders and p.is_dir()) or p.suffix.lower() in suffixes:
        return p
    raise TlkitError(f"{printable_path(os.fspath(path))} is not a model file; give {accepted}.")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path, suffixes=(), what="--out"):
    """Validate an output path before any work is done; return it as a `Path`.

    Raises `TlkitError` naming the path when the suffix is wrong, or when its folder is a
    file or cannot be created or written. Nothing is left behind: the folders appear when the
    file is written (`atomic_path`), so a run refused later leaves no empty folder.
    """
    path = pathlib.Path(path)
    if suffixes and not str(path).endswith(tuple(suffixes)):
        raise TlkitError(f"{what} {path}: the file name must end with {' or '.join(suffixes)}.")
    if path.exists() and path.is_dir():
        raise TlkitError(f"{what} {path} is a folder; give a file name ending with {suffixes[0]}.")
    problem = _creatable(path.parent)
    if problem:
        raise TlkitError(f"{what} {path}: cannot create folder {path.parent} ({problem})."
                         if problem != "not writable" else
                         f"{what} {path}: folder {path.parent} is not writable.")
    return path


def check_folder_writable(folder, what="--out"):
    """Validate an output folder before any work is done; return it as a `Path`.

    Raises `TlkitError` naming the folder when it is a file or cannot be created or written.
    Nothing is left behind (see `check_writable`).
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TlkitError(f"{what} {folder} is a file, not a folder; give a folder path.")
    problem = _creatable(folder)
    if problem:
        raise TlkitError(f"{what} {folder}: cannot create the folder ({problem})."
                         if problem != "not writable" else
                         f"{what} {folder}: the folder is not writable.")
    return folder


def _creatable(folder):
    """None when `folder` is a writable folder or could be made; else why not (a phrase).

    A folder that does not exist is tried for real: a temporary folder is made, and removed
    at once, in its nearest existing ancestor (`os.access` says yes to root everywhere, /proc
    included).
    """
    folder = pathlib.Path(os.path.abspath(folder))
    if folder.is_dir():
        return None if os.access(folder, os.W_OK | os.X_OK) else "not writable"
    existing = folder.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tlkit-check-", dir=existing))
    except OSError as e:
        return e.strerror or str(e)
    return None


def created_folders(folder):
    """The folders that `mkdir(parents=True)` of `folder` would create, outermost first."""
    folder = pathlib.Path(os.path.abspath(folder))
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


# A tlkit run folder holds this lock file (`tlkit.training.runs`) for as long as it exists.
RUN_LOCK = ".tlkit.lock"
# Any of these beside each other marks a run or report folder that tlkit wrote.
_RUN_MARKERS = ((RUN_LOCK,), ("state", "settings.json"), ("report.json", "history.csv"),
                ("report.json", "index.json"))


def is_run_folder(folder):
    """True for a folder that a tlkit run wrote (its lock, resume state or report files).

    Image scans skip such folders, so a run's own PNGs are never read as training images.
    """
    folder = pathlib.Path(folder)
    return any(all((folder / name).exists() for name in names) for names in _RUN_MARKERS)


def check_outside(path, data_root, what):
    """Refuse an output `path` that is, contains or lies inside the data folder `data_root`.

    Symbolic links are resolved on both sides. `what` names the output (`--out`); the error
    names both paths and suggests a place beside the data.

    Example:
        >>> import tempfile, os
        >>> root = tempfile.mkdtemp()
        >>> check_outside(os.path.join(root, "run"), root, "--out")
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: --out ... is inside the data folder ...; tlkit never writes into the data it reads: give a path outside it, e.g. ...
    """
    if path is None or data_root is None:
        return
    out = os.path.realpath(path)
    root = os.path.realpath(data_root)
    if not os.path.isdir(root):
        return
    common = os.path.commonpath([out, root])
    if common not in (out, root):
        return
    where = "is" if out == root else "is inside" if common == root else "contains"
    suggestion = os.path.join(os.path.dirname(root) or ".", "saved_models",
                              os.path.basename(path.rstrip(os.sep)) if isinstance(path, str)
                              else pathlib.Path(path).name)
    raise TlkitError(f"{what} {path} {where} the data folder {data_root}; tlkit never writes "
                     f"into the data it reads: give a path outside it, e.g. {suggestion}.")
