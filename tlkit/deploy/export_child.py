"""The TensorFlow side of `tlkit.deploy.tensorflow_export`: `python -m tlkit.deploy.export_child
REQUEST` reloads the model on the TensorFlow backend and writes the artifact the request names.

The parent starts it with `KERAS_BACKEND=tensorflow` (`tlkit.core.compat.tensorflow_env`).
Its only output is the artifact (and the files beside it); a `TlkitError` is printed as one
line on stderr with exit code 2.
"""

import json
import sys

import numpy as np

from tlkit.core.errors import TlkitError
from tlkit.deploy import export, feature_score, saving


def main(request_path):
    """Write the artifact of the request file; returns the exit code."""
    request = json.loads(open(request_path, encoding="utf-8").read())
    try:
        model, file_meta = saving.load(request["model"])
        metadata = feature_score.attach(request["metadata"], feature_score.of(file_meta))
        # Keras's ONNX export refuses a model that has never been called (the parent's has
        # predicted the sample already; this fresh reload has not).
        model.predict(np.zeros((1, *model.input_shape[1:]), "float32"), verbose=0)
        representative = (np.load(request["representative"]) if request["representative"]
                          else None)
        export.write_artifact(model, request["fmt"], request["quantize"], request["artifact"],
                              request["work"], metadata, representative)
    except TlkitError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
