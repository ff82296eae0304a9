"""Deployable model files, `.h5` or `.keras`: the whole model plus tlkit metadata inside.

A tlkit model file is an ordinary Keras 3 model file (preprocessing and classifier inside,
standard layers only), so `keras.models.load_model(path)` loads it in a process that never
imports tlkit, with `safe_mode` on. tlkit adds a JSON object with the class names, the input
contract (`input_shape`, `input`), backbone, strategy, data summary, metrics and the tlkit
version:

- `.h5` (HDF5, what plain-Keras deployments load): the root attribute `tlkit_metadata`.
- `.keras` (Keras 3's native zip): a `tlkit_metadata.json` entry in the zip, beside Keras's
  own `config.json`, `metadata.json` and `model.weights.h5`. Keras reads its entries by name
  and ignores others (keras/src/saving/saving_lib.py, checked with Keras 3.15), so
  `keras.models.load_model` loads the file unchanged; `unzip -p m.keras tlkit_metadata.json`
  shows the metadata.

Writes go to a temporary file beside the target and are renamed over it, so an existing
model is never left half-written.

Example:
    >>> from tlkit.deploy import saving
    >>> from tlkit.models import zoo
    >>> model = zoo.build("lenet5")
    >>> path = saving.save(model, "/tmp/lenet5.h5", {"class_names": list("0123456789")})
    >>> model2, meta = saving.load(path)
    >>> meta["class_names"][:3]
    ['0', '1', '2']
"""

import contextlib
import datetime
import json
import logging
import pathlib
import zipfile

import h5py
import keras
import numpy as np

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.core.version import __version__
from tlkit.data import decode
from tlkit.deploy import feature_score

METADATA_ATTR = "tlkit_metadata"
METADATA_ENTRY = "tlkit_metadata.json"  # in a .keras zip
SUFFIXES = (".h5", ".keras")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")  # what keras.models.load_model reads
INPUT_CONTRACT = {"dtype": "float32", "range": [0, 255], "layout": "NHWC",
                  "preprocessing": "inside the model: feed raw pixels"}


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray,)):
        return obj.tolist()
    if isinstance(obj, (pathlib.Path, tuple, set)):
        return list(obj) if not isinstance(obj, pathlib.Path) else str(obj)
    return fileio.json_default(obj)  # a FeatureScore's summary (its arrays go in binary)


def check_writable(path, suffixes=SUFFIXES, what="--out"):
    """Validate a model path (`.h5` or `.keras`) before any work is done; return a `Path`.

    See `tlkit.core.fileio.check_writable`.
    """
    return fileio.check_writable(path, suffixes, what)


check_folder_writable = fileio.check_folder_writable  # one home for output checks: fileio


def full_metadata(model, metadata=None):
    """`metadata` with what every tlkit artifact records added when missing: the versions,
    the time, `input_shape` and the `input` contract (dtype, pixel range, layout, and how
    image files are fitted to the input: `resize`, `interpolation`, `antialias`, see
    `tlkit.data.decode.resize_contract`; the mode is the data summary's `resize`, else
    squash, what tlkit did before it recorded one)."""
    meta = dict(metadata or {})
    meta.setdefault("tlkit_version", __version__)
    meta.setdefault("keras_version", keras.__version__)
    meta.setdefault("saved_at", datetime.datetime.now(datetime.timezone.utc).isoformat())
    meta.setdefault("input_shape", list(model.input_shape[1:]))
    contract = dict(meta.get("input") or {"shape": list(meta["input_shape"]), **INPUT_CONTRACT})
    mode = (meta.get("data") or {}).get("resize") or decode.DEFAULT_RESIZE
    for key, value in decode.resize_contract(mode).items():
        contract.setdefault(key, value)
    meta["input"] = contract
    return meta


def save(model, path, metadata=None):
    """Save `model` and `metadata` to one `.h5` or `.keras` file, atomically.

    Args:
        model: a `keras.Model` made of standard layers.
        path: target file, ending with `.h5` or `.keras`. Its folder is created if needed.
        metadata: a JSON-able dict (class_names, input_shape, backbone, strategy, metrics...).
            `tlkit_version`, `saved_at`, `input_shape` and `input` are added when missing
            (`full_metadata`).

    Returns:
        The path as a `pathlib.Path`.
    """
    path = check_writable(path)
    meta = full_metadata(model, metadata)
    text = json.dumps(meta, default=_jsonable)
    fs = feature_score.of(meta)
    if path.suffix == ".keras":
        with fileio.atomic_path(path, suffix=".tmp.keras") as tmp:
            # Like the .h5: no optimizer or compile config (plain Keras then never needs the
            # classes tlkit trained with). The same layers in an uncompiled Functional wrapper.
            _uncompiled(model).save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(METADATA_ENTRY, text)
                if fs is not None:
                    zf.writestr(feature_score.ZIP_ENTRY, fs.npz_bytes())
        return path
    with fileio.atomic_path(path, suffix=".tmp.h5") as tmp:
        # Keras 3 calls .h5 "legacy" and warns on every save; tlkit chooses it on purpose (it is
        # what plain-Keras deployments load), so that one message is filtered out.
        # Deployment files leave the optimizer out (a third of the size); compile again to
        # continue training, as Keras 3 .h5 files do not restore optimizer state anyway.
        with _without_legacy_h5_warning():
            model.save(tmp, include_optimizer=False)
        with h5py.File(tmp, "a") as f:
            f.attrs[METADATA_ATTR] = text
            if fs is not None:
                fs.write_h5(f)
    return path


def _uncompiled(model):
    """`model` itself when it is not compiled, else a Functional model of the same layers."""
    if not getattr(model, "compiled", False):
        return model
    try:
        return keras.Model(model.inputs, model.outputs, name=model.name)
    except (AttributeError, ValueError, TypeError):  # a subclassed model: saved as it is
        return model


class _LegacyH5Filter(logging.Filter):
    def filter(self, record):
        return "saving your model as an HDF5 file" not in record.getMessage()


@contextlib.contextmanager
def _without_legacy_h5_warning():
    logger, filt = logging.getLogger("absl"), _LegacyH5Filter()
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


def read_metadata(path):
    """The tlkit metadata of a `.h5` or `.keras` file as a dict (empty for a plain Keras file)."""
    path = _existing(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as zf:
                if METADATA_ENTRY not in zf.namelist():
                    return {}
                meta = json.loads(zf.read(METADATA_ENTRY).decode("utf-8"))
                fs = (feature_score.FeatureScore.from_npz_bytes(zf.read(feature_score.ZIP_ENTRY))
                      if feature_score.ZIP_ENTRY in zf.namelist() else None)
                return feature_score.attach(meta, fs)
        except (OSError, zipfile.BadZipFile, ValueError) as e:
            raise TlkitError(f"{path} is not a readable .keras model file ({e}).") from None
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(METADATA_ATTR)
            fs = feature_score.FeatureScore.read_h5(f) if raw is not None else None
    except OSError as e:
        raise TlkitError(f"{path} is not a readable HDF5 model file ({e}).")
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return feature_score.attach(json.loads(raw), fs)


def write_metadata(path, metadata):
    """Replace the tlkit metadata of a `.h5` or `.keras` file, atomically: a copy beside it
    gets the new metadata and is renamed over it, so the model is never half-written.

    Args:
        path: an existing `.h5` or `.keras` tlkit model file.
        metadata: the whole new metadata dict (read it with `read_metadata`, change it).

    Returns:
        The path as a `pathlib.Path`.
    """
    import shutil

    path = _existing(path)
    if path.suffix not in SUFFIXES:
        raise TlkitError(f"{path}: only .h5 and .keras files hold tlkit metadata tlkit can "
                         f"rewrite; calibrate the .h5/.keras model, then export it again.")
    text = json.dumps(metadata, default=_jsonable)
    fs = feature_score.of(metadata)
    with fileio.atomic_path(path, suffix=".tmp" + path.suffix) as tmp:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
                for item in src.infolist():
                    if item.filename not in (METADATA_ENTRY, feature_score.ZIP_ENTRY):
                        dst.writestr(item, src.read(item.filename))
                dst.writestr(METADATA_ENTRY, text)
                if fs is not None:
                    dst.writestr(feature_score.ZIP_ENTRY, fs.npz_bytes())
        else:
            shutil.copyfile(path, tmp)
            with h5py.File(tmp, "a") as f:
                f.attrs[METADATA_ATTR] = text
                if feature_score.H5_GROUP in f:
                    del f[feature_score.H5_GROUP]
                if fs is not None:
                    fs.write_h5(f)
    return path


def load(path, compile=False):
    """Load a `.h5` (or `.keras`) model and its tlkit metadata.

    Args:
        path: the model file.
        compile: passed to `keras.models.load_model`. The default `False` gives a model ready
            for `predict`; to continue training, compile it again (Keras 3 `.h5` files do not
            keep the optimizer state).

    Returns:
        `(model, metadata)`; metadata is `{}` for files tlkit did not write.
    """
    path = fileio.check_model_name(_existing(path), KERAS_SUFFIXES, "a .h5 or .keras model")
    try:
        model = keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, TypeError) as e:
        raise TlkitError(f"Could not load model {path}: {str(e).splitlines()[0]}")
    meta = read_metadata(path) if path.suffix in SUFFIXES else {}
    return model, meta


def class_names(model, metadata):
    """Class names from metadata, or "0".."N-1" from the model's output size."""
    names = metadata.get("class_names")
    if names:
        return list(names)
    n = model.output_shape[-1]
    return [str(i) for i in range(max(n, 2) if n == 1 else n)]


def _existing(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise TlkitError(f"Model file not found: {path}")
    return path
