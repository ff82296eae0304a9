"""tlkit: Keras-first transfer learning.

The package is layered by role (README, "Layout"; `tests/test_layering.py` enforces it):
`core` < `config` < `data` < `models` < `training` < `deploy` < `evaluation` (with
`calibrate`) < the tools `advise`, `explain`, `audit` < `workflows` (`tlkit.finetune`,
`tlkit.lr_find`, `tlkit.curve`) < `tuning`, `experiments` < `cli`. This module is the facade
above them all: it names anything, lazily.

Importing tlkit keeps TensorFlow's start-up lines (absl, oneDNN, CUDA probing) off stderr when
TensorFlow is imported after it; `TLKIT_TF_LOGS=1` shows them (`tlkit.core.console`).

Every subpackage and submodule is an attribute after `import tlkit` (`tlkit.data.load(...)`):
it is imported when first named, so `import tlkit` alone imports neither TensorFlow nor Keras.

Public aliases (the one compatibility mechanism): the names a user has always written,
`tlkit.blocks`, `tlkit.zoo`, `tlkit.backbones`, `tlkit.strategies`, `tlkit.train`,
`tlkit.saving`, `tlkit.model_card` (and `from tlkit.blocks import vgg_block`,
`from tlkit import zoo`), are the modules of `PUBLIC_ALIASES` under their new homes: the same
module objects, resolved on first use by `__getattr__` and, for `import` statements, by
`_AliasFinder` on `sys.meta_path`. Code inside tlkit and its tests import the owning modules.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from tlkit.core import console as _console
from tlkit.core.version import __version__  # noqa: F401 - the package's version

_console.install()

# old public path (below `tlkit.`) -> the module that owns it now
PUBLIC_ALIASES = {
    "blocks": "tlkit.models.blocks",
    "zoo": "tlkit.models.zoo",
    "backbones": "tlkit.models.backbones",
    "strategies": "tlkit.training.strategies",
    "train": "tlkit.training.train",
    "saving": "tlkit.deploy.saving",
    "model_card": "tlkit.evaluation.model_card",
}


# The entry points below import their workflow when called: `import tlkit` stays light.


def finetune(data, backbone="mobilenet_v2", strategy="small-similar", **kwargs):
    """Fine-tune a backbone on data with a strategy; see `tlkit.workflows.finetune.finetune`."""
    from tlkit.workflows.finetune import finetune as _finetune

    return _finetune(data, backbone, strategy, **kwargs)


def lr_find(data, backbone="mobilenet_v2", strategy="small-similar", **kwargs):
    """Sweep the learning rate and suggest one; see `tlkit.workflows.lr_find.lr_find`."""
    from tlkit.workflows.lr_find import lr_find as _lr_find

    return _lr_find(data, backbone, strategy, **kwargs)


def audit(data, backbone="mobilenet_v2", **kwargs):
    """Find wrong labels, duplicates, leakage and outliers; see `tlkit.audit.run.audit`."""
    from tlkit.audit.run import audit as _audit

    return _audit(data, backbone, **kwargs)


def curve(data, backbone="mobilenet_v2", **kwargs):
    """Accuracy against training images per class; see `tlkit.workflows.curve.curve`."""
    from tlkit.workflows.curve import curve as _curve

    return _curve(data, backbone, **kwargs)


def evaluate_file(model_path, data=None, **kwargs):
    """Evaluate a saved model on data; see `tlkit.evaluation.predict.evaluate_file`."""
    from tlkit.evaluation.predict import evaluate_file as _evaluate_file

    return _evaluate_file(model_path, data, **kwargs)


def _alias_target(fullname):
    """`tlkit.blocks` -> `tlkit.models.blocks`, `tlkit.backbones.specs` ->
    `tlkit.models.backbones.specs`; None for a name that is not a public alias."""
    head, _, rest = fullname.partition(".")
    if head != __name__:
        return None
    first, _, tail = rest.partition(".")
    target = PUBLIC_ALIASES.get(first)
    if target is None:
        return None
    return f"{target}.{tail}" if tail else target


class _AliasLoader(importlib.abc.Loader):
    """Loads an alias as the owning module itself (one module object under both names)."""

    def __init__(self, target):
        self.target = target
        self._spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec  # the import machinery set the alias's spec: undo it


class _AliasFinder(importlib.abc.MetaPathFinder):
    """`import tlkit.blocks` / `from tlkit.blocks import vgg_block`: the public aliases."""

    def find_spec(self, fullname, path=None, target=None):
        owner = _alias_target(fullname)
        if owner is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(owner))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())


def __getattr__(name):
    """A public alias (`tlkit.zoo`) or a subpackage (`tlkit.data`), imported on first use."""
    if name in PUBLIC_ALIASES:
        return importlib.import_module(PUBLIC_ALIASES[name])
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    import pkgutil

    return sorted(set(globals()) | set(PUBLIC_ALIASES)
                  | {m.name for m in pkgutil.iter_modules(__path__)})
