"""`tlkit tune` as a user runs it: search, files, resume, one-line errors, chief and workers."""

import json
import os
import socket
import time

import keras
import numpy as np
import pytest

from process_helpers import BackgroundProcesses, cli_command
from cli_helpers import run_cli as run

pytestmark = [pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:getName:DeprecationWarning")]

FAST = ["--model", "zoo:fashion_cnn", "--image-size", "16", "--fix", "filters=8",
        "--epochs", "1"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tune_search_files_and_resume(capsys, image_folder, tmp_path):
    out = tmp_path / "runs" / "photos"
    def args(trials):
        return ["tune", "--data", image_folder, *FAST, "--tuner", "bayesian", "--max-trials",
                trials, "--val-fraction", "0.2", "--test-fraction", "0.2", "--out", out,
                "--space", "bn=before,after", "--fix", "dropout=0.3"]

    code, stdout, err = run(capsys, *args(2))
    assert code == 0, err
    assert "trial  worker  status" in stdout and "best trial" in stdout
    assert "block1_bn" in stdout and "trials.json" in stdout
    for f in ("search.json", "settings.yaml", "trials.json", "trials.csv", "trials.png",
              "best.h5", "tuner/oracle.json"):
        assert (out / f).is_file(), f
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 2
    assert all(t["hyperparameters"]["dropout"] == 0.3 for t in trials)
    assert all(t["hyperparameters"]["block1_bn"] in ("before", "after") for t in trials)
    model = keras.models.load_model(out / "best.h5")
    assert model.input_shape == (None, 16, 16, 1) and model.output_shape == (None, 3)
    # Run again with one more trial: the finished two are kept, one new trial runs.
    code, stdout, err = run(capsys, *args(3))
    assert code == 0, err
    assert "resuming the search" in stdout and "2 trial(s) done" in stdout
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == 3


def test_list_space(capsys):
    code, stdout, err = run(capsys, "tune", "--backbone", "zoo:fashion_cnn", "--weights", "none",
                            "--strategy", "large-similar", "--list-space", "--fix", "unfreeze=1")
    assert code == 0, err
    for name in ("dropout", "head_width", "head_bn", "learning_rate", "fine_tune_lr",
                 "unfreeze", "fixed: 1", "bn  ", "alias"):
        assert name in stdout


@pytest.mark.parametrize("extra, message", [
    (["--tuner", "gridsearch"], "argument --tuner: invalid choice: 'gridsearch'"),
    (["--objective", "val_acc"], "argument --objective: invalid choice: 'val_acc'"),
    (["--fix", "dropuot=0.3"], "Unknown --fix hyperparameter 'dropuot'. Did you mean dropout"),
    (["--space", "bn=before,sideways"], "Invalid --space bn=sideways"),
    (["--max-trials", "0"], "--max-trials must be a positive int"),
    (["--strategy", "small-similar"], "--strategy applies to --backbone"),
    (["--distributed"], "--distributed needs"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, extra, message):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "tune", "--data", "digits", *FAST, "--out", out, *extra)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("tlkit tune: error: ") and message in err
    assert not out.exists()


def test_a_different_search_in_out_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "search.json").write_text(json.dumps({"search": {"tuner": "hyperband"}}))
    code, _, err = run(capsys, "tune", "--data", "digits", *FAST, "--max-trials", "1",
                       "--out", out)
    assert code == 2 and "holds a different search" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["search.json"]


def test_worker_gives_up_on_an_unreachable_chief(capsys, tmp_path):
    port = free_port()
    started = time.monotonic()
    code, _, err = run(capsys, "tune", "--data", "digits", *FAST, "--out", tmp_path / "w",
                       "--distributed", "--tuner-id", "tuner0", "--oracle", f"127.0.0.1:{port}",
                       "--connect-timeout", "1")
    assert code == 2 and f"127.0.0.1:{port}" in err and err.count("\n") == 1
    assert time.monotonic() - started < 30
    assert not (tmp_path / "w").exists()


def test_recipe_fixes_and_narrows(capsys, tmp_path):
    recipe = tmp_path / "tune.yaml"
    recipe.write_text("tune:\n  data: digits\n  model: zoo:fashion_cnn\n  image-size: 16\n"
                      "  epochs: 1\n  max-trials: 1\n"
                      "  fix: [filters=8, dropout=0.1]\n  space: {bn: [after, none]}\n")
    out = tmp_path / "run"
    code, _, err = run(capsys, "tune", "--recipe", recipe, "--out", out, "--quiet")
    assert code == 0, err
    hps = json.loads((out / "trials.json").read_text())["trials"][0]["hyperparameters"]
    assert hps["dropout"] == 0.1 and hps["filters"] == 8 and hps["block1_bn"] in ("after", "none")


def test_distributed_chief_and_two_workers(tmp_path):
    """A chief and two workers on 127.0.0.1: every trial recorded once, both workers ran some."""
    port = free_port()
    args = ["tune", "--data", "digits", *FAST, "--max-trials", "6", "--out", tmp_path / "run",
            "--connect-timeout", "120"]
    env = {k: None for k in os.environ if k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    distributed_search = BackgroundProcesses(tmp_path, {
        "chief": cli_command(*args, env={**env, **oracle, "KERASTUNER_TUNER_ID": "chief"}),
        "tuner0": cli_command(*args, env={**env, **oracle, "KERASTUNER_TUNER_ID": "tuner0"}),
        "tuner1": cli_command(*args, "--distributed", "--tuner-id", "tuner1",
                              "--oracle", f"127.0.0.1:{port}", env=env),
    }, low_priority=False).result(timeout=300)
    names = ("chief", "tuner0", "tuner1")
    text = {name: distributed_search[name]["out"] + distributed_search[name]["err"]
            for name in names}
    for name in names:
        assert distributed_search[name]["code"] == 0, f"{name}:\n{text[name][-3000:]}"
        for noise in ("InitializeLog", "cuInit", "retracing", "Skipping variable loading"):
            assert noise not in text[name], f"{name}: {noise!r} on the console"
    out = tmp_path / "run"
    trials = json.loads((out / "trials.json").read_text())["trials"]
    ids = [t["trial"] for t in trials]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert all(t["status"] == "COMPLETED" for t in trials)
    owners = {t["trial"]: t["tuner_id"] for t in trials}
    assert set(owners.values()) == {"tuner0", "tuner1"}
    for worker in ("tuner0", "tuner1"):
        ran = [i for i, w in owners.items() if w == worker]
        assert f"worker {worker} ran {len(ran)} trial(s): {', '.join(ran)}" in text[worker]
    assert "best trial" in text["chief"] and (out / "best.h5").is_file()
    hps = {json.dumps(t["hyperparameters"], sort_keys=True) for t in trials}
    assert len(hps) == 6  # no trial was handed out twice
    model = keras.models.load_model(out / "best.h5")
    assert np.isfinite(model.predict(np.zeros((2, 16, 16, 1), "float32"), verbose=0)).all()


def test_keras_notes_of_a_search_stay_off_the_console(capsys, caplog):
    import logging
    import warnings

    from tlkit.cli.tune import _quiet_search_notes

    tf_logger = logging.getLogger("tensorflow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet_search_notes():
            warnings.warn("Skipping variable loading for optimizer 'adam', because it has 0 "
                          "variables whereas the saved optimizer has 9 variables.")
            tf_logger.warning("5 out of the last 5 calls to <function f> triggered "
                              "tf.function retracing.")
            warnings.warn("tlkit's own warning")
        tf_logger.warning("after the search: shown")
    assert [str(w.message) for w in caught] == ["tlkit's own warning"]
    logged = [r.getMessage() for r in caplog.records if r.name == "tensorflow"]
    assert logged == ["after the search: shown"]
