"""TensorFlow's start-up lines kept off the console, for the CLI and the Python API alike.

TensorFlow 2.21 prints about nine lines when it starts: absl's "All log messages before
absl::InitializeLog() ...", oneDNN's notice, the CPU feature guard, "Could not find cuda
drivers" and, when the runtime first looks for devices, `E0000 ... failed call to cuInit`.
They are written by C++ code straight to file descriptor 2, most of them before absl reads
`TF_CPP_MIN_LOG_LEVEL`, so no Python setting can filter them.

`import tlkit` therefore installs a one-shot import hook (`install`): the first
`import tensorflow` of the process, wherever it comes from (`import keras` included), runs
with file descriptor 2 pointed at a temporary file, and so does TensorFlow's first device
query, which is where the cuInit line comes from. What was captured is dropped when the
import succeeds and written back to stderr when it fails, so a broken installation still
shows its error. `TF_CPP_MIN_LOG_LEVEL` defaults to 2 (TensorFlow's INFO and WARNING lines
after start-up, such as "Local rendezvous is aborting", stay off as well).

Set `TLKIT_TF_LOGS=1` to see everything TensorFlow prints. When TensorFlow was imported
before tlkit, its lines are already out: import tlkit first (or set
`TF_CPP_MIN_LOG_LEVEL=3` and accept the lines absl prints before it applies).

Example:
    >>> import sys
    >>> from tlkit.core import console
    >>> console.install() is None  # idempotent; a no-op once TensorFlow is loaded
    True
"""

import contextlib
import importlib.abc
import os
import sys
import tempfile

SHOW_LOGS = "TLKIT_TF_LOGS"  # set to 1: TensorFlow's start-up lines are shown


def logs_shown():
    """True when the user asked for TensorFlow's own start-up lines (`TLKIT_TF_LOGS=1`)."""
    return os.environ.get(SHOW_LOGS) == "1"


@contextlib.contextmanager
def quiet_fd2():
    """Point file descriptor 2 at a temporary file; replay it to stderr if the body raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        _restore(saved)


def _restore(saved):
    if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` with fd 2 captured, then the first device query."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with quiet_fd2():
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # the cuInit probe (configurable after)


class _TensorFlowHook(importlib.abc.MetaPathFinder):
    """A meta path finder that wraps the loader of the first `import tensorflow`, once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        uninstall()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install():
    """Silence TensorFlow's start-up lines for this process (see the module docstring).

    Does nothing when `TLKIT_TF_LOGS=1` or TensorFlow is already imported; safe to call twice.
    """
    if logs_shown():
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowHook) for f in sys.meta_path):
        return None
    sys.meta_path.insert(0, _TensorFlowHook())
    return None


def quiet_runtime():
    """Keep TensorFlow's C++ ERROR lines that are not errors off stderr for this process.

    No command prints what TensorFlow's runtime logs (`tlkit.cli.main` calls this first): on
    some CPUs every run printed `E0000 ... util.cc:131] oneDNN supports
    DT_UINT8 only on platforms with AVX-512. Falling back to the default Eigen-based
    implementation`, a notice logged at ERROR level, and libjpeg's "Premature end of JPEG
    data" for a truncated file that tlkit skips and counts anyway. Their real failures reach
    the user as Python exceptions. It raises `TF_CPP_MIN_LOG_LEVEL` to 3 (FATAL only) before
    TensorFlow starts; `TLKIT_TF_LOGS=1` keeps everything.
    """
    if logs_shown() or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def uninstall():
    """Remove the import hook (TensorFlow then starts as it would without tlkit)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TensorFlowHook)]
