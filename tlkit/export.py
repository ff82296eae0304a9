"""Deployable copies of a model: SavedModel, TFLite, `.keras`, each checked against Keras.

`export(model_or_path, fmt, out)` writes the artifact, runs it and the Keras model on the
same batch, and returns an `ExportResult` with the largest output difference and the top-1
agreement. The preprocessing layers travel inside the graph, so every artifact takes raw
pixels (0..255, float32, (batch, height, width, channels)) exactly like the Keras model.

Formats:
    - `savedmodel`: a folder written by `model.export` (Keras' ExportArchive); its endpoint
      is `serve` (also the `serving_default` signature): `tf.saved_model.load(out).serve(x)`.
    - `tflite`: one `.tflite` file, converted from that SavedModel by
      `tf.lite.TFLiteConverter.from_saved_model` with built-in ops only (no Flex/Select-TF
      ops, so the plain LiteRT runtime runs it); the batch dimension stays dynamic.
      `quantize="dynamic"` stores weights as int8 (dynamic-range quantization),
      `quantize="float16"` stores them as float16; inputs and outputs stay float32.
    - `keras`: a `.keras` file written by `model.save`.

Checks and tolerances (outputs are probabilities, 0..1):
    - float exports (`quantize="none"`) must match the Keras model within
      `FLOAT_TOLERANCE` = 1e-4, else `TlkitError`. Measured: SavedModel and `.keras` 0.0,
      TFLite 3e-8 to 1.4e-5.
    - quantized TFLite is checked on top-1 agreement: every sample image whose Keras top-1
      margin (best minus second-best probability) exceeds 2 x tolerance must keep its class,
      else `TlkitError`; near-ties may flip. `QUANT_TOLERANCES` are the measured typical
      differences with headroom, reported in `ExportResult.tolerance`; a larger difference
      only warns. Measured max |diff| (8 sample images): float16 weights 7e-7 to 9e-5 on
      trained models and MobileNetV2, 4.5e-3 on an untrained zoo model without rescaling;
      int8 dynamic range 2.6e-5 (MobileNetV2 0.35) to 7.6e-3 (trained fashion_cnn), but 0.14
      on an untrained fashion_cnn fed raw 0..255 noise (huge activations, top-1 6 of 8).
      Sizes: dynamic range about 1/4 of the float file, float16 about 1/2.

Writing is atomic: the artifact is built in a temporary folder beside `out`, checked, then
renamed onto `out`; on any failure nothing is left behind. An existing `out` is replaced
(a folder only if it is a SavedModel).

Example:
    >>> from tlkit import zoo
    >>> from tlkit.export import export
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> result = export(model, "tflite", "/tmp/fashion.tflite")   # doctest: +SKIP
    >>> result.max_abs_diff <= result.tolerance                   # doctest: +SKIP
    True
"""

import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tlkit.errors import TlkitError, check_choice

FORMATS = ("savedmodel", "tflite", "keras")
QUANTIZATIONS = ("none", "dynamic", "float16")
FLOAT_TOLERANCE = 1e-4
QUANT_TOLERANCES = {"float16": 1e-2, "dynamic": 5e-2}
SAMPLE_SIZE = 8
SAMPLE_SEED = 0


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how closely it reproduces the Keras model.

    Attributes:
        path: the artifact (a folder for SavedModel, a file otherwise).
        size_bytes: its size on disk (all files for a folder).
        max_abs_diff: largest |artifact output - Keras output| over the sample batch.
        top1_agreement: share of sample images whose top-1 class is the same (0..1).
        tolerance: the bound `max_abs_diff` was checked against.
    """

    path: str
    size_bytes: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: float


def default_sample(input_shape, n=SAMPLE_SIZE, seed=SAMPLE_SEED):
    """`n` random raw-pixel images (uniform 0..255, float32) of `input_shape`, seeded.

    Example:
        >>> default_sample((28, 28, 1)).shape
        (8, 28, 28, 1)
    """
    if any(d is None for d in input_shape):
        raise TlkitError(f"The model's input shape {tuple(input_shape)} is not fully known: "
                         "pass sample= (a batch of images).")
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (n, *input_shape)).astype("float32")


def _load(model_or_path):
    import keras

    if isinstance(model_or_path, keras.Model):
        return model_or_path
    path = Path(model_or_path)
    if not path.exists():
        raise TlkitError(f"Model file {str(path)!r} does not exist.")
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TlkitError(f"Cannot load model {str(path)!r}: {msg}") from None


def _check_out(out, fmt):
    """Validate `out` before any work: suffix, parent folder writable, what it would replace."""
    out = Path(out)
    if fmt == "keras" and out.suffix != ".keras":
        raise TlkitError(f"A 'keras' export must end with '.keras'. Received: out={str(out)!r}.")
    if fmt == "tflite" and out.suffix != ".tflite":
        raise TlkitError(f"A 'tflite' export must end with '.tflite'. "
                         f"Received: out={str(out)!r}.")
    if not out.name or out.name in (".", ".."):
        raise TlkitError(f"Output path {str(out)!r} names no file or folder.")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TlkitError(f"Cannot write {str(out)!r}: cannot create folder {str(parent)!r} "
                         f"({e.strerror or e}).") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TlkitError(f"Cannot write {str(out)!r}: folder {str(parent)!r} is not writable.")
    if out.is_dir():
        if fmt != "savedmodel":
            raise TlkitError(f"Cannot write {str(out)!r}: a folder is in the way.")
        if not (out / "saved_model.pb").exists():
            raise TlkitError(f"Cannot write {str(out)!r}: a folder that is not a SavedModel "
                             "is in the way; remove it or choose another path.")
    elif out.exists() and fmt == "savedmodel":
        raise TlkitError(f"Cannot write SavedModel folder {str(out)!r}: a file is in the way.")
    return out


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _interpreter(model_path):
    """A TFLite interpreter: LiteRT's (`ai_edge_litert`) when installed, else `tf.lite`'s."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT replaces it
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(model_path))
    return Interpreter(model_path=str(model_path))


def run_tflite(path, x):
    """Run a `.tflite` model on a float32 batch `x`; returns the first output as numpy.

    Example:
        >>> run_tflite("model.tflite", default_sample((28, 28, 1)))   # doctest: +SKIP
    """
    interp = _interpreter(path)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.asarray(x, dtype=inp["dtype"]))
    interp.invoke()
    return np.array(interp.get_tensor(interp.get_output_details()[0]["index"]))


def run_savedmodel(path, x):
    """Run an exported SavedModel's `serve` endpoint on a batch `x`; returns numpy."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # keep a reference: serve() uses its variables
    out = loaded.serve(tf.constant(x))
    if isinstance(out, dict):
        out = next(iter(out.values()))
    elif isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out)


def _first_output(y):
    if isinstance(y, dict):
        y = next(iter(y.values()))
    elif isinstance(y, (list, tuple)):
        y = y[0]
    return np.asarray(y)


def _top1(y):
    y = y.reshape(len(y), -1)
    return (y[:, 0] > 0.5).astype(int) if y.shape[1] == 1 else y.argmax(axis=1)


def _margin(y):
    """Top-1 minus top-2 probability per row (for one sigmoid unit: |2p - 1|)."""
    y = y.reshape(len(y), -1)
    if y.shape[1] == 1:
        return np.abs(2 * y[:, 0] - 1)
    top2 = np.sort(y, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _write(model, fmt, quantize, artifact, work):
    """Write the artifact at `artifact` (inside the temporary folder `work`)."""
    import tensorflow as tf

    if fmt == "keras":
        model.save(artifact)
        return
    saved = artifact if fmt == "savedmodel" else work / "savedmodel"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    if fmt == "savedmodel":
        return
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        flat = converter.convert()
    except Exception as e:  # the converter raises its own ConverterError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TlkitError(f"TFLite conversion failed (built-in ops only): {msg}") from None
    Path(artifact).write_bytes(flat)


def _predict(fmt, artifact, x):
    import keras

    if fmt == "savedmodel":
        return run_savedmodel(artifact, x)
    if fmt == "tflite":
        return run_tflite(artifact, x)
    return _first_output(keras.models.load_model(artifact, compile=False).predict(x, verbose=0))


def _replace(artifact, out, work):
    """Move the checked artifact onto `out`, replacing an old one (a folder is moved aside)."""
    if out.is_dir():
        old = work / "previous"
        os.replace(out, old)
        try:
            os.replace(artifact, out)
        except OSError:
            os.replace(old, out)
            raise
    else:
        os.replace(artifact, out)


def export(model_or_path, fmt, out, quantize="none", sample=None):
    """Export a model to SavedModel, TFLite or `.keras`, and check it against Keras.

    Args:
        model_or_path: a `keras.Model`, or a saved model file (`.h5` / `.keras`).
        fmt: one of `FORMATS`: `"savedmodel"` (a folder), `"tflite"` (`out` ends with
            `.tflite`), `"keras"` (`out` ends with `.keras`).
        out: where to write; an existing artifact there is replaced.
        quantize: one of `QUANTIZATIONS`; `"dynamic"` and `"float16"` only with `"tflite"`.
        sample: a float batch of raw-pixel images (batch, height, width, channels) to compare
            on; default `default_sample(input_shape)`: 8 seeded random images 0..255.

    Returns:
        An `ExportResult(path, size_bytes, max_abs_diff, top1_agreement, tolerance)`.

    Raises:
        TlkitError: bad format / quantization / output path / sample, a failed conversion,
            a float export outside `FLOAT_TOLERANCE`, or a quantized export that changes a
            clear-cut top-1 class (see the module docstring); nothing is written then.

    Example:
        >>> from tlkit import zoo
        >>> model = zoo.build("simple_cnn", (28, 28, 1), 10)
        >>> r = export(model, "keras", "/tmp/simple_cnn.keras")
        >>> r.max_abs_diff <= r.tolerance, r.top1_agreement
        (True, 1.0)
    """
    check_choice("fmt", fmt, FORMATS)
    check_choice("quantize", quantize, QUANTIZATIONS)
    if quantize != "none" and fmt != "tflite":
        raise TlkitError(f"quantize={quantize!r} needs fmt='tflite'. "
                         f"Received: fmt={fmt!r}; use quantize='none' for {fmt}.")
    out = _check_out(out, fmt)
    model = _load(model_or_path)
    input_shape = tuple(model.inputs[0].shape[1:])
    x = default_sample(input_shape) if sample is None else np.asarray(sample, dtype="float32")
    if x.ndim != len(input_shape) + 1 or any(
            e is not None and e != g for e, g in zip(input_shape, x.shape[1:])) or not len(x):
        raise TlkitError(f"sample must be a batch of shape (n, {', '.join(map(str, input_shape))}"
                         f"). Received: sample.shape={x.shape}.")
    tolerance = FLOAT_TOLERANCE if quantize == "none" else QUANT_TOLERANCES[quantize]
    expected = _first_output(model.predict(x, verbose=0))

    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        artifact = work / out.name
        _write(model, fmt, quantize, artifact, work)
        got = _predict(fmt, artifact, x).reshape(expected.shape)
        diff = float(np.max(np.abs(got.astype("float64") - expected)))
        agree = _top1(got) == _top1(expected)
        top1 = float(np.mean(agree))
        if quantize == "none" and not diff <= tolerance:  # "not <=" also catches NaN
            raise TlkitError(f"The {fmt} export differs from the Keras model by {diff:.3g} > "
                             f"tolerance {tolerance:g} (top-1 agreement {top1:.0%}); nothing "
                             f"was written to {str(out)!r}.")
        if quantize != "none":
            clear = _margin(expected) > 2 * tolerance
            if not np.isfinite(diff) or not agree[clear].all():
                raise TlkitError(
                    f"The {quantize}-quantized TFLite export changes the top-1 class of "
                    f"{int((~agree[clear]).sum())} of {int(clear.sum())} clear-cut sample images "
                    f"(Keras margin > {2 * tolerance:g}; max difference {diff:.3g}); nothing "
                    f"was written to {str(out)!r}. Try quantize='float16' or 'none'.")
            if diff > tolerance:
                warnings.warn(f"The {quantize}-quantized TFLite export differs from the Keras "
                              f"model by up to {diff:.3g} (typical: < {tolerance:g}); top-1 "
                              f"agreement {top1:.0%}. Check it on real images (sample=).",
                              stacklevel=2)
        size = _size(artifact)
        _replace(artifact, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(str(out), size, diff, top1, tolerance)


__all__ = ["FORMATS", "QUANTIZATIONS", "FLOAT_TOLERANCE", "QUANT_TOLERANCES", "ExportResult",
           "default_sample", "export", "run_tflite", "run_savedmodel"]
