"""The TFLite export: a `.tflite` file, its labels and its metadata beside it.

`convert_tflite`: from a plain SavedModel with `tf.lite.TFLiteConverter`, built-in ops only;
`"int8"` is full-integer quantization calibrated on representative images (uint8 input
pixels, uint8 probabilities; `tlkit.deploy.calibration` chooses them). `write_tflite` writes
the file, `m.labels.txt` and `m.tlkit.json`. `tlkit.deploy.export.export` checks the result
against the Keras model.

Example:
    >>> from tlkit.deploy import artifacts   # reads what this writes
    >>> artifacts.tflite_interpreter("m.tflite")   # doctest: +SKIP
"""

import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np

from tlkit.core import console, fileio
from tlkit.core.errors import TlkitError
from tlkit.deploy import artifacts, feature_score


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


def write_tflite(model, artifact, metadata, quantize="none", work=None, representative=None):
    """A `.tflite` file and, beside it, `m.labels.txt` and `m.tlkit.json` (the metadata; for
    int8, `input` gets the input tensor's dtype and quantization)."""
    artifact = Path(artifact)
    model, fs = feature_score.graph_model(model, metadata, quantize)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        flat = convert_tflite(model, quantize, Path(tmp), representative)
    _mark_score(metadata, fs)
    artifact.write_bytes(flat)
    if quantize == "int8":
        detail = artifacts.tflite_interpreter(artifact).get_input_details()[0]
        scale, zero = detail["quantization"]
        metadata["input"] = {**metadata["input"], "dtype": np.dtype(detail["dtype"]).name,
                             "quantization": {"scale": float(scale), "zero_point": int(zero)}}
    artifacts.write_labels(artifacts.labels_path(artifact), metadata["class_names"])
    with open(artifacts.metadata_path(artifact), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, default=fileio.json_default)


def _mark_score(metadata, fs):
    """Record in the metadata whether the graph's second output is the unknown score."""
    unk = (metadata.get("calibration") or {}).get("unknown")
    if unk is not None and unk.get("score") == feature_score.KIND:
        unk["in_graph"] = fs is not None
