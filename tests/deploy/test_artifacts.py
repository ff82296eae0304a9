"""Every deployable artifact tlkit writes, opened by `tlkit predict` and `tlkit evaluate`,
which name the classes: `.keras` (from `finetune --out`), `.h5`, SavedModel, TFLite (float and
int8, calibrated on the run's recorded training images), ONNX."""

import json
import warnings

import numpy as np
import pytest

from cli_helpers import run_cli as run
from tlkit.deploy import artifacts, export
from tlkit.evaluation import predict
from tlkit.core.errors import TlkitError

CLASSES = ["circle", "square", "stripes"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """`tlkit finetune --out m.keras` on a tiny image folder (zoo:fashion_cnn at 32 px)."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("artifacts")
    photos = write_image_folder(root / "photos", per_class=8, size=32)
    return root, photos


@pytest.fixture(scope="module")
def trained(run_folder):
    root, photos = run_folder
    from tlkit import cli

    with warnings.catch_warnings():  # chance level on a 2-image test split: expected here
        warnings.simplefilter("ignore", UserWarning)
        code = cli.main(["finetune", "--data", str(photos), "--backbone", "zoo:fashion_cnn",
                         "--weights", "none", "--image-size", "32", "--strategy",
                         "large-dissimilar", "--epochs", "2", "--no-augment", "--quiet",
                         "--out", str(root / "m.keras")])
    assert code == 0
    return root / "m.keras", photos


@pytest.fixture(scope="module")
def exported(trained):
    """Each artifact kind, written from the `.keras` file (int8: no --sample)."""
    model, _ = trained
    root = model.parent
    paths = {"keras": model}
    for kind, fmt, quantize, name in [("h5", "keras", "none", None),
                                      ("savedmodel", "savedmodel", "none", "sm"),
                                      ("tflite", "tflite", "none", "m.tflite"),
                                      ("int8", "tflite", "int8", "q.tflite"),
                                      ("onnx", "onnx", "none", "m.onnx")]:
        if kind == "h5":
            from tlkit.deploy import saving

            m, meta = saving.load(model)
            paths[kind] = saving.save(m, root / "m.h5", meta)
            continue
        if kind == "onnx" and not _has_onnx():
            continue
        paths[kind] = export.export(model, fmt, root / name, quantize).path
    return paths


def _has_onnx():
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def test_finetune_writes_keras_with_metadata(trained):
    model, _ = trained
    art = artifacts.load(model)
    assert art.kind == "keras" and art.class_names == CLASSES
    assert art.metadata["input"]["shape"] == [32, 32, 1] and art.metadata["strategy"]
    assert (model.parent / "m" / "report.json").is_file()  # report folder named after it


KINDS = ["keras", "h5", "savedmodel", "tflite", "int8", "onnx"]


@pytest.mark.parametrize("kind", KINDS)
def test_predict_and_evaluate_name_the_classes(kind, exported, trained, capsys, tmp_path):
    if kind not in exported:
        pytest.skip("tf2onnx / onnxruntime not installed")
    path = exported[kind]
    art = artifacts.load(path)
    assert art.class_names == CLASSES
    _, photos = trained
    code, out, err = run(capsys, "predict", path, photos / "square", "--top-k", "2")
    assert code == 0 and err == "", err  # no runtime lines (TFLite's XNNPACK notice) either
    rows = out.strip().splitlines()
    assert len(rows) == 8 and all(r.split()[1] in CLASSES for r in rows)
    code, out, err = run(capsys, "evaluate", path, "--data", photos, "--split", "all",
                         "--out", tmp_path / "eval")
    assert code == 0, err
    assert f"classes: {', '.join(CLASSES)}" in out
    assert "all splits of the run's index" in out  # exported artifacts record the index
    assert all(c in out for c in CLASSES)
    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert rep["class_names"] == CLASSES and rep["tta"] == 1 and rep["n"] == 24
    assert rep["model_kind"] == ("keras" if kind == "h5" else
                                 "tflite" if kind == "int8" else kind)


def test_artifacts_agree_with_the_keras_model(exported, trained):
    _, photos = trained
    files = sorted((photos / "circle").glob("*.png"))[:4]
    from tlkit import data

    x = data.read_images(files, image_size=32, channels=1).astype("float32")
    want = artifacts.load(exported["keras"]).predict(x)
    for kind, path in exported.items():
        got = artifacts.load(path).predict(x)
        tol = 0.1 if kind == "int8" else 1e-4
        np.testing.assert_allclose(got, want, atol=tol, err_msg=kind)


def test_tflite_files_beside_it(exported):
    path = exported["int8"]
    labels = artifacts.labels_path(path)
    assert labels.name == "q.labels.txt" and labels.read_text().splitlines() == CLASSES
    meta = json.loads(artifacts.metadata_path(path).read_text())
    assert meta["quantize"] == "int8" and meta["input"]["dtype"] == "uint8"
    assert meta["class_names"] == CLASSES


def test_int8_cli_prints_agreement_on_the_test_images(trained, capsys, tmp_path):
    """int8 calibrates on the run's training images and is compared on its test images."""
    model, photos = trained
    code, out, err = run(capsys, "export", model, "--format", "tflite", "--quantize", "int8",
                         "--out", tmp_path / "q.tflite")
    assert code == 0, err
    assert err == ""  # the quantizer's own C++ line is kept off the console
    index = model.with_suffix("") / "index.json"
    n_test = len(json.loads(index.read_text())["splits"]["test"]["paths"])
    assert f"top-1 agreement: 100.0% ({n_test} images: the run's test images ({index}))" in out
    assert f"wrote {tmp_path / 'q.labels.txt'}" in out
    code, out, err = run(capsys, "export", model, "--format", "tflite", "--quantize", "int8",
                         "--sample", photos / "circle", "--out", tmp_path / "q2.tflite")
    assert code == 0, err
    assert "(8 images: the given sample)" in out


def test_not_an_artifact(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(TlkitError, match="not a SavedModel"):
        artifacts.load(tmp_path / "folder")
    (tmp_path / "m.pt").write_bytes(b"")
    with pytest.raises(TlkitError, match=r"\.h5 or \.keras model, a SavedModel folder"):
        predict.predict_files(tmp_path / "m.pt", tmp_path)


@pytest.mark.parametrize("module", ["tlkit.deploy.artifacts", "tlkit.deploy.saving",
                                    "tlkit.deploy.export", "tlkit.deploy.saved_model",
                                    "tlkit.deploy.tflite", "tlkit.deploy.onnx",
                                    "tlkit.deploy.calibration", "tlkit.evaluation.tta",
                                    "tlkit.evaluation.model_card", "tlkit.evaluation.predict"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
