"""tlkit: Keras-first transfer learning.

Blocks (`tlkit.blocks`), a classic model zoo (`tlkit.zoo`), pretrained backbones split into
stages (`tlkit.backbones`), the four strategies of the size-versus-similarity matrix
(`tlkit.strategies`) and deployable `.h5` files (`tlkit.saving`).

Importing tlkit keeps TensorFlow's start-up lines (absl, oneDNN, CUDA probing) off stderr when
TensorFlow is imported after it; `TLKIT_TF_LOGS=1` shows them (`tlkit.console`).

Every submodule is an attribute after `import tlkit` (`tlkit.model_card.write(...)`,
`tlkit.data.load(...)`): it is imported when first named, so `import tlkit` alone imports
neither TensorFlow nor Keras.
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


def evaluate_file(model_path, data=None, **kwargs):
    """Evaluate a saved model on data; see `tlkit.predict.evaluate_file`."""
    from tlkit.predict import evaluate_file as _evaluate_file

    return _evaluate_file(model_path, data, **kwargs)


def __getattr__(name):
    """A submodule named as an attribute (`tlkit.model_card`), imported on first use."""
    import importlib
    import importlib.util

    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    import pkgutil

    return sorted(set(globals()) | {m.name for m in pkgutil.iter_modules(__path__)})
