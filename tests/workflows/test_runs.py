"""Runs you can trust: resume after kill -9 or Ctrl-C, divergence, one run per folder, clean
errors, and BatchNormalization statistics that match the weights."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from process_helpers import BackgroundProcesses, background_fixture, cli_command
from cli_helpers import run_cli as run
from tlkit import cli
from tlkit.training import runs
from tlkit.core.errors import TlkitError

REPO = pathlib.Path(__file__).resolve().parents[2]




def _cli(*argv):
    return [sys.executable, "-m", "tlkit.cli", *map(str, argv)]


def _history(folder):
    with open(folder / "history.csv") as f:
        return list(csv.DictReader(f))


def _wait_for_rows(folder, n, proc, timeout=240):
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if len(_history(folder)) >= n:
                return
        except (FileNotFoundError, csv.Error):
            pass
        time.sleep(0.05)
    raise AssertionError("the run did not reach its epochs in time")


def _ctrl_c_as_in_a_terminal():
    """In the child before exec: SIGINT delivered and handled by default, as for a command
    typed in a terminal. A pytest worker that ran other tests may have SIGINT ignored or
    blocked, and a child inherits both: its Python then never raises KeyboardInterrupt (the
    run finished with exit code 0 in the full suite, and passed alone)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# Small and slow enough per epoch to be stopped inside one: 1,437 digits in batches of 8.
SLOW = ("--data", "digits", "--backbone", "zoo:simple_cnn", "--weights", "none",
        "--batch-size", "8", "--no-augment", "--quiet", "--seed", "0", "--patience", "20")


@pytest.mark.parametrize("how, strategy, epochs", [
    ("kill", "large-dissimilar", 5),
    ("sigint", "large-similar", 10),  # two phases, the head on cached features
])
def test_interrupted_run_resumes_and_the_epochs_add_up(tmp_path, how, strategy, epochs):
    out = tmp_path / "m.h5"
    # at 24x24 px an epoch on images takes seconds (at the digits' 8x8, 0.25 s: the run
    # could end before the signal landed)
    argv = _cli("finetune", *SLOW, "--image-size", "24", "--strategy", strategy, "--epochs",
                epochs, "--out", out)
    folder = tmp_path / "m"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    stop_after = 2 if how == "kill" else 6  # sigint: in the fine-tune phase, 4 epochs to go
    _wait_for_rows(folder, stop_after, proc)
    time.sleep(0.3)  # inside the next epoch
    if how == "kill":
        proc.kill()
        proc.wait()
    else:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "run the same command again" in err and str(folder / "state") in err
    assert (folder / "state" / "settings.json").is_file() and not out.exists()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _history(folder)
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    report = json.loads((folder / "report.json").read_text())
    assert any("resumed" in p for p in report["fit"]["phases"])
    assert not (folder / "state").exists()
    import keras

    assert keras.models.load_model(out).output_shape == (None, 10)


def test_restart_discards_the_state_and_other_settings_are_refused(tmp_path, capsys):
    folder = tmp_path / "run"
    with runs.RunFolder(folder, {"epochs": 2}) as died:
        (died.phase_dir(0) / "epochs.json").write_text("[]")  # died after an epoch: it stays
    with pytest.raises(TlkitError, match="other settings.*epochs.*--restart"):
        with runs.RunFolder(folder, {"epochs": 3}):
            pass
    with runs.RunFolder(folder, {"epochs": 2}) as again:
        assert again.resuming
    with runs.RunFolder(folder, {"epochs": 3}, restart=True) as fresh:
        assert not fresh.resuming


def test_nan_run_saves_nothing_over_a_good_model(tmp_path, capsys):
    out = tmp_path / "good.h5"
    base = ("finetune", "--data", "digits", "--backbone", "zoo:simple_cnn", "--weights", "none",
            "--strategy", "large-dissimilar", "--epochs", "1", "--no-augment", "--quiet",
            "--out", out)
    assert run(capsys, *base)[0] == 0
    before = out.read_bytes()
    code, _, err = run(capsys, *base[:-2], "--lr", "1e12", "--out", out, "--overwrite")
    assert code == cli.DIVERGED, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "diverged in phase 'full' at epoch 1" in line
    assert "learning rate 1e+12" in line and "--lr" in line
    assert out.read_bytes() == before


@pytest.mark.parametrize("flags, needle", [
    (("--lr", "nan"), "--lr must be a finite number"),
    (("--lr", "inf"), "--lr must be a finite number"),
    (("--lr", "0"), "--lr must be a finite number"),
    (("--lr=-1e-3",), "--lr must be a finite number"),
    (("--fine-tune-lr", "nan"), "--fine-tune-lr"),
    (("--batch-size", "0"), "--batch-size must be an integer >= 1"),
    (("--patience", "-3"), "--patience must be an integer >= 0"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, capsys, flags, needle):
    out = tmp_path / "x" / "m.h5"
    code, _, err = run(capsys, "finetune", "--data", "digits", "--weights", "none",
                       "--backbone", "zoo:simple_cnn", "--out", out, *flags)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "m").exists()


def test_a_second_run_on_the_same_out_fails_at_once(tmp_path, capsys):
    out = tmp_path / "m.h5"
    argv = _cli("finetune", *SLOW, "--strategy", "large-dissimilar", "--epochs", "3",
                "--out", out)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(tmp_path / "m", 1, proc)
        started = time.time()
        code, _, err = run(capsys, "finetune", *SLOW, "--strategy", "large-dissimilar",
                           "--epochs", "3", "--out", out)
        assert code == 2 and "in use by tlkit run pid" in err and str(proc.pid) in err
        assert time.time() - started < 20 and len(err.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait()


def test_stale_temporary_files_are_removed(tmp_path, capsys):
    out = tmp_path / "m.h5"
    stale = tmp_path / ".m.h5.abc123.tmp.h5"
    stale.write_bytes(b"half a model")
    other = tmp_path / ".other.h5.x.tmp.h5"
    other.write_bytes(b"someone else's")
    assert run(capsys, "finetune", "--data", "digits", "--backbone", "zoo:simple_cnn",
               "--weights", "none", "--strategy", "large-dissimilar", "--epochs", "1",
               "--quiet", "--out", out)[0] == 0
    assert not stale.exists() and other.exists()


def test_output_folders_are_checked_before_the_data(tmp_path, capsys):
    blocker = tmp_path / "coll" / "x"
    blocker.parent.mkdir()
    blocker.write_text("a file where the report folder would go")
    code, _, err = run(capsys, "finetune", "--data", str(tmp_path / "no-such-folder"),
                       "--out", tmp_path / "coll" / "x.h5")
    assert code == 2 and "is a file" in err and "no-such-folder" not in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "m.h5"), "--data", "digits",
                       "--out", blocker)
    assert code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1


def test_recipe_value_of_the_wrong_type(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("finetune:\n  data: digits\n  epochs: lots\n")
    code, _, err = run(capsys, "finetune", "--recipe", recipe)
    assert code == 2 and "epochs" in err and "lots" in err
    assert len(err.strip().splitlines()) == 1
    recipe.write_text("finetune:\n  data: digits\n  no-augment: maybe\n")
    code, _, err = run(capsys, "finetune", "--recipe", recipe)
    assert code == 2 and "true or false" in err


def test_class_folders_with_non_utf8_names(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "photos"
    names = [b"caf\xe9", b"dogs"]  # Latin-1 bytes: not UTF-8
    rng = np.random.default_rng(0)
    for c, raw in enumerate(names):
        folder = os.path.join(os.fsencode(root), raw)
        os.makedirs(folder)
        for i in range(8):
            img = rng.integers(0, 50, (16, 16, 3)).astype("uint8")
            img[..., c] += 150
            Image.fromarray(img).save(os.path.join(os.fsdecode(folder), f"{i}.png"))
    out = tmp_path / "m.h5"
    code, _, err = run(capsys, "finetune", "--data", root, "--backbone", "zoo:simple_cnn",
                       "--weights", "none", "--image-size", "28", "--strategy",
                       "large-dissimilar", "--epochs", "1", "--quiet", "--out", out)
    assert code == 0, err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["class_names"] == ["caf\ufffd", "dogs"]
    assert (tmp_path / "m" / "confusion_matrix.png").is_file()


def test_explain_errors_leave_no_empty_folders(tmp_path, capsys):
    out = tmp_path / "m.h5"
    assert run(capsys, "finetune", "--data", "digits", "--backbone", "zoo:simple_cnn",
               "--weights", "none", "--strategy", "large-dissimilar", "--epochs", "1",
               "--quiet", "--out", out)[0] == 0
    target = tmp_path / "explained" / "deep"
    code, _, err = run(capsys, "explain", out, tmp_path / "missing.png", "--out", target)
    assert code == 2 and not (tmp_path / "explained").exists()


def test_frozen_random_base_and_chance_level_warn(recwarn):
    import tlkit

    r = tlkit.finetune(data="digits", backbone="zoo:simple_cnn", weights=None,
                       strategy="small-similar", epochs=1, learning_rate=1e-9, verbose=0)
    messages = [str(w.message) for w in recwarn]
    assert any("random" in m and "frozen" in m for m in messages)
    assert any("chance level" in m for m in messages)
    assert len(r.report["warnings"]) == 2


def test_same_seed_same_weights_on_cpu():
    import tlkit

    a, b = (tlkit.finetune(data="digits", backbone="zoo:simple_cnn", weights=None,
                           strategy="large-dissimilar", epochs=1, seed=3, verbose=0,
                           augment=True) for _ in range(2))
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# recipes/digits-offline.yaml as written, unchanged but for where it writes: the slowest run
# of this module (8 epochs of MobileNetV2), so it runs as `tlkit finetune --recipe` in a
# background process at low priority while the other tests go on (process_helpers.background_fixture)
recipe_run = background_fixture("recipe_run", lambda workdir: BackgroundProcesses(
    workdir, {"recipe": cli_command("finetune", "--recipe",
                                    REPO / "recipes" / "digits-offline.yaml", "--quiet")}))


def test_recipe_as_written_reaches_real_accuracy(recipe_run):
    r = recipe_run["recipe"]
    assert r["code"] == 0, r["err"][-3000:]
    accuracy = float(r["out"].strip().splitlines()[-1].split()[-1])
    assert accuracy > 0.7, r["out"]
    assert (recipe_run["workdir"] / "saved_models" / "digits.h5").is_file()


def test_tfds_download_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import socket

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    started = time.time()
    code, _, err = run(capsys, "finetune", "--data", "tfds:beans", "--download", "--weights",
                       "none", "--backbone", "zoo:simple_cnn", "--quiet")
    assert code == 2 and "Cannot download tfds:beans" in err
    assert len(err.strip().splitlines()) == 1 and time.time() - started < 30


def test_ctrl_c_waits_for_the_backup_to_be_written():
    """A SIGINT while the epoch backup is written arrives after it (callbacks.sigint_deferred):
    a KeyboardInterrupt inside save_weights would leave a backup the rerun cannot load."""
    from tlkit.training.callbacks import sigint_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            done.append("the backup")
    assert done == ["the backup"]
