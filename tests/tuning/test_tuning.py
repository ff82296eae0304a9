"""tlkit.tuning: hypermodels, fixing/narrowing, search, resume, the deployable best model."""

import json

import h5py
import keras
import keras_tuner as kt
import numpy as np
import pytest

from process_helpers import predict_in_fresh_process
from tlkit.core import compat
from tlkit import data, tuning
from tlkit.training import frozen, precision
from tlkit.deploy import saving
from tlkit.models import zoo
from tlkit.core.errors import TlkitError

# keras-tuner 1.4.8's oracle calls threading.currentThread().getName() on every call.
pytestmark = [pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:getName:DeprecationWarning")]

FAST = dict(model="zoo:fashion_cnn", image_size=16, epochs=1, fix=["filters=8"], verbose=0)


@pytest.fixture(scope="module")
def digits16():
    """Digits at 16x16 grayscale: 8 training and 4 val/test images per class."""
    return data.load("digits", image_size=16, channels=1, seed=0).select(
        per_class=8, eval_per_class=4, seed=0)


@pytest.fixture(scope="module")
def fashion_hm():
    return tuning.ZooHyperModel("fashion_cnn", (16, 16, 1))


# ---------------------------------------------------------------------------------------------
# declared hyperparameters, --fix and --space


def test_zoo_defaults_are_the_published_model():
    hm = tuning.ZooHyperModel("fashion_cnn", num_classes=10)
    t = hm.tunables()
    assert list(t) == ["blocks", "filters", "block1_bn", "block1_dropout", "block2_bn",
                       "block2_dropout", "dropout", "learning_rate", "optimizer"]
    assert (t["blocks"].default, t["filters"].default, t["block1_bn"].default,
            t["dropout"].default, t["learning_rate"].default, t["optimizer"].default) == \
        (2, 32, "before", 0.25, 1e-3, "adam")
    assert t["block1_dropout"].values[0] == 0.0 and t["block1_dropout"].values[-1] == 0.6
    assert t["block2_bn"].parent == ("blocks", (2,))
    model = hm.build(kt.HyperParameters())
    assert model.count_params() == zoo.build("fashion_cnn", (28, 28, 1), 10).count_params()
    keras.backend.clear_session()


def test_other_zoo_models_tune_their_builder_options():
    assert list(tuning.ZooHyperModel("resnet_small", (16, 16, 3)).tunables()) == \
        ["bn", "dropout", "blocks_per_stage", "learning_rate", "optimizer"]
    assert list(tuning.ZooHyperModel("lenet5").tunables()) == ["learning_rate", "optimizer"]


def test_backbone_tunables_follow_the_strategy():
    hm = tuning.BackboneHyperModel("zoo:fashion_cnn", "small-similar", (16, 16, 1),
                                   weights=None)
    assert list(hm.tunables()) == ["dropout", "head_width", "head_bn", "learning_rate"]
    hm = tuning.BackboneHyperModel("zoo:fashion_cnn", "small-dissimilar", (16, 16, 1),
                                   weights=None, epochs=2)
    t = hm.tunables()
    assert list(t)[-2:] == ["fine_tune_lr", "unfreeze"]
    assert (t["unfreeze"].min_value, t["unfreeze"].max_value) == (1, len(hm.backbone.stages))
    assert t["dropout"].default == 0.5 and t["head_bn"].parent[0] == "head_width"
    with pytest.raises(TlkitError, match="epochs must be >= 2"):
        tuning.BackboneHyperModel(hm.backbone, "large-similar", epochs=1)


def test_parse_fix(fashion_hm):
    assert tuning.parse_fix(["bn=none", "dropout=0.3", "filters=16"], fashion_hm) == \
        {"block1_bn": "none", "block2_bn": "none", "dropout": 0.3, "filters": 16}
    assert tuning.parse_fix({"learning_rate": 0.005, "blocks": 1}, fashion_hm) == \
        {"learning_rate": 0.005, "blocks": 1}
    assert tuning.parse_fix(["block_dropout=0.1", "block2_dropout=0.2"], fashion_hm) == \
        {"block1_dropout": 0.1, "block2_dropout": 0.2}  # a later item wins


def test_parse_space(fashion_hm):
    space = tuning.parse_space(["bn=before,after", "learning_rate=1e-4:1e-3",
                                "dropout=0.2:0.3", "optimizer=sgd"], fashion_hm)
    assert space["block1_bn"] == space["block2_bn"] == {"values": ["before", "after"]}
    assert space["learning_rate"] == {"min": 1e-4, "max": 1e-3}
    assert space["dropout"] == {"values": [0.2, 0.25, 0.3]}
    assert space["optimizer"] == {"values": ["sgd"]}
    assert tuning.parse_space({"blocks": [1]}, fashion_hm) == {"blocks": {"values": [1]}}


@pytest.mark.parametrize("fn, item, match", [
    (tuning.parse_fix, "dropuot=0.3", r"Unknown --fix hyperparameter 'dropuot'.*Did you mean"),
    (tuning.parse_fix, "dropout", "expects NAME=VALUE"),
    (tuning.parse_fix, "dropout=0.9", r"Invalid --fix dropout=0.9: expected one of 0, 0.05"),
    (tuning.parse_fix, "blocks=2.5", "expected an integer"),
    (tuning.parse_fix, "learning_rate=fast", "expected a number"),
    (tuning.parse_space, "bn=before,sideways", r"Invalid --space bn=sideways"),
    (tuning.parse_space, "learning_rate=1e-5:1e-3", "outside the searchable range"),
    (tuning.parse_space, "blocks=2:1", "the range is empty"),
    (tuning.parse_space, "head_width=64", "Unknown --space hyperparameter"),
])
def test_bad_fix_and_space_items(fashion_hm, fn, item, match):
    with pytest.raises(TlkitError, match=match):
        fn([item], fashion_hm)


def test_fixed_and_narrowed_is_an_error(fashion_hm):
    with pytest.raises(TlkitError, match="both fixed"):
        tuning.ZooHyperModel("fashion_cnn", (16, 16, 1), fix=["dropout=0.3"],
                             space=["dropout=0.1,0.2"])


def test_overrides_reach_the_oracle_space():
    hm = tuning.ZooHyperModel("fashion_cnn", (16, 16, 1), fix=["blocks=1", "dropout=0.3"],
                              space=["bn=after,none"])
    hp = kt.HyperParameters()
    values = hm.declare(hp)
    assert values["blocks"] == 1 and values["dropout"] == 0.3
    assert values["block2_bn"] is None  # inactive: blocks is fixed to 1
    spaces = {p.name: p for p in hp.space}
    assert type(spaces["dropout"]).__name__ == "Fixed"
    assert list(spaces["block1_bn"].values) == ["after", "none"]


# ---------------------------------------------------------------------------------------------
# searches


def test_zoo_search_records_bn_and_dropout_and_keeps_fixed(digits16, tmp_path):
    out = tmp_path / "run"
    r = tuning.tune(digits16, out=out, max_trials=2, tuner="random",
                    **{**FAST, "fix": ["filters=8", "dropout=0.3"]},
                    space=["bn=before,after", "block_dropout=0.1:0.4"])
    assert [t["trial"] for t in r.trials] == ["0", "1"] and r.ran == ["0", "1"]
    for row in r.trials:
        hps = row["hyperparameters"]
        assert row["status"] == "COMPLETED" and row["seconds"] > 0 and row["tuner_id"] == "tuner0"
        assert hps["dropout"] == 0.3 and hps["filters"] == 8
        assert hps["block1_bn"] in ("before", "after")
        assert 0.1 <= hps["block1_dropout"] <= 0.4
    for f in ("search.json", "trials.json", "trials.csv", "trials.png", "best.h5",
              "report/report.json", "report/model_card.md"):
        assert (out / f).is_file(), f
    card = (out / "report" / "model_card.md").read_text()
    assert "dropout" in card and f"test accuracy **{r.metrics['accuracy']:.4f}**" in card, card
    summary = json.loads((out / "trials.json").read_text())
    assert summary["best"]["hyperparameters"] == r.best_hyperparameters
    assert summary["objective"] == {"name": "val_accuracy", "direction": "max"}
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"trial", "score", "seconds", "block1_bn", "dropout", "val_accuracy"} <= set(header)
    meta = saving.read_metadata(out / "best.h5")
    assert meta["hyperparameters"] == r.best_hyperparameters
    assert meta["tuning"]["tuner"] == "random" and meta["model"] == "zoo:fashion_cnn"
    # The .h5 loads with plain Keras and predicts like the tuner's best model, in float32
    # (--precision auto may have trained the trials in bfloat16 on this CPU).
    x = r.dataset.x_test.astype("float32")
    loaded = keras.models.load_model(out / "best.h5")
    tuner_best = precision.to_float32(r.tuner.get_best_models(1)[0])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), tuner_best.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert "best.h5" in r.paths["model"] and "0" in tuning.format_table(r.trials)


def test_colour_photos_into_a_grayscale_zoo_model_warn_once(tmp_path):
    from conftest import write_image_folder

    photos = write_image_folder(tmp_path / "photos", per_class=6, size=16)
    with pytest.warns(UserWarning) as record:
        tuning.tune(str(photos), out=tmp_path / "run", max_trials=1, tuner="random", **FAST)
    notes = [str(w.message) for w in record if "channel" in str(w.message)]
    assert len(notes) == 1, notes
    assert notes[0].startswith("zoo:fashion_cnn takes grayscale images (1 channel) but the "
                               "data is colour (3 channels)")
    assert "mobilenet_v2" in notes[0] and "zoo:resnet_small" in notes[0]


def test_small_similar_trials_share_the_base_features(digits16, tmp_path, monkeypatch):
    calls = []
    real = frozen.extract_features
    monkeypatch.setattr(frozen, "extract_features",
                        lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    r = tuning.tune(digits16, out=tmp_path / "run", backbone="zoo:fashion_cnn",
                    strategy="small-similar", weights=None, image_size=16, max_trials=3,
                    epochs=2, verbose=0)
    assert calls == [len(digits16.x_train), len(digits16.x_val)]  # once per search
    hm = r.hypermodel
    head = r.tuner.get_best_models(1)[0]
    assert head.input_shape == (None, hm.feature_dim)  # trials trained heads only
    x = r.dataset.x_test
    feats = real(r.best_model, x, verbose=0)
    np.testing.assert_allclose(r.best_model.predict(x.astype("float32"), verbose=0),
                               head.predict(feats, verbose=0), rtol=1e-5, atol=1e-6)
    preds, tlkit_imported = predict_in_fresh_process(r.paths["model"], x[:8].astype("float32"),
                                                     tmp_path)
    assert not tlkit_imported
    np.testing.assert_allclose(preds, head.predict(feats[:8], verbose=0), rtol=1e-5, atol=1e-6)
    assert {"dropout", "head_width", "learning_rate"} <= set(r.best_hyperparameters)


def test_two_phase_strategy_tunes_unfreeze_and_both_learning_rates(digits16, tmp_path):
    r = tuning.tune(digits16, out=tmp_path / "run", backbone="zoo:fashion_cnn",
                    strategy="large-similar", weights=None, image_size=16, max_trials=2,
                    epochs=2, fix=["unfreeze=1", "head_width=64"], verbose=0,
                    precision="float32")  # the trial's model is the saved one, to 1e-5
    for row in r.trials:
        hps = row["hyperparameters"]
        assert hps["unfreeze"] == 1 and hps["head_bn"] in ("before", "after", "none")
        assert 1e-6 <= hps["fine_tune_lr"] <= 1e-3
    x = r.dataset.x_test.astype("float32")
    np.testing.assert_allclose(keras.models.load_model(r.paths["model"]).predict(x, verbose=0),
                               r.tuner.get_best_models(1)[0].predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_hyperband_continues_trials(digits16, tmp_path):
    r = tuning.tune(digits16, out=tmp_path / "run", tuner="hyperband", max_trials=4,
                    **{**FAST, "epochs": 3})
    assert [t["status"] for t in r.trials] == ["COMPLETED"] * 4
    assert {t["epochs"] for t in r.trials} == {1, 3}


class _Interrupt(keras.callbacks.Callback):
    """Stop the process in the middle of the n-th trial, as Ctrl-C would."""

    seen = []

    def __init__(self, at_trial):
        super().__init__()
        self.at_trial = at_trial

    def on_train_begin(self, logs=None):
        _Interrupt.seen.append(1)
        if len(_Interrupt.seen) == self.at_trial + 1:
            raise KeyboardInterrupt


def test_resume_does_not_repeat_finished_trials(digits16, tmp_path):
    out = tmp_path / "run"
    _Interrupt.seen.clear()
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(digits16, out=out, max_trials=3, callbacks=[_Interrupt(1)], **FAST)
    first = json.loads((out / "tuner" / "trial_0" / "trial.json").read_text())
    r = tuning.tune(digits16, out=out, max_trials=3, **FAST)
    assert r.ran == ["1", "2"]  # the interrupted trial runs again, trial 0 does not
    assert [t["status"] for t in r.trials] == ["COMPLETED"] * 3
    assert r.trials[0]["score"] == first["score"]
    assert r.trials[0]["hyperparameters"] == {
        k: v for k, v in first["hyperparameters"]["values"].items()}
    # Same settings with more trials extends the search; nothing finished runs again.
    r = tuning.tune(digits16, out=out, max_trials=4, **FAST)
    assert r.ran == ["3"] and len(r.trials) == 4


def test_a_different_search_is_refused_and_overwrite_starts_over(digits16, tmp_path):
    out = tmp_path / "run"
    tuning.tune(digits16, out=out, max_trials=1, **FAST)
    before = (out / "search.json").read_text()
    with pytest.raises(TlkitError, match=r"holds a different search \(epochs: 1 -> 2\).*"
                                         r"--overwrite"):
        tuning.tune(digits16, out=out, max_trials=1, **{**FAST, "epochs": 2})
    assert (out / "search.json").read_text() == before
    (out / "search.json").unlink()
    with pytest.raises(TlkitError, match="without search.json"):
        tuning.tune(digits16, out=out, max_trials=1, **FAST)
    r = tuning.tune(digits16, out=out, max_trials=1, overwrite=True, **{**FAST, "epochs": 2})
    assert r.ran == ["0"]
    assert json.loads((out / "search.json").read_text())["search"]["epochs"] == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"tuner": "grid"}, "Unknown tuner 'grid'"),
    ({"objective": "val_acc"}, "Unknown objective 'val_acc'. Did you mean val_accuracy"),
    ({"max_trials": 0}, "max_trials must be a positive int"),
    ({"fix": ["dropout_rate=0.3"]}, "Unknown --fix hyperparameter 'dropout_rate'"),
    ({"space": ["bn=sideways"]}, "Invalid --space bn=sideways"),
    ({"model": "fashion_cnn"}, "--model takes zoo:NAME"),
    ({"model": None}, "Give exactly one of --model"),
    ({"distributed": True}, "--distributed needs"),
    ({"tuner_id": "tuner0", "oracle": "localhost"}, "--oracle expects HOST:PORT"),
])
def test_bad_input_is_one_error_and_writes_nothing(digits16, tmp_path, kwargs, match):
    out = tmp_path / "run"
    with pytest.raises(TlkitError, match=match):
        tuning.tune(digits16, out=out, **{"max_trials": 1, **FAST, **kwargs})
    assert not out.exists()


def test_unreachable_chief_is_a_bounded_wait_naming_the_address(digits16, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    with pytest.raises(TlkitError, match=rf"No tuning chief answered at 127.0.0.1:{port} "
                                         rf"within 0.5 s"):
        tuning.tune(digits16, out=out, max_trials=1, tuner_id="tuner0",
                    oracle=f"127.0.0.1:{port}", connect_timeout=0.5, **FAST)
    assert not out.exists()


def test_distributed_role(monkeypatch):
    for k in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert tuning.distributed_role() == ("single", None, None, None)
    assert tuning.distributed_role("chief", "0.0.0.0:8000") == ("chief", "chief", "0.0.0.0", 8000)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner3")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.5")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    assert tuning.distributed_role() == ("worker", "tuner3", "10.0.0.5", 8000)
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "99999")
    with pytest.raises(TlkitError, match="port must be 1..65535"):
        tuning.distributed_role()
    monkeypatch.delenv("KERASTUNER_TUNER_ID")
    with pytest.raises(TlkitError, match="needs a tuner id"):
        tuning.distributed_role()


def test_release_trial_memory_drops_the_trial_gradient_functions(digits16):
    registry = compat.gradient_registry()
    before = set(registry)
    with tuning.release_trial_memory():
        model = zoo.build("simple_cnn", (16, 16, 1), 10)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
        model.fit(digits16.x_train.astype("float32"), digits16.y_train, epochs=1, verbose=0)
        assert any(k.startswith("CustomGradient-") for k in set(registry) - before)
        del model
    assert not [k for k in set(registry) - before if k.startswith("CustomGradient-")]


def test_best_model_metadata_is_plain_json(digits16, tmp_path):
    r = tuning.tune(digits16, out=tmp_path / "run", max_trials=1, retrain=True, **FAST)
    with h5py.File(r.paths["model"], "r") as f:
        meta = json.loads(f.attrs["tlkit_metadata"])
    assert meta["tuning"]["best_model"] == "retrained"
    assert set(meta["hyperparameters"]) >= {"block1_bn", "dropout", "learning_rate"}
    assert meta["class_names"] == [str(i) for i in range(10)]



def test_block_layouts_are_read_from_the_zoo():
    vgg19 = tuning.block_layout("vgg19")
    assert (vgg19.kind, vgg19.stack[2], vgg19.fc, vgg19.drop_after, vgg19.bn, vgg19.dropout) == \
        ("vgg", (256, 4), (4096, 4096), (1, 2), "none", 0.5)
    assert tuning.block_layout("fashion_cnn").drop_after == (1,)
    assert tuning.block_layout("lenet5") is None


def test_backbone_defaults_are_the_strategy_plan(digits16):
    from tlkit.training import strategies

    hm = tuning.BackboneHyperModel("zoo:fashion_cnn", "large-similar", (16, 16, 1),
                                   weights=None, epochs=4)
    plan = strategies.plan("large-similar", hm.backbone, epochs=4)
    t = hm.tunables()
    assert (t["dropout"].default, t["learning_rate"].default, t["fine_tune_lr"].default,
            t["unfreeze"].default) == (plan.head.dropout, plan.phases[0].learning_rate,
                                       plan.phases[1].learning_rate,
                                       len(plan.phases[1].train_stages))
    keras.backend.clear_session()


def test_trials_train_in_bfloat16_and_the_best_model_is_saved_in_float32(digits16, tmp_path):
    r = tuning.tune(digits16, out=tmp_path / "run", max_trials=1, tuner="random",
                    precision="mixed_bfloat16", **FAST)
    assert json.loads((tmp_path / "run" / "search.json").read_text())["search"][
        "precision"] == "mixed_bfloat16"
    summary = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert summary["precision"] == {"policy": "mixed_bfloat16", "requested": "mixed_bfloat16",
                                    "reason": "requested"}
    trial_model = r.tuner.get_best_models(1)[0]
    assert precision.policy_of(trial_model) == "mixed_bfloat16"
    saved = keras.models.load_model(r.paths["model"])
    assert precision.policy_of(saved) == "float32"
    x = r.dataset.x_test.astype("float32")
    # the same weights, run in float32 against bfloat16: the same classes, nearly everywhere
    agree = (saved.predict(x, verbose=0).argmax(1) ==
             trial_model.predict(x, verbose=0).argmax(1)).mean()
    assert agree >= 0.95
