"""finetune's recipe flags, lr-find, the console and the default --out, as a user runs them."""

import json

import pytest

from cli_helpers import run_cli as run
from tlkit.deploy import saving
from tlkit.cli import finetune as finetune_cli

SMALL = ["--data", "digits", "--backbone", "zoo:simple_cnn", "--weights", "none",
         "--image-size", "28", "--epochs", "1", "--batch-size", "64"]




@pytest.mark.parametrize("args,needle", [
    (["--schedule", "linear"], "--schedule: invalid choice: 'linear'"),
    (["--label-smoothing", "1"], "--label-smoothing: must be a number in [0, 1)"),
    (["--label-smoothing", "-0.1"], "--label-smoothing"),
    (["--lr-decay-per-stage", "0"], "--lr-decay-per-stage: must be a number in (0, 1]"),
    (["--lr-decay-per-stage", "1.5"], "--lr-decay-per-stage"),
    (["--mixup", "-1"], "--mixup"),
    (["--lr", "fast"], "--lr"),
    (["--class-weight", "cow=2"], "unknown class(es) cow; the classes are: 0, 1, 2"),
    (["--class-weight", "3:2"], "--class-weight must be balanced or a mapping like cat=2"),
])
def test_bad_recipe_flags_one_line_exit_2(capsys, tmp_path, args, needle):
    code, out, err = run(capsys, "finetune", *SMALL, "--out", str(tmp_path / "m.h5"), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_default_out_epoch_lines_and_recorded_settings(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "finetune", *SMALL, "--schedule", "onecycle",
                         "--label-smoothing", "0.1", "--class-weight", "balanced",
                         "--lr", "auto")
    assert code == 0, err
    path = tmp_path / "saved_models" / "digits-small-similar.h5"
    assert path.is_file() and "saved_models/digits-small-similar.h5" in out
    # stdout is not a terminal: Keras's one line per epoch, no progress bar
    assert " - loss: " in out and "━" not in out and "\r" not in out
    rep = json.loads((path.with_suffix("") / "report.json").read_text())
    assert rep["schedule"] == "onecycle" and rep["label_smoothing"] == 0.1
    assert rep["class_weight"] == "balanced" and rep["cutmix"] == 0.0
    assert rep["best"]["phase"] == "head" and rep["best"]["epoch"] == 1
    found = rep["lr_find"]["suggested_lr"]
    assert rep["plan"]["phases"][0]["learning_rate"] == pytest.approx(found)
    assert (path.with_suffix("") / "lr_find.png").is_file()
    _, meta = saving.load(path)
    for key in ("schedule", "lr_decay_per_stage", "label_smoothing", "class_weight", "mixup",
                "cutmix"):
        assert key in meta, key
    settings = (path.with_suffix("") / "settings.yaml").read_text()
    assert "schedule: onecycle" in settings
    for key in ("lr_decay_per_stage:", "label_smoothing:", "class_weight:", "mixup:"):
        assert key in settings, settings  # snake_case, as in report.json and the metadata
    code, out, err = run(capsys, "finetune", *SMALL, "--quiet")  # the name is taken now
    assert code == 0, err
    assert (tmp_path / "saved_models" / "digits-small-similar-2.h5").is_file()
    assert "digits-small-similar-2.h5" in out


def test_default_out_names(tmp_path):
    assert finetune_cli.data_name("tfds:beans:train") == "beans"
    assert finetune_cli.data_name("npz:/x/y/cells.npz") == "cells"
    assert finetune_cli.data_name("/data/my photos/") == "my_photos"
    (tmp_path / "photos-auto.h5").write_bytes(b"")
    assert finetune_cli.default_out("photos", "auto", tmp_path).name == "photos-auto-2.h5"


def test_console_verbosity():
    class Tty:
        def isatty(self):
            return True

    assert finetune_cli.console_verbosity(False, Tty()) == 1
    assert finetune_cli.console_verbosity(False, object()) == 2
    assert finetune_cli.console_verbosity(True, Tty()) == 0


def test_lr_find_command(capsys, tmp_path):
    code, out, err = run(capsys, "lr-find", *SMALL[:8], "--steps", "20", "--out",
                         str(tmp_path / "lr"), "--quiet")
    assert code == 0, err
    assert "suggested learning rate" in out
    doc = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert doc["suggested_lr"] > 0 and (tmp_path / "lr" / "lr_find.png").is_file()


def test_schedule_choices_match_the_library():
    from tlkit.training import schedules

    assert finetune_cli.SCHEDULE_CHOICES == schedules.SCHEDULES
    assert finetune_cli.DEFAULT_SCHEDULE == schedules.DEFAULT
    assert finetune_cli.DEFAULT_WARMUP == schedules.DEFAULT_WARMUP
