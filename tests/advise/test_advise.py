"""tlkit advise and --strategy auto: one tapped pass, scores per stage, a recommendation that
follows the evidence, and features the following finetune reuses."""

import json

import h5py
import numpy as np
import pytest

import tlkit
from cli_helpers import run_cli as run
from tlkit import advise, data
from tlkit.advise import recommend
from tlkit.core.errors import TlkitError




@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """A ResNet-20 trained on the digits at 32 px: a base whose features fit the digits."""
    path = tmp_path_factory.mktemp("source") / "digits_resnet.h5"
    tlkit.finetune(data="digits", backbone="zoo:resnet_small", weights=None, image_size=32,
                   strategy="large-dissimilar", epochs=3, augment=False, batch_size=64,
                   out=path, verbose=0)
    return path


def test_advise_writes_scores_per_stage_and_recommends(tmp_path, capsys, source_model):
    out = tmp_path / "advice"
    code, stdout, err = run(capsys, "advise", "--data", "digits", "--image-size", "32",
                            "--backbone", f"zoo:simple_cnn,{source_model}", "--weights",
                            "none", "--out", out)
    assert code == 0, err
    doc = json.loads((out / "advice.json").read_text())
    assert (out / "advice.png").stat().st_size > 10_000
    assert [b["backbone"] for b in doc["backbones"]] == ["zoo:simple_cnn", str(source_model)]
    random, trained = doc["backbones"]
    assert [s["name"] for s in random["stages"]] == ["stage0", "stage1"]
    assert [s["name"] for s in trained["stages"]] == ["stage0", "stage1", "stage2"]
    for b in doc["backbones"]:
        for s in b["stages"]:
            assert 0 <= s["knn_accuracy"] <= 1 and 0 <= s["linear_probe_accuracy"] <= 1
            assert np.isfinite(s["logme"])
    assert random["recommendation"]["strategy"] == "large-dissimilar"
    assert any("random" in r for r in random["recommendation"]["reasons"])
    # the trained base's last stage fits the digits: it ranks first; with 1,149 training
    # images for 273k parameters (238 per image) the data is large but not plentiful, and
    # similar: the head is solved on the frozen base
    assert doc["ranking"][0] == str(source_model)
    assert trained["stages"][-1]["logme"] > random["stages"][-1]["logme"]
    top = trained["stages"][-1]["linear_probe_accuracy"]
    assert top > 0.9
    assert trained["recommendation"]["size"] == "large"
    assert trained["recommendation"]["similarity"] == "similar"
    assert doc["choice"]["strategy"] == "small-similar"
    assert "LogME" in stdout and "no absolute scale" in stdout and "recommendation" in stdout
    assert "\r" not in stdout and "━" not in stdout  # not a terminal: no redrawn bars
    assert doc["data"]["per_class_min"] >= 2 and doc["data"]["num_classes"] == 10


def test_auto_trains_the_choice_and_reuses_the_advise_pass(tmp_path, source_model):
    out = tmp_path / "auto.h5"
    few = data.load("digits", image_size=32, channels=3).select(per_class=10)
    r = tlkit.finetune(data=few, backbone=str(source_model), strategy="auto", augment=False,
                       out=out, verbose=0)
    # 100 images for 273k parameters: small; the digits are what the base learned: similar;
    # so a converged head, then the last stage fine-tuned (LP-FT), on the advise pass's features
    assert r.plan.strategy == "large-similar"
    assert r.report["advice"]["choice"]["strategy"] == "large-similar"
    assert any("per image" in reason for reason in r.report["reasons"])
    assert any("feature extraction" in reason for reason in r.report["reasons"])
    assert r.report["fit"]["cache"]["train"]["where"] == "reused"
    assert [p["name"] for p in r.report["fit"]["phases"]] == ["head", "fine-tune"]
    with h5py.File(out, "r") as f:
        meta = json.loads(f.attrs["tlkit_metadata"])
    assert meta["strategy"] == "large-similar" and meta["strategy_requested"] == "auto"
    assert meta["reasons"] == r.report["reasons"]
    assert r.report["accuracy"] > 0.8


def test_recommendation_rules():
    small = {"train": 100, "base_params": 1_000_000, "num_classes": 4, "random_weights": False}
    medium = {**small, "train": 5_000}  # 200 parameters per image: large, not plentiful
    large = {**small, "train": 50_000}  # 20 per image: plentiful
    similar = [{"probe": 0.6}, {"probe": 0.8}, {"probe": 0.95}]
    rec = recommend(similar, small)  # small and similar: LP-FT, not feature extraction
    assert rec["strategy"] == "large-similar" and rec["size"] == "small"
    assert rec["similarity"] == "similar" and rec["unfreeze"] == 1
    rec = recommend(similar, medium)  # the solved head on the frozen base
    assert rec["strategy"] == "small-similar" and rec["size"] == "large"
    assert rec["unfreeze"] is None and any("not plentiful" in r for r in rec["reasons"])
    assert recommend(similar, large)["strategy"] == "large-dissimilar"
    perfect = [{"probe": 0.6}, {"probe": 0.99}, {"probe": 0.995}]
    rec = recommend(perfect, large)
    assert rec["strategy"] == "large-similar" and rec["unfreeze"] == 1
    assert any("stage1 probes as well as stage2" in r for r in rec["reasons"])
    earlier = [{"probe": 0.6}, {"probe": 0.9}, {"probe": 0.7}]
    rec = recommend(earlier, small)
    assert rec["strategy"] == "small-dissimilar" and rec["unfreeze"] == 1
    assert any("stage1 probes at 90.0%" in r for r in rec["reasons"])
    assert any("stage1 probes best (90.0%)" in r for r in rec["reasons"])
    assert not any("stage1 probes as well as stage1" in r for r in rec["reasons"])
    assert recommend(earlier, large)["strategy"] == "large-dissimilar"
    assert recommend(earlier, medium)["strategy"] == "large-dissimilar"  # dissimilar
    weak = [{"probe": 0.3}, {"probe": 0.35}]
    assert recommend(weak, small)["similarity"] == "dissimilar"
    assert recommend(similar, {**small, "random_weights": True})["strategy"] == \
        "large-dissimilar"


def test_bad_input(tmp_path):
    ds = data.load("digits")
    tiny = ds.select(per_class=1)
    with pytest.raises(TlkitError, match="fewer than 2 training images"):
        advise.advise(tiny, "zoo:simple_cnn", weights=None, verbose=0)
    with pytest.raises(TlkitError, match="Unknown backbone 'mobilenet_v9'.*mobilenet_v2"):
        advise.advise("digits", "zoo:simple_cnn,mobilenet_v9", weights=None, verbose=0)


def test_tune_auto_narrows_the_search(tmp_path, source_model):
    from tlkit import tuning

    out = tmp_path / "tune"
    few = data.load("digits", image_size=32, channels=3).select(per_class=20)
    r = tuning.tune(few, out=out, backbone=str(source_model), strategy="auto",
                    image_size=32, max_trials=1, epochs=2, verbose=0)
    doc = json.loads((out / "advice.json").read_text())
    assert doc["choice"]["strategy"] == "large-similar"  # small (200 images) and similar
    trial = r.trials[0]["hyperparameters"]
    u = doc["choice"]["unfreeze"]
    assert u - 1 <= trial["unfreeze"] <= u + 1
