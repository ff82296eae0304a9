"""tlkit: Keras-first transfer learning.

Blocks (`tlkit.blocks`), a classic model zoo (`tlkit.zoo`), pretrained backbones split into
stages (`tlkit.backbones`), the four strategies of the size-versus-similarity matrix
(`tlkit.strategies`) and deployable `.h5` files (`tlkit.saving`).

Importing tlkit keeps TensorFlow's start-up lines (absl, oneDNN, CUDA probing) off stderr when
TensorFlow is imported after it; `TLKIT_TF_LOGS=1` shows them (`tlkit.console`).
"""

from tlkit import console as _console

__version__ = "0.1.0"

_console.install()


def finetune(data, backbone="mobilenet_v2", strategy="small-similar", **kwargs):
    """Fine-tune a backbone on data with a strategy; see `tlkit.transfer.finetune`."""
    from tlkit.transfer import finetune as _finetune

    return _finetune(data, backbone, strategy, **kwargs)


def lr_find(data, backbone="mobilenet_v2", strategy="small-similar", **kwargs):
    """Sweep the learning rate and suggest one; see `tlkit.lr_finder.lr_find`."""
    from tlkit.lr_finder import lr_find as _lr_find

    return _lr_find(data, backbone, strategy, **kwargs)


def audit(data, backbone="mobilenet_v2", **kwargs):
    """Find wrong labels, duplicates, leakage and outliers; see `tlkit.audit.run.audit`."""
    from tlkit.audit.run import audit as _audit

    return _audit(data, backbone, **kwargs)


def curve(data, backbone="mobilenet_v2", **kwargs):
    """Accuracy against training images per class; see `tlkit.learning_curve.curve`."""
    from tlkit.learning_curve import curve as _curve

    return _curve(data, backbone, **kwargs)
