"""Writers of each export format, with the class names and the input contract inside or beside.

Used by `tlkit.deploy.export.export`, which checks what they write against the Keras model.

- `write_savedmodel`: Keras' `ExportArchive` with two endpoints: `serve` (probabilities,
  what `tf.saved_model.load(out).serve(x)` calls) and the signature `serving_default`:
  `{"probabilities": (N, C), "class_names": (N, C) string, "top_class": (N,) string,
  "unknown": (N,) bool, "unknown_score": (N,)}`; with a temperature in the metadata
  (`tlkit.calibrate`), `probabilities` are the calibrated softmax(log p / T) and `unknown`
  is the score above the threshold (False everywhere for a model without one); `serve`
  stays the model's own outputs.
  The names come from `assets/labels.txt` through a `tf.lookup.StaticHashTable` (so the
  labels file is a tracked asset of the SavedModel, copied with it); the tlkit metadata is
  in `assets.extra/tlkit_metadata.json` (the SavedModel folder for files the graph does
  not read).
- `convert_tflite`: from a plain SavedModel with `tf.lite.TFLiteConverter`, built-in ops
  only; `"int8"` is full-integer quantization calibrated on representative images (uint8
  input pixels, uint8 probabilities).
- `write_onnx`: Keras' `model.export(format="onnx")` (tf2onnx), plus the class names and
  metadata in the model's `metadata_props`.

Example:
    >>> from tlkit.deploy import artifacts   # reads what these write
    >>> artifacts.tflite_interpreter("m.tflite")   # doctest: +SKIP
"""

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np

from tlkit.core import console
from tlkit.core.errors import TlkitError
from tlkit.deploy import artifacts


def write_savedmodel(model, out, metadata, work):
    """A SavedModel folder whose signature gives probabilities and class names (module doc)."""
    import keras
    import tensorflow as tf

    labels = Path(work) / "labels" / artifacts.LABELS_FILE  # its name is the asset's name
    labels.parent.mkdir(exist_ok=True)
    labels.write_text(artifacts.labels_text(metadata["class_names"]), encoding="utf-8")
    table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
        str(labels), tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string,
        tf.lookup.TextFileIndex.WHOLE_LINE), default_value="")
    n_classes = len(metadata["class_names"])
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="images")

    def serve(images):
        return model(images, training=False)

    cal = metadata.get("calibration") or {}
    temperature = float(cal.get("temperature") or 1.0)
    unk = cal.get("unknown") or {}

    def classify(images):
        raw = model(images, training=False)
        names = table.lookup(tf.range(n_classes, dtype=tf.int64))
        scores = raw if n_classes == raw.shape[-1] else tf.concat([1 - raw, raw], -1)
        # tlkit.calibrate.temperature.apply and .unknown.scores, in the graph
        z = tf.math.log(tf.clip_by_value(tf.cast(scores, tf.float32), 1e-12, 1.0)) / temperature
        probs = tf.nn.softmax(z, axis=-1) if temperature != 1.0 else tf.cast(raw, tf.float32)
        if unk.get("score", "msp") == "energy":
            unknown_score = -temperature * tf.reduce_logsumexp(z, axis=-1)
        else:
            unknown_score = 1.0 - tf.reduce_max(tf.nn.softmax(z, axis=-1), axis=-1)
        threshold = unk.get("threshold")
        unknown = (unknown_score > threshold if threshold is not None
                   else tf.zeros_like(unknown_score, tf.bool))
        return {"probabilities": probs,
                "class_names": tf.tile(names[None], [tf.shape(probs)[0], 1]),
                "top_class": tf.gather(names, tf.argmax(scores, axis=-1)),
                "unknown": unknown, "unknown_score": unknown_score}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    archive.add_endpoint("serve", serve, input_signature=[spec])
    archive.add_endpoint("serving_default", classify, input_signature=[spec])
    archive.write_out(str(out), verbose=False)
    extra = Path(out) / artifacts.SAVEDMODEL_METADATA
    extra.parent.mkdir(exist_ok=True)
    extra.write_text(json.dumps(metadata, default=str), encoding="utf-8")


def convert_tflite(model, quantize, work, representative=None):
    """The `.tflite` bytes of `model` (`quantize`: none, dynamic, float16 or int8)."""
    import tensorflow as tf

    saved = work / "plain_savedmodel"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([representative[i:i + 1]]
                                                    for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    try:
        # The quantizer prints "fully_quantize: 0, ..." from C++ straight to fd 2.
        with console.quiet_fd2() if not console.logs_shown() else contextlib.nullcontext():
            return converter.convert()
    except Exception as e:  # the converter raises its own ConverterError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TlkitError(f"TFLite conversion failed (built-in ops only): {msg}") from None


def write_onnx(model, artifact, metadata):
    """An ONNX file of `model` with `metadata` (and its class names) in `metadata_props`."""
    try:
        import onnx
        import tf2onnx  # noqa: F401  (Keras' ONNX export uses it)
    except ImportError:
        raise TlkitError("--format onnx needs tf2onnx and onnxruntime: pip install "
                         "'tlkit[onnx]'.") from None
    with warnings.catch_warnings():  # Keras' tf2onnx patch touches the deprecated np.object
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(artifact), format="onnx", verbose=False)
    proto = onnx.load(str(artifact))
    for key, value in (("class_names", json.dumps(metadata["class_names"])),
                       ("tlkit_metadata", json.dumps(metadata, default=str))):
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(artifact))


def write_tflite(model, artifact, metadata, quantize="none", work=None, representative=None):
    """A `.tflite` file and, beside it, `m.labels.txt` and `m.tlkit.json` (the metadata; for
    int8, `input` gets the input tensor's dtype and quantization)."""
    import tempfile

    artifact = Path(artifact)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        flat = convert_tflite(model, quantize, Path(tmp), representative)
    artifact.write_bytes(flat)
    if quantize == "int8":
        detail = artifacts.tflite_interpreter(artifact).get_input_details()[0]
        scale, zero = detail["quantization"]
        metadata["input"] = {**metadata["input"], "dtype": np.dtype(detail["dtype"]).name,
                             "quantization": {"scale": float(scale), "zero_point": int(zero)}}
    artifacts.write_labels(artifacts.labels_path(artifact), metadata["class_names"])
    with open(artifacts.metadata_path(artifact), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, default=str)
