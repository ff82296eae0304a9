"""The TensorFlow-only exports (SavedModel, TFLite, ONNX) from a process that runs Keras on
another backend (JAX).

Those formats are written by TensorFlow's own tools (Keras's `ExportArchive`, the TFLite
converter, tf2onnx), which trace the model as a TensorFlow graph. Under `KERAS_BACKEND=jax`
`tlkit.deploy.export.export` hands the writing to a child process on the TensorFlow backend
(`tlkit.deploy.export_child`): the model file (saved first to a temporary `.keras` when an
in-memory model is given) is reloaded there and the artifact is written into the export's
staging folder. Everything else stays in this process: the sample, and the check of the
artifact against this backend's own Keras model, so the figure reported is how closely the
artifact reproduces what the JAX user's model predicts.

Example:
    >>> from tlkit.deploy import tensorflow_export
    >>> tensorflow_export.TENSORFLOW_FORMATS
    ('savedmodel', 'tflite', 'onnx')
"""

import json
import pathlib
import subprocess
import sys

import numpy as np

from tlkit.core import compat, fileio
from tlkit.core.errors import TlkitError
from tlkit.deploy import saving

TENSORFLOW_FORMATS = ("savedmodel", "tflite", "onnx")  # written by TensorFlow's tools
CHILD = "tlkit.deploy.export_child"  # run as `python -m CHILD REQUEST`


def needed(fmt):
    """True when `fmt` must be written by a TensorFlow child: a TensorFlow-only format while
    this process runs Keras on another backend."""
    return fmt in TENSORFLOW_FORMATS and compat.backend() != "tensorflow"


def write(model, path, fmt, quantize, artifact, work, metadata, representative):
    """Write `artifact` (inside the staging folder `work`) in a TensorFlow child process.

    Args:
        model: the in-memory model (saved to `work` first when `path` is None).
        path: the model file it was loaded from, or None.
        fmt, quantize, metadata, representative: as `tlkit.deploy.export.export`'s.
        artifact, work: where the artifact goes, and the staging folder holding it.

    Raises:
        TlkitError: the child's own one-line error, or a child that died without one.
    """
    work = pathlib.Path(work)
    if path is None:
        path = work / ".model.keras"
        saving.save(model, path, metadata)
    request = {"model": str(path), "fmt": fmt, "quantize": quantize,
               "artifact": str(artifact), "work": str(work), "metadata": metadata,
               "representative": None}
    if representative is not None:
        request["representative"] = str(work / ".representative.npy")
        np.save(request["representative"], np.asarray(representative, "float32"))
    (work / ".request.json").write_text(json.dumps(request, default=fileio.json_default))
    proc = subprocess.run([sys.executable, "-m", CHILD, str(work / ".request.json")],
                          env=compat.tensorflow_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or "").strip().splitlines()
        message = lines[-1] if lines else "no message"
        if proc.returncode == 2:  # the child's TlkitError, one line
            raise TlkitError(message)
        raise TlkitError(f"the {fmt} export in a TensorFlow process failed (exit "
                         f"{proc.returncode}): {message}")
