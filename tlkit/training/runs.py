"""The run folder: one run at a time (a lock), state to resume from, nothing left half-done.

`RunFolder(path, settings)` is entered for the whole of a `finetune`:

- **Lock.** An exclusive `flock` on `.tlkit.lock`, naming the process that holds it. A second
  run on the same folder fails at once with a line that names the first; the kernel releases
  the lock when the process ends, however it ends (kill -9 included).
- **Resume.** `state/` holds what a rerun of the same command continues from: the settings
  (`settings.json`), each finished phase's weights and history, Keras's `BackupAndRestore`
  files of the phase in progress and the cached features. A rerun with the same settings
  resumes; with other settings it is refused (`restart=True`, `--restart`, starts over).
  A run that finishes removes `state/`.
- **Nothing before training.** Entering checks and locks only: the state is written, and an
  earlier run's files are cleared, when training begins (`begin`, called by the first
  `phase_dir` or `feature_dir`). A run that fails or is interrupted before its first epoch
  ended removes everything it created (state, lock file, the folders it made), so the
  corrected command runs without `--restart`; a stale `state/` with no finished epoch is
  nothing to resume and is discarded without a word.
- **No mixing.** A fresh run removes the files an earlier run left in the folder (report,
  history, curves, checkpoints), and temporary files of saves that were killed.
- **Finished runs.** A run that finishes records its settings in `run.json` and, once its
  model file is saved, removes `checkpoints/` (each phase's best weights, kept only while a
  run can still be interrupted; the model holds the best). A later run with other settings
  in that folder (or onto that model file) is refused, naming the model and the settings
  that differ, unless `overwrite=True` (`--overwrite`); the same settings run again.
  `check_not_a_run` keeps other commands' files (lr-find's) out of run folders.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunFolder(folder, {"epochs": 2}) as run:
    ...     run.resuming
    False
"""

import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time

from tlkit.core import fileio
from tlkit.core.errors import TlkitError

LOCK_NAME = fileio.RUN_LOCK
STATE = "state"
# Files a run writes into its folder: removed before a fresh run, so folders never mix runs.
DECISIONS = "decisions.json"  # in the state folder: RunFolder.remember
RECORD = "run.json"  # a finished run's settings: what a later run in its folder is checked against
RUN_FILES = ("report.json", "history.csv", "curves.png", "confusion_matrix.png",
             "top_losses.png", "settings.yaml", "index.json", "model_card.md", RECORD)
RUN_DIRS = ("checkpoints", "feature_cache", "image_cache", "tensorboard")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run with a run folder: the message says where the state is."""


class RunFolder:
    """A locked run folder with its resume state (see the module doc)."""

    def __init__(self, path, settings, *, restart=False, model_path=None):
        self.path = pathlib.Path(path)
        self.settings = _jsonable(settings)
        self.restart = restart
        self.model_path = pathlib.Path(model_path) if model_path else None
        self.state = self.path / STATE
        self.resuming = False
        self.begun = False
        self._fd = None
        self._created = []  # folders this run made (removed if it fails before any epoch)

    # -- lock ----------------------------------------------------------------------------

    def __enter__(self):
        self._created = fileio.created_folders(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
        self._lock_created = not lock.exists()
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise TlkitError(f"{self.path} is in use by {holder}; wait for it to finish or "
                             f"give another --out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"tlkit run pid {os.getpid()} started "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({' '.join(sys.argv[:1] + sys.argv[1:6])}"
                       f"{' ...' if len(sys.argv) > 6 else ''})").encode(), 0)
        self._fd = fd
        try:
            self._prepare()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not self.has_progress():
            self._undo()
        self._release()
        return False

    def has_progress(self):
        """True once an epoch of this run (or of the interrupted one it continues) ended."""
        return self.state.is_dir() and any(
            (d / name).is_file() for d in self.state.glob("phase*")
            for name in ("done.json", "epochs.json"))

    def _undo(self):
        """Remove what a run that failed before its first epoch ended created."""
        shutil.rmtree(self.state, ignore_errors=True)
        for name in RUN_DIRS:  # caches made for this run only; none holds a finished result
            if self.begun:
                shutil.rmtree(self.path / name, ignore_errors=True)
        if self.begun:
            (self.path / "index.json").unlink(missing_ok=True)
        if self._lock_created:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        for folder in reversed(self._created):
            try:
                folder.rmdir()  # only if empty: never a folder that holds anything
            except OSError:
                break

    def _release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # -- state ---------------------------------------------------------------------------

    def _prepare(self):
        remove_stale_temporaries(self.path)
        if self.model_path is not None:
            remove_stale_temporaries(self.model_path.parent, self.model_path.name)
        saved = self.state / "settings.json"
        if saved.is_file() and not self.restart and self.has_progress():
            try:
                before = json.loads(saved.read_text())
            except ValueError:
                before = None
            if before == self.settings:
                self.resuming = self.begun = True
                return
            changed = sorted(k for k in set(before or {}) | set(self.settings)
                             if (before or {}).get(k) != self.settings.get(k))
            raise TlkitError(f"{self.path} holds the saved state of an interrupted run with "
                             f"other settings ({', '.join(changed[:5]) or 'unreadable'}); "
                             f"rerun that command to continue it, or pass --restart to "
                             f"discard it.")

    def begin(self):
        """Training starts: clear an earlier run's files and write the resume state."""
        if self.begun:
            return
        self.begun = True
        shutil.rmtree(self.state, ignore_errors=True)
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(self.path / name, ignore_errors=True)
        for old in self.path.glob("shard-*.json"):
            old.unlink()
        fileio.write_json(self.settings, self.state / "settings.json")

    def remember(self, key, value):
        """Record a decision made at run time (JSON) that a resumed run must not make again
        differently: `tlkit.training.precision`'s auto choice depends on a timed probe."""
        path = self.state / DECISIONS
        decisions = json.loads(path.read_text()) if path.is_file() else {}
        decisions[key] = value
        fileio.write_json(decisions, path)

    def recalled(self, key):
        """What `remember` recorded under `key` before the interruption (None when this run
        is not resuming, or did not record it)."""
        path = self.state / DECISIONS
        if not self.resuming or not path.is_file():
            return None
        try:
            return json.loads(path.read_text()).get(key)
        except ValueError:
            return None

    def phase_dir(self, index):
        """The folder of phase `index`'s state (BackupAndRestore files, history)."""
        self.begin()
        folder = self.state / f"phase{index + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def finished_phase(self, index):
        """(weights path, history dict) of a phase that finished before, or None."""
        folder = self.state / f"phase{index + 1}"
        done = folder / "done.json"
        if not done.is_file():
            return None
        return folder / "final.weights.h5", json.loads(done.read_text())

    def finish_phase(self, index, model, history):
        """Record that phase `index` finished: its final weights and its history."""
        folder = self.phase_dir(index)
        with fileio.atomic_path(folder / "final.weights.h5", suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        fileio.write_json(history, folder / "done.json")

    def feature_dir(self):
        """Where cached features live until the run finishes (reused by a resumed run)."""
        self.begin()
        return self.state / "features"

    def complete(self):
        """The run finished: record its settings (`RECORD`); its resume state, and once its
        model file is saved the phases' checkpoints, are no longer needed."""
        fileio.write_json({"settings": self.settings,
                           "model": str(self.model_path) if self.model_path else None},
                          self.path / RECORD)
        if self.model_path is not None and self.model_path.is_file():
            shutil.rmtree(self.path / "checkpoints", ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def check_finished(folder, settings, model_path=None, *, overwrite=False):
    """Refuse to replace a finished run with one of other settings (one line, naming the model
    and what differs; `--overwrite` replaces it). Called before any data is read.

    Args:
        folder: the run's report folder (None: no folder, nothing to check).
        settings: the new run's settings (as `RunFolder` takes them).
        model_path: the model file the run will save, if any.
        overwrite: replace a finished run whatever its settings.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunFolder(folder, {"epochs": 2}) as run:
        ...     run.complete()
        >>> check_finished(folder, {"epochs": 2})  # the same run again: fine
        >>> check_finished(folder, {"epochs": 3})
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: ... is a finished run with other settings (epochs: 2 -> 3); ...
    """
    if overwrite or folder is None:
        return
    folder = pathlib.Path(folder)
    probe = RunFolder(folder, settings)
    if probe.has_progress():  # an interrupted run: resumed or refused by RunFolder
        return
    model = pathlib.Path(model_path) if model_path else None
    name = model if model is not None and model.is_file() else folder
    record = folder / RECORD
    if record.is_file():
        try:
            before = json.loads(record.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            before = None
        if before == probe.settings:
            return
        if isinstance(before, dict):
            diff = [f"{k}: {json.dumps(before.get(k))} -> {json.dumps(probe.settings.get(k))}"
                    for k in sorted(set(before) | set(probe.settings))
                    if before.get(k) != probe.settings.get(k)]
            shown = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")
            raise TlkitError(f"{name} is a finished run with other settings ({shown}); pass "
                             f"--overwrite to replace it, or give another --out.")
    elif name == folder and not (folder / "report.json").is_file():
        return
    raise TlkitError(f"{name} holds a finished run whose settings are not recorded (no "
                     f"readable {folder / RECORD}: an older tlkit, or not a tlkit run); pass "
                     f"--overwrite to replace it, or give another --out.")


def check_not_a_run(folder, what="--out"):
    """Refuse to write into a tlkit run's folder (finished or interrupted; see
    `fileio.is_run_folder`): its files would mix with another command's.

    Example:
        >>> import tempfile
        >>> check_not_a_run(tempfile.mkdtemp())  # an empty folder is fine
    """
    if fileio.is_run_folder(folder):
        raise TlkitError(f"{what} {folder} is the folder of a tlkit run (its report or resume "
                         f"state); give another folder.")


def remove_stale_temporaries(folder, name=None):
    """Remove temporary files that killed atomic writes left in `folder` (`.NAME.*`).

    Called with the run folder's lock held, so no other tlkit run is writing these names.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(f".{name}.*" if name else ".*.*"):
        if p.name != LOCK_NAME and p.is_file() and p.suffix in (
                ".tmp", ".h5", ".npy", ".png", ".json", ".keras"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def settings_key(settings):
    """A short hash of run settings (for messages and folder names)."""
    return hashlib.blake2b(json.dumps(_jsonable(settings), sort_keys=True).encode(),
                           digest_size=6).hexdigest()


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))
