"""The docstring examples of every tlkit module run (found in the source tree, not listed).

Also: every private Keras/TensorFlow/KerasTuner API is reached through `tlkit.core.compat` only.
"""

import doctest
import importlib
import pathlib
import re

import keras
import pytest

import tlkit


def _modules_with_examples():
    """Every tlkit module whose docstrings hold an example that runs (doctest's own finder
    decides): found from the source tree, so that a new module cannot be forgotten."""
    finder = doctest.DocTestFinder()
    root = pathlib.Path(tlkit.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        examples = [ex for t in finder.find(importlib.import_module(name)) for ex in t.examples]
        if any(not ex.options.get(doctest.SKIP) for ex in examples):  # all +SKIP: not run
            names.append(name)
    return names


MODULES = _modules_with_examples()


def test_every_module_is_searched():
    # the finder walks the source tree; a folder without __init__.py would import as a
    # namespace package under a name the layout does not give it
    root = pathlib.Path(tlkit.__file__).parent
    folders = {p.parent for p in root.rglob("*.py")}
    assert [str(f) for f in sorted(folders) if not (f / "__init__.py").is_file()] == []
    assert {"tlkit.models.blocks", "tlkit.training.strategies", "tlkit.deploy.saving",
            "tlkit.evaluation.report", "tlkit.workflows.finetune",
            "tlkit.core.errors"} <= set(MODULES)


def test_the_examples_are_found():
    # a broken finder would make the examples below pass by running none
    assert len(MODULES) >= 80 and "tlkit.experiments.reuse" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    keras.backend.clear_session()
    assert result.attempted > 0 and result.failed == 0


def test_private_apis_live_in_compat_only():
    private = re.compile(r"keras\.src|keras_tuner\.src|tensorflow\.python|tf\.python|"
                         r"_keras_history|_inbound_nodes|_run_through_graph")
    root = pathlib.Path(tlkit.__file__).parent
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "compat.py" and private.search(p.read_text())]
    assert found == []
