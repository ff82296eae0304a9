"""The README's Python examples run as written."""

import pathlib
import re

import keras

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def block_with(text):
    return next(b for b in python_blocks() if text in b)


def test_readme_vgg19_example_runs():
    code = block_with("from tlkit.blocks import vgg_block")
    ns = {}
    exec(compile(code.replace("model.summary()", ""), "README.md", "exec"), ns)
    model = ns["model"]
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 16 and model.output_shape == (None, 10)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)


def test_readme_zoo_example_runs():
    ns = {}
    exec(compile(block_with("zoo.build"), "README.md", "exec"), ns)
    assert ns["model"].output_shape == (None, 5)


def test_readme_finetune_example_runs(capsys):
    ns = {}
    exec(compile(block_with("tlkit.finetune("), "README.md", "exec"), ns)
    assert 0.0 <= ns["result"].report["accuracy"] <= 1.0
    assert "small-similar" in capsys.readouterr().out
