"""The SavedModel export: the class names and the input contract inside the folder.

Used by `tlkit.deploy.export.export`, which checks what it writes against the Keras model
(the other formats: `tlkit.deploy.tflite`, `tlkit.deploy.onnx`).

`write_savedmodel`: Keras' `ExportArchive` with two endpoints: `serve` (probabilities, what
`tf.saved_model.load(out).serve(x)` calls) and the signature `serving_default`:
`{"probabilities": (N, C), "class_names": (N, C) string, "top_class": (N,) string,
"unknown": (N,) bool, "unknown_score": (N,)}`; with a temperature in the metadata
(`tlkit.calibrate`), `probabilities` are the calibrated softmax(log p / T) and `unknown` is
the score above the threshold (False everywhere for a model without one); `serve` stays the
model's own outputs. With a Mahalanobis unknown score (`tlkit.deploy.feature_score`, the
default for models with a `head_pool`), `unknown_score` is computed in the graph from the
features, and a third endpoint `serve_scored` gives `{"probabilities" (raw), "unknown_score"}`
(what tlkit's loader calls). The names come from `assets/labels.txt` through a
`tf.lookup.StaticHashTable` (so the labels file is a tracked asset of the SavedModel, copied
with it); the tlkit metadata is in `assets.extra/tlkit_metadata.json` (the SavedModel folder
for files the graph does not read).

Example:
    >>> from tlkit.deploy import artifacts   # reads what this writes
    >>> artifacts.load("m_savedmodel/")   # doctest: +SKIP
"""

import json
from pathlib import Path

from tlkit.core import fileio
from tlkit.core.choices import DEFAULT_UNKNOWN_SCORE
from tlkit.deploy import artifacts, feature_score


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

    graph, fs = feature_score.graph_model(model, metadata)

    def serve(images):
        return model(images, training=False)

    def serve_scored(images):  # what tlkit's loader calls: raw probabilities and the score
        raw, unknown_score = graph(images, training=False)
        return {"probabilities": raw, "unknown_score": unknown_score}

    cal = metadata.get("calibration") or {}
    temperature = float(cal.get("temperature") or 1.0)
    unk = cal.get("unknown") or {}

    def classify(images):
        raw, feature_unknown = (graph(images, training=False) if fs is not None
                                else (model(images, training=False), None))
        names = table.lookup(tf.range(n_classes, dtype=tf.int64))
        scores = raw if n_classes == raw.shape[-1] else tf.concat([1 - raw, raw], -1)
        # tlkit.calibrate.temperature.apply and .unknown.scores, in the graph
        z = tf.math.log(tf.clip_by_value(tf.cast(scores, tf.float32), 1e-12, 1.0)) / temperature
        probs = tf.nn.softmax(z, axis=-1) if temperature != 1.0 else tf.cast(raw, tf.float32)
        score = unk.get("score", DEFAULT_UNKNOWN_SCORE)
        if feature_unknown is not None:
            unknown_score = feature_unknown
        elif score == "energy":
            unknown_score = -temperature * tf.reduce_logsumexp(z, axis=-1)
        elif score == "entropy":
            log_q = tf.nn.log_softmax(z, axis=-1)
            unknown_score = -tf.reduce_sum(tf.exp(log_q) * log_q, axis=-1)
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
    archive.track(graph)
    archive.track(table)
    archive.add_endpoint("serve", serve, input_signature=[spec])
    if fs is not None:
        archive.add_endpoint("serve_scored", serve_scored, input_signature=[spec])
    archive.add_endpoint("serving_default", classify, input_signature=[spec])
    archive.write_out(str(out), verbose=False)
    extra = Path(out) / artifacts.SAVEDMODEL_METADATA
    extra.parent.mkdir(exist_ok=True)
    extra.write_text(json.dumps(metadata, default=fileio.json_default), encoding="utf-8")
