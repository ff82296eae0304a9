"""The ONNX export: Keras' `model.export(format="onnx")` (tf2onnx), plus the class names and
the metadata in the model's `metadata_props`. `tlkit.deploy.export.export` checks the file
against the Keras model (with onnxruntime).

Example:
    >>> from tlkit.deploy import artifacts   # reads what this writes
    >>> artifacts.load("m.onnx")   # doctest: +SKIP
"""

import json
import warnings

import numpy as np

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.deploy import feature_score


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
        graph, fs = feature_score.graph_model(model, metadata)
        if fs is not None:  # Keras's ONNX export needs a model that has been called
            graph.predict(np.zeros((1, *model.input_shape[1:]), "float32"), verbose=0)
        graph.export(str(artifact), format="onnx", verbose=False)
    proto = onnx.load(str(artifact))
    for key, value in (("class_names", json.dumps(metadata["class_names"])),
                       ("tlkit_metadata", json.dumps(metadata, default=fileio.json_default))):
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(artifact))
