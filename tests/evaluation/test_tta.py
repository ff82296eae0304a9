"""Test-time augmentation: the variants, `evaluate_file(tta=N)`, `tlkit evaluate --tta`."""

import json

import numpy as np
import pytest

from cli_helpers import run_cli as run
from tlkit.evaluation import predict, tta
from tlkit.deploy import saving
from tlkit.core.errors import TlkitError


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    """An untrained model saved with class names, and an image folder of those classes (TTA
    changes an untrained model's probabilities as much as a trained one's)."""
    import keras

    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("tta")
    photos = write_image_folder(root / "photos", per_class=6, size=32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # raw pixels in, as tlkit's
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)  # position-sensitive: crops and flips change the output
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = saving.save(model, root / "m.h5", {"class_names": ["circle", "square", "stripes"]})
    return path, photos


def test_variants_are_the_documented_ones():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 20, 20, 3)).astype("float32")
    v = tta.variants(x, tta.MAX_TTA)
    assert len(v) == tta.MAX_TTA and all(a.shape == x.shape for a in v)
    np.testing.assert_array_equal(v[0], x)  # the original first
    np.testing.assert_array_equal(v[1], x[:, :, ::-1])  # then the horizontal flip
    np.testing.assert_allclose(v[3], v[2][:, :, ::-1], atol=1e-4)  # centre crop, flipped
    # a 90% centre crop resized back: the centre pixel stays about where it was
    np.testing.assert_allclose(v[2][:, 10, 10], x[:, 10, 10], atol=40)
    assert not np.allclose(v[2], x)
    again = tta.variants(x, 5)  # deterministic, and N means the first N
    for a, b in zip(again, v[:5]):
        np.testing.assert_array_equal(a, b)


def test_tta_one_is_plain_evaluation_and_more_changes_probabilities(model_and_data, tmp_path):
    path, photos = model_and_data
    plain = predict.evaluate_file(path, photos, split="all", out_dir=tmp_path / "plain")
    one = predict.evaluate_file(path, photos, split="all", tta=1)
    assert one["confusion_matrix"] == plain["confusion_matrix"] and one["tta"] == 1
    model, _ = saving.load(path)
    from tlkit import data

    x = data.read_images(sorted((photos / "square").glob("*.png")), 32, 3).astype("float32")
    base = model.predict_on_batch(x)
    np.testing.assert_allclose(tta.TTAModel(model, 1).predict_on_batch(x), base, atol=1e-6)
    four = tta.TTAModel(model, 4).predict_on_batch(x)
    assert not np.allclose(four, base, atol=1e-5)
    want = np.mean([model.predict_on_batch(v) for v in tta.variants(x, 4)], axis=0)
    np.testing.assert_allclose(four, want, atol=1e-6)
    np.testing.assert_allclose(four.sum(axis=1), 1.0, atol=1e-5)
    rep = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert rep["tta"] == 1


def test_cli_records_tta(model_and_data, tmp_path, capsys):
    path, photos = model_and_data
    code, out, err = run(capsys, "evaluate", path, "--data", photos, "--split", "all",
                         "--tta", "3", "--out", tmp_path / "ev")
    assert code == 0, err
    assert "TTA over 3 variants" in out
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["tta"] == 3


@pytest.mark.parametrize("value", ["0", "13"])
def test_bad_tta_is_one_line_exit_2(model_and_data, capsys, value):
    path, photos = model_and_data
    code, out, err = run(capsys, "evaluate", path, "--data", photos, "--tta", value)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tlkit evaluate: error: --tta")
    with pytest.raises(TlkitError, match="tta must be an integer from 1"):
        predict.evaluate_file(path, photos, tta=int(value))


def test_evaluate_file_takes_data_as_finetune_does(model_and_data):
    import tlkit

    path, photos = model_and_data
    new = tlkit.evaluate_file(path, data=photos, split="all")
    with pytest.warns(DeprecationWarning, match="use data="):
        old = predict.evaluate_file(path, source=photos, split="all")
    assert new["confusion_matrix"] == old["confusion_matrix"]
    with pytest.raises(TlkitError, match="data= only"):
        predict.evaluate_file(path, photos, source=photos)
