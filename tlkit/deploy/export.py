"""Deployable copies of a model: SavedModel, TFLite, `.keras`, ONNX, each checked against Keras.

`export(model_or_path, fmt, out)` writes the artifact, runs it and the Keras model on the
same batch, and returns an `ExportResult` with the largest output difference and the top-1
agreement. The batch is `sample=` when given, else the run's own test images when the model
file has its report folder beside it (`index.json`; up to `calibration.CHECK_SIZE` of them),
else 8 seeded random images, with a note (`ExportResult.note`) that says so: random pixels
say little about quantized exports (dynamic range: 7e-9 on noise, 0.057 on real images). The preprocessing layers travel inside the graph, so every artifact takes raw
pixels (0..255, float32, (batch, height, width, channels)) exactly like the Keras model.

Formats (every artifact carries its class names and input contract; see `tlkit.deploy.artifacts`):
    - `savedmodel`: a folder written by Keras' `ExportArchive`. Endpoint `serve`:
      probabilities (`tf.saved_model.load(out).serve(x)`); signature `serving_default`:
      `{"probabilities": (N, C), "class_names": (N, C) string, "top_class": (N,) string}`,
      the names read from `assets/labels.txt` by a lookup table (a tracked asset). The tlkit
      metadata is in `assets.extra/tlkit_metadata.json`.
    - `tflite`: one `.tflite` file, converted from a SavedModel by
      `tf.lite.TFLiteConverter.from_saved_model` with built-in ops only (no Flex/Select-TF
      ops, so the plain LiteRT runtime runs it); the batch dimension stays dynamic.
      `quantize="dynamic"` stores weights as int8 (dynamic-range quantization),
      `quantize="float16"` stores them as float16; inputs and outputs stay float32.
      `quantize="int8"` is full-integer post-training quantization: weights and activations
      int8, calibrated on representative images (`representative=`, else `sample=`, else
      the training images recorded for the model, `tlkit.deploy.calibration`); the input is uint8
      pixels and the output uint8 probabilities (scale 1/256), with their quantization
      parameters in the tensors and in the metadata's `input`. Beside it: `m.labels.txt`
      (one class a line) and `m.tlkit.json` (the metadata). tflite-support's metadata
      writer, which would put the labels inside the file, cannot be installed with
      TensorFlow 2.21 (it pins protobuf < 4; see the README).
    - `keras`: a `.keras` file written by `tlkit.deploy.saving.save` (metadata in the zip).
    - `onnx`: a `.onnx` file written by Keras' `model.export(format="onnx")` (tf2onnx;
      optional: `pip install tlkit[onnx]`), checked with onnxruntime; the class names and
      metadata are in the model's `metadata_props`.

Checks and tolerances (outputs are probabilities, 0..1):
    - float exports (`quantize="none"`) must match the Keras model within
      `FLOAT_TOLERANCE` = 1e-4, else `TlkitError`. Measured: SavedModel and `.keras` 0.0,
      TFLite 3e-8 to 1.4e-5, ONNX 6e-8. A model whose metadata holds a feature unknown score
      (`tlkit.deploy.feature_score`, the default after `tlkit.calibrate`) is exported with a
      second output `unknown_score` (SavedModel: `serving_default` and `serve_scored`), checked
      within the same tolerance relative to the scores' scale; int8 TFLite leaves it out.
      The checks are `tlkit.deploy.export_checks`.
    - quantized TFLite is checked on top-1 agreement: every sample image whose Keras top-1
      margin (best minus second-best probability) exceeds 2 x tolerance must keep its class
      (for int8: at least `MIN_CLEAR_AGREEMENT` = 95% of them), else `TlkitError`; near-ties
      may flip. `QUANT_TOLERANCES` are the measured typical
      differences with headroom, reported in `ExportResult.tolerance`; a larger difference
      only warns. Measured max |diff| (8 sample images): float16 weights 7e-7 to 9e-5 on
      trained models and MobileNetV2, 4.5e-3 on an untrained zoo model without rescaling;
      int8 dynamic range 2.6e-5 (MobileNetV2 0.35) to 7.6e-3 (trained fashion_cnn), but 0.14
      on an untrained fashion_cnn fed raw 0..255 noise (huge activations, top-1 6 of 8).
      Sizes: dynamic range about 1/4 of the float file, float16 about 1/2.
      Full-integer int8 is compared on real images (the run's test images, else the
      representative ones, unless `sample=` is given), as random noise is outside its
      calibrated ranges.

Writing is atomic: the artifact is built in a temporary folder beside `out`, checked, then
renamed onto `out`; on any failure nothing is left behind. An existing `out` is replaced
(a folder only if it is a SavedModel).

Example:
    >>> from tlkit.models import zoo
    >>> from tlkit.deploy.export import export
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> result = export(model, "tflite", "/tmp/fashion.tflite")   # doctest: +SKIP
    >>> result.max_abs_diff <= result.tolerance                   # doctest: +SKIP
    True
"""

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tlkit.core import fileio
from tlkit.core.errors import TlkitError, check_choice
from tlkit.data import decode
from tlkit.deploy import (artifacts, calibration, export_checks, feature_score, onnx,
                          saved_model, saving, tensorflow_export, tflite)

FORMATS = ("savedmodel", "tflite", "keras", "onnx")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
FLOAT_TOLERANCE = 1e-4
QUANT_TOLERANCES = {"float16": 1e-2, "dynamic": 5e-2, "int8": 0.1}
MIN_CLEAR_AGREEMENT = export_checks.MIN_CLEAR_AGREEMENT
SUFFIXES = {"tflite": ".tflite", "keras": ".keras", "onnx": ".onnx"}
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
        files: every file written: the artifact and the files beside it (labels, metadata).
        n_compared: how many images the comparison ran on.
        compared_on: what they were ("the run's test images (INDEX)", "the given sample",
            "random images", ...).
        note: set when they were random images: why, and how to compare on real ones.
        score_diff: for a model with a feature unknown score, the largest |artifact score -
            Keras score| over the batch relative to the scores' scale (None without one, and
            for int8 TFLite, which leaves the score out).
    """

    path: str
    size_bytes: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: float
    files: tuple = ()
    n_compared: int = 0
    compared_on: str = ""
    note: str = None
    score_diff: float = None


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
    """`(model, metadata, path)`: the Keras model, its tlkit metadata, the file (or None)."""
    import keras

    if isinstance(model_or_path, keras.Model):
        return model_or_path, {}, None
    path = Path(model_or_path)
    if not path.exists():
        raise TlkitError(f"Model file {str(path)!r} does not exist.")

    fileio.check_model_name(path, saving.KERAS_SUFFIXES, "a .h5 or .keras model (export "
                            "converts Keras models)")
    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TlkitError(f"Cannot load model {str(path)!r}: {msg}") from None
    meta = saving.read_metadata(path) if path.suffix in saving.SUFFIXES else {}
    return model, meta, path


def _check_out(out, fmt):
    """Validate `out` before any work: suffix, parent folder writable, what it would replace."""
    out = Path(out)
    if fmt in SUFFIXES and out.suffix != SUFFIXES[fmt]:
        raise TlkitError(f"A '{fmt}' export must end with '{SUFFIXES[fmt]}'. "
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


def run_tflite(path, x):
    """Run a `.tflite` model on a float32 batch `x` of raw pixels; returns float outputs.

    Integer (int8-quantized) inputs and outputs are quantized and dequantized with the
    tensors' own parameters.

    Example:
        >>> run_tflite("model.tflite", default_sample((28, 28, 1)))   # doctest: +SKIP
    """
    interp = artifacts.tflite_interpreter(path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], artifacts.quantize_input(x, inp))
    interp.invoke()
    return artifacts.dequantize_output(interp.get_tensor(out["index"]), out)


def run_savedmodel(path, x):
    """Run an exported SavedModel's `serve` endpoint on a batch `x`; returns numpy."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # keep a reference: serve() uses its variables
    return _first_output(loaded.serve(tf.constant(x)))


def _first_output(y):
    if isinstance(y, dict):
        y = next(iter(y.values()))
    elif isinstance(y, (list, tuple)):
        y = y[0]
    return np.asarray(y)


def write_artifact(model, fmt, quantize, artifact, work, metadata, representative):
    """Write the artifact (and the files beside it) at `artifact` inside the folder `work`."""
    if fmt == "keras":
        saving.save(model, artifact, metadata)
    elif fmt == "savedmodel":
        saved_model.write_savedmodel(model, artifact, metadata, work)
    elif fmt == "onnx":
        onnx.write_onnx(model, artifact, metadata)
    else:
        tflite.write_tflite(model, artifact, metadata, quantize, work, representative)


def _replace(artifact, out, work):
    """Move the checked artifact and the files beside it onto `out` (an old folder is moved
    aside first)."""
    if out.is_dir():
        old = work / "previous"
        os.replace(out, old)
        try:
            os.replace(artifact, out)
        except OSError:
            os.replace(old, out)
            raise
        return [out]
    moved = []
    for src, dst in ((artifacts.labels_path(artifact), artifacts.labels_path(out)),
                     (artifacts.metadata_path(artifact), artifacts.metadata_path(out))):
        if src.exists():
            os.replace(src, dst)
            moved.append(dst)
    os.replace(artifact, out)
    return [out] + moved


def export(model_or_path, fmt, out, quantize="none", sample=None, *, metadata=None,
           representative=None):
    """Export a model to SavedModel, TFLite, `.keras` or ONNX, and check it against Keras.

    Args:
        model_or_path: a `keras.Model`, or a saved model file (`.h5` / `.keras`).
        fmt: one of `FORMATS`: `"savedmodel"` (a folder), `"tflite"` (`out` ends with
            `.tflite`), `"keras"` (`.keras`), `"onnx"` (`.onnx`).
        out: where to write; an existing artifact there is replaced.
        quantize: one of `QUANTIZATIONS`; all but `"none"` only with `"tflite"`.
        sample: a float batch of raw-pixel images (batch, height, width, channels) to compare
            on; default the run's test images (`calibration.test_images`: the model file's
            report folder holds its `index.json`), else for int8 the representative images,
            else `default_sample(input_shape)`: 8 seeded random images 0..255, with a note.
        metadata: tlkit metadata to carry (class_names...); default: the file's own, plus
            `index`: the absolute path of the run's `index.json` when the model has one
            (`tlkit evaluate` then scores the run's own test split with the artifact).
        representative: for `quantize="int8"`, the calibration images; default `sample`,
            else the model's recorded training images (`tlkit.deploy.calibration`).

    Returns:
        An `ExportResult(path, size_bytes, max_abs_diff, top1_agreement, tolerance, files,
        n_compared, compared_on, note)`.

    Raises:
        TlkitError: bad format / quantization / output path / sample, a failed conversion,
            a float export outside `FLOAT_TOLERANCE`, or a quantized export that changes a
            clear-cut top-1 class (see the module docstring); nothing is written then.

    Example:
        >>> from tlkit.models import zoo
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
    model, meta, path = _load(model_or_path)
    input_shape = tuple(model.inputs[0].shape[1:])
    meta = saving.full_metadata(model, {**meta, **(metadata or {})})
    meta["class_names"] = saving.class_names(model, meta)
    meta.update(format=fmt, quantize=quantize)
    index = path.with_suffix("") / "index.json" if path is not None else None
    if index is not None and index.is_file():  # so that `evaluate` scores the run's test split
        meta["index"] = str(index.resolve())
    compared_on, note = "the given sample", None
    if sample is None:
        sample, found = calibration.test_images(path, input_shape,
                                                resize=decode.recorded_resize(meta, str(path)))
        compared_on = f"the run's test images ({found})" if sample is not None else None
    if quantize == "int8":
        if representative is None:
            representative = (sample if sample is not None else calibration.training_images(
                path, meta, input_shape))
        representative = export_checks.check_batch(representative, input_shape, "representative")
        if sample is None:
            sample, compared_on = representative, "the training images it was calibrated on"
    if sample is None:
        x, compared_on = default_sample(input_shape), "random images"
        note = (f"compared on {len(x)} random images, not real ones ({found}): pass sample= "
                f"(--sample DIR) to compare on images like the model's")
    else:
        x = export_checks.check_batch(sample, input_shape)
    tolerance = FLOAT_TOLERANCE if quantize == "none" else QUANT_TOLERANCES[quantize]
    graph, fs = feature_score.graph_model(model, meta, quantize)
    outputs = graph.predict(x, verbose=0)  # with a feature score: [probabilities, score]
    expected = _first_output(outputs)
    expected_score = outputs[1] if fs is not None else None
    score_diff = None

    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        artifact = work / out.name
        if tensorflow_export.needed(fmt):  # on JAX: written by a TensorFlow child process
            tensorflow_export.write(model, path, fmt, quantize, artifact, work, meta,
                                    representative)
        else:
            write_artifact(model, fmt, quantize, artifact, work, meta, representative)
        got, got_score = artifacts.load(artifact).predict_scored(x)
        got = got.reshape(expected.shape)
        diff = float(np.max(np.abs(got.astype("float64") - expected)))
        if expected_score is not None:
            score_diff = export_checks.check_score(fmt, quantize, out, got_score,
                                                   expected_score, tolerance)
        agree = export_checks.top1(got) == export_checks.top1(expected)
        top1 = float(np.mean(agree))
        export_checks.check(fmt, quantize, out, diff, agree, top1, tolerance, expected,
                            note is not None)
        size = _size(artifact)
        files = _replace(artifact, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(str(out), size, diff, top1, tolerance, tuple(map(str, files)), len(x),
                        compared_on, note, score_diff)


__all__ = ["FORMATS", "QUANTIZATIONS", "FLOAT_TOLERANCE", "QUANT_TOLERANCES", "ExportResult",
           "default_sample", "export", "write_artifact", "run_tflite", "run_savedmodel"]
