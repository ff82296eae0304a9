"""The docstring examples of the backbones, tuning, experiments and compatibility modules run.

Also: every private Keras/TensorFlow/KerasTuner API is reached through `tlkit.compat` only.
"""

import doctest
import importlib
import pathlib
import re

import keras
import pytest

import tlkit

MODULES = [
    "tlkit.backbones", "tlkit.backbones.specs", "tlkit.backbones.backbone",
    "tlkit.backbones.preprocessing", "tlkit.backbones.stages", "tlkit.backbones.builders",
    "tlkit.compat", "tlkit.distribute", "tlkit.logs", "tlkit.phases",
    "tlkit.tuning.hypermodel", "tlkit.tuning.zoo_hypermodel", "tlkit.tuning.backbone_hypermodel",
    "tlkit.demo", "tlkit.experiments.config", "tlkit.experiments.classes",
    "tlkit.experiments.table", "tlkit.experiments.networks", "tlkit.experiments.demo",
    "tlkit.experiments.reuse",
    "tlkit.data.dataset", "tlkit.data.listing", "tlkit.learning_curve", "tlkit.curve_plot",
    "tlkit.calibrate.temperature", "tlkit.calibrate.metrics", "tlkit.calibrate.unknown",
    "tlkit.calibrate.run",
]


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
