"""tlkit advise and --strategy auto: one tapped pass, scores per stage, a recommendation that
follows the evidence, and features the following finetune reuses."""

import json

import h5py
import numpy as np
import pytest

import tlkit
from helpers import run_cli as run
from tlkit import advise, data
from tlkit.advise import recommend
from tlkit.errors import TlkitError




@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """A small CNN trained on the digits: a base whose features fit the digits."""
    path = tmp_path_factory.mktemp("source") / "digits_cnn.h5"
    tlkit.finetune(data="digits", backbone="zoo:simple_cnn", weights=None,
                   strategy="large-dissimilar", epochs=10, augment=False, out=path, verbose=0)
    return path


def test_advise_writes_scores_per_stage_and_recommends(tmp_path, capsys, source_model):
    out = tmp_path / "advice"
    code, stdout, err = run(capsys, "advise", "--data", "digits", "--backbone",
                            f"zoo:simple_cnn,{source_model}", "--weights", "none",
                            "--out", out, "--quiet")
    assert code == 0, err
    doc = json.loads((out / "advice.json").read_text())
    assert (out / "advice.png").stat().st_size > 10_000
    assert [b["backbone"] for b in doc["backbones"]] == ["zoo:simple_cnn", str(source_model)]
    for b in doc["backbones"]:
        assert [s["name"] for s in b["stages"]] == ["stage0", "stage1"]
        for s in b["stages"]:
            assert 0 <= s["knn_accuracy"] <= 1 and 0 <= s["linear_probe_accuracy"] <= 1
            assert np.isfinite(s["logme"])
    random, trained = doc["backbones"]
    assert random["recommendation"]["strategy"] == "large-dissimilar"
    assert any("random" in r for r in random["recommendation"]["reasons"])
    # the trained base's last stage fits the digits: it ranks first, and the data is similar
    assert doc["ranking"][0] == str(source_model)
    assert trained["stages"][-1]["logme"] > random["stages"][-1]["logme"]
    assert doc["choice"]["strategy"] == "large-similar"
    assert "LogME" in stdout and "no absolute scale" in stdout and "recommendation" in stdout
    assert doc["data"]["per_class_min"] >= 2 and doc["data"]["num_classes"] == 10


def test_auto_trains_the_choice_and_reuses_the_advise_pass(tmp_path, source_model):
    out = tmp_path / "auto.h5"
    r = tlkit.finetune(data="digits", backbone=str(source_model), strategy="auto", epochs=20,
                       augment=False, out=out, verbose=0)
    assert r.plan.strategy == "large-similar"
    assert r.report["advice"]["choice"]["strategy"] == "large-similar"
    assert r.report["reasons"] and r.report["fit"]["cache"]["train"]["where"] == "reused"
    with h5py.File(out, "r") as f:
        meta = json.loads(f.attrs["tlkit_metadata"])
    assert meta["strategy"] == "large-similar" and meta["strategy_requested"] == "auto"
    assert meta["reasons"] == r.report["reasons"]
    assert r.report["accuracy"] > 0.6  # the source model itself reaches about 0.74


def test_recommendation_rules():
    facts = {"per_class_median": 30, "num_classes": 4, "random_weights": False}
    similar = [{"probe": 0.6}, {"probe": 0.8}, {"probe": 0.95}]
    assert recommend(similar, facts)["strategy"] == "small-similar"
    earlier = [{"probe": 0.6}, {"probe": 0.9}, {"probe": 0.7}]
    rec = recommend(earlier, {**facts, "per_class_median": 500})
    assert rec["strategy"] == "large-dissimilar"
    rec = recommend(earlier, facts)
    assert rec["strategy"] == "small-dissimilar" and rec["unfreeze"] == 1
    assert any("stage1 probes at 90.0%" in r for r in rec["reasons"])
    plateau = [{"probe": 0.5}, {"probe": 0.94}, {"probe": 0.95}, {"probe": 0.95}]
    rec = recommend(plateau, {**facts, "per_class_median": 500})
    assert rec["strategy"] == "large-similar" and rec["unfreeze"] == 2
    weak = [{"probe": 0.3}, {"probe": 0.35}]
    assert recommend(weak, facts)["similarity"] == "dissimilar"


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
    r = tuning.tune("digits", out=out, backbone=str(source_model), strategy="auto",
                    max_trials=1, epochs=2, verbose=0)
    doc = json.loads((out / "advice.json").read_text())
    assert doc["choice"]["strategy"] == "large-similar"
    trial = r.trials[0]["hyperparameters"]
    u = doc["choice"]["unfreeze"]
    assert u - 1 <= trial["unfreeze"] <= u + 1
