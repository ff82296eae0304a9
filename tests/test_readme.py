"""The README's Python examples run as written."""

import pathlib
import re

import keras

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_vgg19_example_runs():
    code = python_blocks()[0]
    assert "from tlkit.blocks import vgg_block" in code
    ns = {}
    exec(compile(code.replace("model.summary()", ""), "README.md", "exec"), ns)
    model = ns["model"]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 16 and model.output_shape == (None, 10)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)


def test_readme_zoo_example_runs():
    ns = {}
    exec(compile(python_blocks()[1], "README.md", "exec"), ns)
    assert ns["model"].output_shape == (None, 5)
