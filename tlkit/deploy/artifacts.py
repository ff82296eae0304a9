"""Deployable artifacts of every kind behind one interface: class names, input contract, probs.

`load(path)` opens what `tlkit finetune` and `tlkit export` write, and what `tlkit predict`
and `tlkit evaluate` accept:

- `m.h5`, `m.keras`: run by `keras.models.load_model`; class names and input contract
  inside the file (`tlkit.deploy.saving`).
- a SavedModel folder: run by `tf.saved_model.load`, its `serve` endpoint; the names in
  `assets/labels.txt` (the lookup table of the `serving_default` signature reads it), the
  metadata in `assets.extra/tlkit_metadata.json`.
- `m.tflite`: run by `tf.lite.Interpreter` (LiteRT's when installed); `m.labels.txt` and
  `m.tlkit.json` beside it.
- `m.onnx`: run by `onnxruntime` (optional: `pip install 'tlkit[onnx]'`); the model's
  `metadata_props` `class_names` and `tlkit_metadata`.

Labels files hold one class name a line, in output order (the TFLite and TF Serving
convention). Every artifact takes raw pixels (0..255, NHWC) as float32, except a
full-integer (int8) TFLite model, whose input is uint8 with the quantization parameters in
its input tensor: `Artifact.predict_on_batch` takes float pixels for all of them and gives
float probabilities.

Example:
    >>> from tlkit.deploy import artifacts, saving
    >>> from tlkit.models import zoo
    >>> model = zoo.build("lenet5", num_classes=3)
    >>> path = saving.save(model, "/tmp/lenet5_art.keras", {"class_names": ["a", "b", "c"]})
    >>> art = artifacts.load(path)
    >>> art.kind, art.class_names, art.input_shape
    ('keras', ['a', 'b', 'c'], (32, 32, 1))
"""

import contextlib
import json
import pathlib
import warnings

import numpy as np

from tlkit.core import console, fileio
from tlkit.core.errors import TlkitError
from tlkit.deploy import feature_score, saving

LABELS_FILE = "labels.txt"  # in a SavedModel's assets/
SAVEDMODEL_METADATA = "assets.extra/tlkit_metadata.json"
KINDS = ("keras", "savedmodel", "tflite", "onnx")
DESCRIPTION = "a .h5 or .keras model, a SavedModel folder, a .tflite or a .onnx file"


def labels_path(path):
    """The labels file beside a `.tflite`/`.onnx` file: `m.tflite` -> `m.labels.txt`."""
    path = pathlib.Path(path)
    return path.with_name(path.stem + ".labels.txt")


def metadata_path(path):
    """The metadata file beside a `.tflite` file: `m.tflite` -> `m.tlkit.json`."""
    path = pathlib.Path(path)
    return path.with_name(path.stem + ".tlkit.json")


def labels_text(class_names):
    """The labels file's content: one class name a line."""
    bad = [n for n in class_names if "\n" in str(n) or "\r" in str(n)]
    if bad:
        raise TlkitError(f"Class name {bad[0]!r} contains a line break; a labels file cannot "
                         f"hold it.")
    return "".join(f"{n}\n" for n in class_names)


def write_labels(path, class_names):
    """Write a labels file atomically; returns its path."""
    path = pathlib.Path(path)
    with fileio.atomic_path(path, suffix=".txt") as tmp:
        pathlib.Path(tmp).write_text(labels_text(class_names), encoding="utf-8")
    return path


def read_labels(path):
    """Class names from a labels file (one a line), or None when there is none."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").splitlines()


def kind_of(path):
    """`"keras"`, `"savedmodel"`, `"tflite"` or `"onnx"` from the path; `TlkitError` if none."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise TlkitError(f"{path} is a folder but not a SavedModel (no saved_model.pb). "
                         f"Give {DESCRIPTION}.")
    if not path.exists():
        raise TlkitError(f"Model file not found: {path}")
    suffix = path.suffix.lower()
    kinds = {".h5": "keras", ".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}
    fileio.check_model_name(path, tuple(kinds), DESCRIPTION)
    return kinds[suffix]


class Artifact:
    """A loaded model of any kind: `predict_on_batch(x)` -> probabilities (N, classes).

    Attributes:
        path, kind: where it came from and which of `KINDS` it is.
        metadata: the tlkit metadata ({} when the artifact carries none).
        class_names: names in output order (from the artifact, else "0".."N-1").
        has_class_names: whether the artifact carries them.
        input_shape: (H, W, C) the model takes.
        input_dtype: what its input tensor holds (`"float32"`; `"uint8"` for int8 TFLite).
        model: the underlying Keras model, loaded SavedModel, interpreter or session.
    """

    def __init__(self, path, kind, run, metadata, class_names, input_shape, num_outputs,
                 input_dtype="float32", model=None, run_scored=None):
        self.path, self.kind, self._run = str(path), kind, run
        self._run_scored = run_scored  # x -> (probabilities, feature unknown scores)
        self.metadata = dict(metadata or {})
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_dtype = input_dtype
        self.model = model
        self.has_class_names = bool(class_names)
        self.class_names = list(class_names) if class_names else [
            str(i) for i in range(max(num_outputs, 2) if num_outputs == 1 else num_outputs)]
        self.output_shape = (None, num_outputs)
        if len(self.class_names) != max(num_outputs, 2 if num_outputs == 1 else 0):
            raise TlkitError(f"{path}: {len(self.class_names)} class names for a model with "
                             f"{num_outputs} outputs.")

    def predict_on_batch(self, x):
        """Probabilities for a batch of raw-pixel images (N, H, W, C), as float32 numpy."""
        return np.asarray(self._run(np.asarray(x, "float32")), "float32")

    def predict(self, x, batch_size=64, verbose=0):
        """`predict_on_batch` over `x` in batches (like `keras.Model.predict`)."""
        x = np.asarray(x, "float32")
        parts = [self.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x),
                                                                           batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.output_shape[1]),
                                                            "float32")

    @property
    def has_feature_score(self):
        """Whether the artifact computes a feature-space unknown score (its graph's second
        output, `tlkit.deploy.feature_score`)."""
        return self._run_scored is not None

    def predict_scored(self, x, batch_size=64):
        """`(probabilities (N, C), feature unknown scores (N,) or None)` over `x` in batches:
        the scores when the artifact computes one (`has_feature_score`), in the same pass."""
        if self._run_scored is None:
            return self.predict(x, batch_size=batch_size), None
        x = np.asarray(x, "float32")
        parts = [self._run_scored(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if not parts:
            return np.zeros((0, self.output_shape[1]), "float32"), np.zeros(0, "float32")
        return (np.concatenate([np.asarray(p, "float32") for p, _ in parts]),
                np.concatenate([np.asarray(s, "float32").reshape(-1) for _, s in parts]))


def load(path):
    """Open a deployable artifact (see the module doc) as an `Artifact`.

    Raises:
        TlkitError: a missing path, a kind tlkit does not know, or a file that does not load.
    """
    kind = kind_of(path)
    return {"keras": _load_keras, "savedmodel": _load_savedmodel, "tflite": _load_tflite,
            "onnx": _load_onnx}[kind](pathlib.Path(path))


def _load_keras(path):
    model, meta = saving.load(path)
    graph, fs = feature_score.graph_model(model, meta)

    def run(x):
        return model.predict_on_batch(x)

    def run_scored(x):
        return graph.predict_on_batch(x)

    return Artifact(path, "keras", run, meta, meta.get("class_names"), model.input_shape[1:],
                    model.output_shape[-1], model=model,
                    run_scored=run_scored if fs is not None else None)


def _load_savedmodel(path):
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TF raises several kinds for a broken folder
        raise TlkitError(f"Could not load SavedModel {path}: {str(e).splitlines()[0]}") from None
    serve = getattr(loaded, "serve", None) or loaded.signatures.get("serving_default")
    if serve is None:
        raise TlkitError(f"SavedModel {path} has no 'serve' endpoint or 'serving_default' "
                         f"signature.")
    meta = _read_json(path / SAVEDMODEL_METADATA)
    names = read_labels(path / "assets" / LABELS_FILE) or meta.get("class_names")
    spec = _input_spec(serve)

    def run(x):
        out = serve(tf.constant(x))
        if isinstance(out, dict):
            out = out.get("probabilities", next(iter(out.values())))
        return out.numpy()

    scored = getattr(loaded, "serve_scored", None)

    def run_scored(x):
        out = scored(tf.constant(x))
        return out["probabilities"].numpy(), out["unknown_score"].numpy()

    shape = meta.get("input_shape") or spec[1:]
    outputs = len(names) if names else int(run(np.zeros((1, *shape), "float32")).shape[-1])
    return Artifact(path, "savedmodel", run, meta, names, shape, outputs, model=loaded,
                    run_scored=run_scored if scored is not None else None)


def _input_spec(fn):
    try:
        specs = [s for s in _flatten(fn.input_signature) if hasattr(s, "shape")]
        return tuple(specs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return (None, None, None, None)


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flatten(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _flatten(item)
    else:
        yield obj


def _load_tflite(path):
    try:
        interp = tflite_interpreter(path)
    except (ValueError, RuntimeError) as e:
        raise TlkitError(f"Could not load TFLite model {path}: {str(e).splitlines()[0]}") from None
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    out = next((o for o in outs if len(o["shape"]) == 2), outs[0])  # the probabilities
    score = next((o for o in outs if len(o["shape"]) == 1), None)  # feature_score's output
    meta = _read_json(metadata_path(path))
    names = read_labels(labels_path(path)) or meta.get("class_names")

    def run_scored(x):
        interp.resize_tensor_input(inp["index"], x.shape)
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], quantize_input(x, inp))
        interp.invoke()
        return (dequantize_output(interp.get_tensor(out["index"]), out),
                None if score is None else dequantize_output(interp.get_tensor(score["index"]),
                                                             score))

    def run(x):
        return run_scored(x)[0]

    return Artifact(path, "tflite", run, meta, names, inp["shape"][1:], int(out["shape"][-1]),
                    input_dtype=np.dtype(inp["dtype"]).name, model=interp,
                    run_scored=run_scored if score is not None else None)


def quantize_input(x, detail):
    """Float pixels as the dtype a TFLite input tensor wants (quantized for integer inputs)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(x, dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, "float64") / (scale or 1.0) + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y, detail):
    """A TFLite output tensor as float32 (dequantized when it is an integer tensor)."""
    y = np.asarray(y)
    if y.dtype.kind == "f":
        return y.astype("float32")
    scale, zero = detail["quantization"]
    return ((y.astype("float32") - zero) * scale).astype("float32")


def _load_onnx(path):
    try:
        import onnxruntime
    except ImportError:
        raise TlkitError(f"Running {path} needs onnxruntime: pip install 'tlkit[onnx]' "
                         f"(or pip install onnxruntime).") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise TlkitError(f"Could not load ONNX model {path}: {str(e).splitlines()[0]}") from None
    props = session.get_modelmeta().custom_metadata_map
    meta = json.loads(props["tlkit_metadata"]) if "tlkit_metadata" in props else {}
    names = (json.loads(props["class_names"]) if "class_names" in props
             else read_labels(labels_path(path)) or meta.get("class_names"))
    inp = session.get_inputs()[0]
    scored = len(session.get_outputs()) > 1  # feature_score's unknown_score: rank 1

    def run_scored(x):
        return feature_score.split_outputs(session.run(None, {inp.name: x}))

    def run(x):
        return run_scored(x)[0]

    shape = meta.get("input_shape") or inp.shape[1:]
    outputs = next((o.shape for o in session.get_outputs() if len(o.shape) == 2),
                   session.get_outputs()[0].shape)[-1]
    return Artifact(path, "onnx", run, meta, names, shape,
                    outputs if isinstance(outputs, int) else len(names or ()), model=session,
                    run_scored=run_scored if scored else None)


def _read_json(path):
    path = pathlib.Path(path)
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        warnings.warn(f"Ignoring unreadable metadata {path}: {e}", stacklevel=3)
        return {}


def tflite_interpreter(model_path):
    """A TFLite interpreter: LiteRT's (`ai_edge_litert`) when installed, else `tf.lite`'s.

    Its tensors are allocated once here, with file descriptor 2 quiet: the runtime's C++ line
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." stays off the console
    (`TLKIT_TF_LOGS=1` shows it).
    """
    quiet = console.quiet_fd2() if not console.logs_shown() else contextlib.nullcontext()
    with quiet:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT replaces it
                warnings.simplefilter("ignore")
                interp = tf.lite.Interpreter(model_path=str(model_path))
        else:
            interp = Interpreter(model_path=str(model_path))
        interp.allocate_tensors()
    return interp


__all__ = ["Artifact", "KINDS", "DESCRIPTION", "load", "kind_of", "labels_path",
           "tflite_interpreter", "metadata_path", "write_labels", "read_labels", "labels_text", "quantize_input",
           "dequantize_output"]
