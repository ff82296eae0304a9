"""tlkit calibrate, predict --reject and evaluate's risk-coverage, as a user runs them."""

import csv
import warnings

import numpy as np
import pytest

from cli_helpers import assert_one_line_error
from cli_helpers import run_cli as run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("calib") / "photos", per_class=12,
                              size=20)


@pytest.fixture(scope="module")
def model(photos):
    """Trained with a validation split of 8 images: not calibrated (too few, a warning)."""
    import tlkit

    out = photos.parent / "m.h5"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = tlkit.finetune(data=str(photos), backbone="zoo:simple_cnn", weights=None,
                             image_size=16, strategy="large-dissimilar", epochs=1,
                             out=str(out), verbose=0, augment=False, val_fraction=0.25)
    assert "calibration" not in res.report
    assert any("not calibrated" in str(w.message) for w in caught)
    return out


def test_reject_and_calibrate_bad_input(capsys, model, photos, tmp_path):
    before = model.read_bytes()
    assert_one_line_error(capsys, tmp_path, ["predict", str(model), str(photos), "--reject"],
                          "tlkit calibrate")
    assert_one_line_error(capsys, tmp_path, ["calibrate", str(model), "--data", str(photos)],
                          "needs at least 20")
    assert_one_line_error(capsys, tmp_path, ["calibrate", str(model), "--data", str(photos),
                                             "--coverage", "1.5"], "(0, 1]")
    assert model.read_bytes() == before
    out = tmp_path / "x.h5"
    assert_one_line_error(capsys, tmp_path, ["finetune", "--data", str(photos), "--backbone",
                                             "zoo:simple_cnn", "--weights", "none",
                                             "--image-size", "16", "--calibrate", "temperature",
                                             "--out", str(out), "--quiet"], "needs at least 20")
    assert_one_line_error(capsys, tmp_path, ["finetune", "--data", str(photos), "--coverage",
                                             "0", "--out", str(out)], "(0, 1]")
    assert not out.exists() and not out.with_suffix("").exists()


def test_calibrate_then_predict_reject_and_evaluate(capsys, model, photos, tmp_path):
    from tlkit import calibrate
    from tlkit.deploy import saving

    from tlkit import data as data_lib
    from tlkit.data import index as index_lib

    # an index of the same folder with a validation split of 20+ images (as --index FILE)
    ds = data_lib.load(str(photos), image_size=(16, 16), val_fraction=0.6, test_fraction=0.2)
    assert len(ds.y_val) >= 20
    big = index_lib.save(ds, tmp_path / "index.json")
    code, out, err = run(capsys, "calibrate", model, "--data", photos, "--index", big,
                         "--coverage", "0.5")
    assert code == 0, err
    meta = saving.read_metadata(model)
    assert meta["calibration"]["unknown"]["coverage"] == 0.5
    code, out, err = run(capsys, "predict", model, photos, "--reject", "--top-k", "2")
    assert code == 0, err
    assert "unknown (score" in out
    csv_path = tmp_path / "p.csv"
    code, out, err = run(capsys, "predict", model, photos, "--reject", "--out", csv_path)
    assert code == 0, err
    rows = list(csv.DictReader(csv_path.open()))
    assert {"rejected", "unknown_score", "prob1"} <= set(rows[0])
    assert {r["rejected"] for r in rows} == {"true", "false"}
    thr = meta["calibration"]["unknown"]["threshold"]
    assert all((float(r["unknown_score"]) > thr) == (r["rejected"] == "true") for r in rows
               if abs(float(r["unknown_score"]) - thr) > 1e-5)  # the CSV rounds to 6 places
    # prob1 is the calibrated probability of class1, predicted in the batch predict used (its
    # first 32 images) by the artifact's scored model (probabilities and unknown score in one
    # pass): oneDNN's AVX-512 kernels differ by batch shape in the last float32 digits, which
    # a small T sharpens (5.4e-5 seen, and once over 2e-4, against one image)
    from tlkit.deploy import artifacts

    art = artifacts.load(model)
    # the images as predict reads them (read_images' grey conversion can differ by one level)
    files = data_lib.ImageFiles([r["path"] for r in rows[:32]], (16, 16), art.input_shape[-1],
                                "squash", [False] * 32)
    x = np.concatenate([np.asarray(b) for b, _ in files.as_dataset(with_ids=True,
                                                                    batch_size=32)])
    raw, scores = art.predict_scored(x.astype("float32"), batch_size=32)
    p, s, _ = calibrate.apply_metadata(raw, meta, scores)
    assert float(rows[0]["prob1"]) == pytest.approx(float(p[0].max()), abs=2e-4)
    assert float(rows[0]["unknown_score"]) == pytest.approx(float(s[0]), rel=1e-4, abs=1e-4)
    code, out, err = run(capsys, "evaluate", model, "--data", photos, "--out", tmp_path / "ev")
    assert code == 0, err
    assert "90% most confident" in out
    assert (tmp_path / "ev" / "risk_coverage.png").is_file()
