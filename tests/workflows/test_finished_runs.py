"""A finished run: no checkpoints left beside its model, its settings recorded, and its folder
not silently replaced by a run of other settings nor written into by lr-find (issue 27,
item 8)."""

import json

import pytest

from cli_helpers import run_cli as run
from tlkit.training import runs
from tlkit.core.errors import TlkitError

BASE = ("finetune", "--data", "digits", "--backbone", "zoo:simple_cnn", "--weights", "none",
        "--strategy", "large-dissimilar", "--no-augment", "--quiet", "--image-size", "16")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run: (model path, report folder, the model's bytes)."""
    from tlkit import cli

    out = tmp_path_factory.mktemp("finished") / "m.h5"
    code = cli.main([*BASE, "--epochs", "1", "--out", str(out)])  # pytest captures its output
    assert code == 0
    return out, out.with_suffix(""), out.read_bytes()


def test_a_finished_run_keeps_no_checkpoints_and_records_its_settings(finished):
    model, folder, _ = finished
    assert model.is_file() and (folder / "report.json").is_file()
    assert not (folder / "checkpoints").exists() and not (folder / "state").exists()
    record = json.loads((folder / runs.RECORD).read_text())
    assert record["settings"]["epochs"] == 1 and record["model"] == str(model)


def test_checkpoints_stay_while_no_model_file_holds_the_weights(tmp_path):
    """Without a saved model (a report folder only) the checkpoints are the weights on disk."""
    for model in (None, tmp_path / "m.h5"):
        folder = tmp_path / f"run-{model is None}"
        with runs.RunFolder(folder, {"epochs": 1}, model_path=model) as run_:
            run_.begin()
            (folder / "checkpoints").mkdir()
            (folder / "checkpoints" / "phase1.weights.h5").write_bytes(b"w")
            if model is not None:
                model.write_bytes(b"model")
            run_.complete()
        assert (folder / "checkpoints").exists() == (model is None)


def test_other_settings_are_refused_in_one_line(finished, capsys):
    model, folder, before = finished
    code, _, err = run(capsys, *BASE, "--epochs", "2", "--out", model)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == (f"tlkit finetune: error: {model} is a finished run with other settings "
                        f"(epochs: 1 -> 2); pass --overwrite to replace it, or give another "
                        f"--out.")
    assert model.read_bytes() == before and (folder / "report.json").is_file()


def test_an_unrecorded_finished_run_is_refused(finished, tmp_path):
    model, folder, _ = finished
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.json").write_text("{}")  # a run of a tlkit that wrote no run.json
    with pytest.raises(TlkitError, match="settings are not recorded.*--overwrite"):
        runs.check_finished(old, {"epochs": 1})
    runs.check_finished(old, {"epochs": 1}, overwrite=True)
    runs.check_finished(tmp_path / "new", {"epochs": 1})  # nothing there: fine


def test_the_same_settings_and_overwrite_run(finished, capsys, tmp_path):
    import shutil

    model, folder, _ = finished
    copy = shutil.copy(model, tmp_path / "m.h5")
    shutil.copytree(folder, tmp_path / "m")
    assert run(capsys, *BASE, "--epochs", "1", "--out", copy)[0] == 0  # the same command
    code, _, err = run(capsys, *BASE, "--epochs", "2", "--out", copy, "--overwrite")
    assert code == 0, err
    record = json.loads((tmp_path / "m" / runs.RECORD).read_text())
    assert record["settings"]["epochs"] == 2 and "overwrite" not in record["settings"]


def test_lr_find_refuses_a_run_folder(finished, capsys):
    _, folder, _ = finished
    listed = sorted(p.name for p in folder.iterdir())
    code, _, err = run(capsys, "lr-find", "--data", "digits", "--backbone", "zoo:simple_cnn",
                       "--weights", "none", "--out", folder)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"--out {folder} is the folder of a tlkit run" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == listed


def test_docstring_examples():
    import doctest

    result = doctest.testmod(runs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
