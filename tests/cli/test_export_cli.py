"""tlkit export as a user runs them on a model tlkit trained."""

import warnings

import pytest

from cli_helpers import assert_one_line_error
from cli_helpers import run_cli as run
from model_helpers import small_photo_model as _finetune


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("explain") / "photos", per_class=8)


@pytest.fixture(scope="module")
def small_trained(photos):
    """A classifier on the zoo's fashion_cnn base that tlkit trained: what `tlkit export`
    prints and writes does not depend on the backbone, and converting a MobileNetV2 takes
    seconds per format (tests/deploy/test_export.py converts a nested MobileNetV2 to TFLite)."""
    with warnings.catch_warnings():  # random frozen base, chance level: expected here
        warnings.simplefilter("ignore", UserWarning)
        return _finetune(photos, "zoo:fashion_cnn", photos.parent / "small.h5")


@pytest.mark.parametrize("fmt,out,extra", [("tflite", "m.tflite", ["--quantize", "dynamic"]),
                                           ("savedmodel", "sm", [])])
def test_export(capsys, small_trained, tmp_path, fmt, out, extra):
    model, photos = small_trained
    code, stdout, err = run(capsys, "export", model, "--format", fmt, "--out", tmp_path / out,
                            "--sample", photos / "stripes", *extra)
    assert code == 0, err
    assert "size:" in stdout and "largest output difference" in stdout
    assert "top-1 agreement: 100.0%" in stdout
    assert (tmp_path / out).exists()


@pytest.mark.parametrize("argv,needle", [
    (["export", "{model}", "--format", "coreml", "--out", "{tmp}/m.mlmodel"], "tflite"),
    (["export", "{model}", "--format", "tflite", "--sample", "{tmp}/none", "--out",
      "{tmp}/m.tflite"], "--sample"),
    (["export", "{model}", "--format", "tflite", "--sample", "{bad}", "--out",
      "{tmp}/m.tflite"], "bad.png"),
    (["export", "{model}", "--format", "tflite", "--quantize", "int4", "--out", "{tmp}/m.tflite"],
     "dynamic"),
    (["export", "{model}", "--format", "keras", "--out", "/proc/nope/m.keras"], "/proc/nope"),
    (["export", "{model}", "--format", "keras", "--quantize", "dynamic", "--out",
      "{tmp}/m.keras"], "--quantize dynamic needs --format tflite. Received: --format keras; "
                        "use --quantize none for keras."),
    (["export", "{bad}", "--format", "keras", "--out", "{tmp}/m.keras"],
     "bad.png is not a model file; give a .h5 or .keras model"),
])
def test_bad_input(capsys, small_trained, tmp_path, argv, needle):
    model, photos = small_trained
    assert_one_line_error(capsys, tmp_path, argv, needle, model=model, photos=photos)


def test_vocabularies_match_the_library():
    from tlkit.deploy import export
    from tlkit.cli import evaluate as cli_evaluate
    from tlkit.cli import export as cli_export
    from tlkit.evaluation import tta

    assert cli_export.FORMATS == export.FORMATS
    assert cli_export.QUANTIZATIONS == export.QUANTIZATIONS
    assert cli_evaluate.MAX_TTA == tta.MAX_TTA


def test_export_keeps_class_names(capsys, small_trained, tmp_path):
    model, photos = small_trained
    code, stdout, err = run(capsys, "export", model, "--format", "tflite", "--out",
                            tmp_path / "m.tflite")
    assert code == 0, err
    assert f"wrote {tmp_path / 'm.labels.txt'}" in stdout
    assert (tmp_path / "m.labels.txt").read_text().split() == ["circle", "square", "stripes"]


def test_export_check_runs_on_the_run_test_images(capsys, small_trained, tmp_path):
    """Without --sample, a model with its report folder is compared on its run's test images
    (index.json): the printed difference and agreement are the ones on those images."""
    import json
    import re
    import shutil

    import numpy as np

    from tlkit.deploy import calibration, saving
    from tlkit.deploy.export import run_tflite

    model, photos = small_trained
    code, stdout, err = run(capsys, "export", model, "--format", "tflite", "--quantize",
                            "dynamic", "--out", tmp_path / "m.tflite")
    assert code == 0, err
    index = model.with_suffix("") / "index.json"
    n_test = len(json.loads(index.read_text())["splits"]["test"]["paths"])
    assert f"({n_test} images: the run's test images ({index}))" in stdout
    assert "note:" not in stdout and "random" not in stdout
    keras_model, _ = saving.load(model)
    x, _ = calibration.test_images(model, keras_model.input_shape[1:])
    want = keras_model.predict(x, verbose=0)
    got = run_tflite(tmp_path / "m.tflite", x)
    printed = float(re.search(r"difference vs Keras: (\S+)", stdout).group(1))
    assert printed == pytest.approx(float(np.abs(got - want).max()), rel=5e-3, abs=1e-12)
    agree = float(np.mean(got.argmax(1) == want.argmax(1)))
    assert f"top-1 agreement: {agree:.1%}" in stdout

    alone = shutil.copy(model, tmp_path / "alone.h5")  # no report folder beside it
    code, stdout, err = run(capsys, "export", alone, "--format", "keras", "--out",
                            tmp_path / "alone.keras")
    assert code == 0, err
    assert "(8 images: random images)" in stdout
    assert "note: compared on 8 random images, not real ones (no index.json of the run" in stdout
    assert "pass --sample DIR" in stdout
