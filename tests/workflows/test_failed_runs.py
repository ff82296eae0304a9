"""A failed run leaves nothing behind, tlkit never writes into the data it reads, small test
sets are described honestly, and odd file names and empty splits give one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli as run
from tlkit.core import fileio
from tlkit.training import runs
from tlkit.workflows import checks

TINY = ("--backbone", "zoo:simple_cnn", "--weights", "none", "--image-size", "32",
        "--epochs", "1", "--quiet", "--no-augment")


def _folder(root, classes=("a", "b"), n=8, size=(32, 32)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 40, (*size, 3)).astype("uint8")
            img[..., c % 3] += 180
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _tree(root):
    return {os.path.relpath(os.path.join(d, f), root)
            for d, dirs, files in os.walk(root) for f in dirs + files}


def _refused(capsys, tmp_path, argv, needle):
    """`tlkit ARGV` exits 2 with one line holding `needle` and creates nothing in tmp_path."""
    before = _tree(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert _tree(tmp_path) == before, sorted(_tree(tmp_path) - before)


def _lambda_h5(path):
    import keras

    inp = keras.Input((32, 32, 3))
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(out))
    keras.Model(inp, out).save(path)
    return path


def test_bad_input_leaves_nothing_and_the_corrected_rerun_needs_no_restart(tmp_path, capsys):
    one = tmp_path / "one"
    _folder(one, classes=("a",))
    good = _folder(tmp_path / "good")
    out = tmp_path / "runs" / "m.h5"
    _refused(capsys, tmp_path, ("finetune", "--data", one, *TINY, "--out", out),
             "at least two")
    assert not (tmp_path / "runs").exists()
    code, _, err = run(capsys, "finetune", "--data", good, *TINY, "--out", out)
    assert code == 0, err
    assert out.is_file() and not (tmp_path / "runs" / "m" / "state").exists()


@pytest.mark.parametrize("case", ["corrupt_jpeg", "npz_labels", "npz_nan", "small_size",
                                  "lambda_h5", "empty_test"])
def test_every_refusal_creates_no_file_or_folder(tmp_path, capsys, case):
    data = tmp_path / "data"
    extra = ()
    if case == "corrupt_jpeg":
        _folder(data)
        (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        extra, needle = ("--on-bad-image", "error"), "Cannot read image"
    elif case in ("npz_labels", "npz_nan"):
        x = np.random.default_rng(0).random((20, 8, 8)).astype("float32") * 255
        y = np.arange(20) % 2
        if case == "npz_labels":
            y[3] = 7
            needle = "class ids"
        else:
            x[2, 1, 1] = np.nan
            needle = "NaN"
        data = tmp_path / "d.npz"
        np.savez(data, x=x, y=y, class_names=np.array(["a", "b"]))
        data = f"npz:{data}"
    elif case == "small_size":
        _folder(data)
        extra, needle = ("--image-size", "8"), "8"
    elif case == "lambda_h5":
        _folder(data)
        extra, needle = ("--backbone", _lambda_h5(tmp_path / "lam.h5")), "Lambda"
    else:
        for split in ("train", "val", "test"):
            _folder(data / split)
        for p in (data / "test").rglob("*.png"):
            p.unlink()
        needle = "test"
    argv = ("finetune", "--data", data, *TINY, *extra, "--out", tmp_path / "out" / "m.h5")
    if case == "small_size":
        argv = ("finetune", "--data", data, "--backbone", "mobilenet_v2", "--weights", "none",
                "--epochs", "1", "--quiet", *extra, "--out", tmp_path / "out" / "m.h5")
    _refused(capsys, tmp_path, argv, needle)


def test_stale_state_with_no_finished_epoch_is_not_an_interrupted_run(tmp_path):
    folder = tmp_path / "run"
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "settings.json").write_text(json.dumps({"epochs": 2}))
    with runs.RunFolder(folder, {"epochs": 3}) as fresh:  # nothing to resume: no refusal
        assert not fresh.resuming
        fresh.begin()
        assert json.loads((folder / "state" / "settings.json").read_text()) == {"epochs": 3}


def test_a_run_that_fails_before_its_first_epoch_removes_what_it_made(tmp_path):
    folder = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError):
        with runs.RunFolder(folder, {"epochs": 2}) as run_:
            run_.phase_dir(0)
            raise RuntimeError("failed while building the model")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):  # after an epoch: the state stays, to resume
        with runs.RunFolder(folder, {"epochs": 2}) as run_:
            (run_.phase_dir(0) / "epochs.json").write_text("[]")
            raise RuntimeError("killed in epoch 2")
    assert (folder / "state" / "settings.json").is_file()


@pytest.mark.parametrize("where", ["same", "inside", "containing", "symlink", "cache_dir"])
def test_outputs_inside_the_data_are_refused(tmp_path, capsys, where):
    data = _folder(tmp_path / "tp")
    flags = ()
    if where == "same":
        out = tmp_path / "tp.h5"  # its report folder would be tp/ itself
    elif where == "inside":
        out = data / "a" / "m.h5"
    elif where == "containing":
        out = tmp_path / "m.h5"
        flags = ("--report-dir", tmp_path)
    elif where == "symlink":
        os.symlink(data, tmp_path / "alias")
        out = tmp_path / "alias" / "m.h5"
    else:
        out = tmp_path / "elsewhere" / "m.h5"
        flags = ("--cache-dir", data / "cache")
    _refused(capsys, tmp_path, ("finetune", "--data", data, *TINY, *flags, "--out", out),
             "data folder")
    code, _, err = run(capsys, "finetune", "--data", data, *TINY, *flags, "--out", out)
    assert str(data) in err and "never writes into the data" in err and "e.g." in err


def test_the_scan_never_reads_a_run_folder(tmp_path, capsys):
    data = _folder(tmp_path / "photos")
    run_inside = data / "a" / "old_run"  # a run folder someone left among the images
    run_inside.mkdir()
    (run_inside / fileio.RUN_LOCK).write_text("")
    Image.new("RGB", (32, 32)).save(run_inside / "confusion_matrix.png")
    (data / "c_run").mkdir()
    (data / "c_run" / "report.json").write_text("{}")
    (data / "c_run" / "history.csv").write_text("epoch\n")
    Image.new("RGB", (32, 32)).save(data / "c_run" / "curves.png")
    from tlkit import data as data_lib

    ds = data_lib.load(str(data), image_size=32, channels=3)
    assert ds.class_names == ["a", "b"]
    assert ds.summary()["skipped"] == 0
    paths = list(ds.x_train.paths) + list(ds.x_val.paths) + list(ds.x_test.paths)
    assert len(paths) == 16 and not any("run" in p for p in paths)


def test_small_test_sets_are_called_small_not_chance():
    perfect = checks.chance_warning({"n": 2, "accuracy": 1.0}, 2)
    assert "too few to tell" in perfect and "chance level" not in perfect
    assert "95% interval" in perfect
    at_chance = checks.chance_warning({"n": 400, "accuracy": 0.52}, 2)
    assert "chance level" in at_chance and "95% interval" in at_chance
    assert checks.chance_warning({"n": 400, "accuracy": 0.9}, 2) is None
    assert "too few" in checks.chance_warning({"n": 10, "accuracy": 0.7}, 2)


def test_tiny_folders_keep_every_class_in_val_and_test(tmp_path):
    from tlkit import data as data_lib

    data = _folder(tmp_path / "photos", classes=("a", "b", "c", "d", "e"), n=5, size=(8, 8))
    ds = data_lib.load(str(data), image_size=8, channels=3)
    for name in ("train", "val", "test"):
        assert set(ds.split(name)[1].tolist()) == set(range(5)), name


def test_a_class_with_too_few_images_for_val_is_named(tmp_path, capsys, recwarn):
    data = _folder(tmp_path / "photos", n=6)
    for p in list((data / "b").glob("*.png"))[2:]:
        p.unlink()
    code, _, err = run(capsys, "finetune", "--data", data, *TINY,
                       "--out", tmp_path / "o" / "m.h5")
    assert code == 0, err
    warned = " ".join(str(w.message) for w in recwarn)
    assert "has no image of class b" in warned and "at least 3 images" in warned


def test_non_utf8_file_names_in_every_predict_format(tmp_path, capsys):
    data = _folder(tmp_path / "photos")
    raw = os.path.join(os.fsencode(data / "a"), b"caf\xe9.png")
    Image.new("RGB", (32, 32), (200, 10, 10)).save(os.fsdecode(raw))
    out = tmp_path / "m.h5"
    assert run(capsys, "finetune", "--data", data, *TINY, "--out", out)[0] == 0
    for fmt in ("csv", "table"):
        code, text, err = run(capsys, "predict", out, data / "a", "--format", fmt)
        assert code == 0, err
        assert "caf\\xe9.png" in text
    csv_out = tmp_path / "p.csv"
    code, _, err = run(capsys, "predict", out, data / "a", "--out", csv_out)
    assert code == 0, err
    assert "caf\\xe9.png" in csv_out.read_text(encoding="utf-8")


def test_predict_into_a_closed_pipe_is_quiet(tmp_path, capsys):
    data = _folder(tmp_path / "photos", n=40)
    out = tmp_path / "m.h5"
    assert run(capsys, "finetune", "--data", data, *TINY, "--out", out)[0] == 0
    proc = subprocess.run(f"{sys.executable} -m tlkit.cli predict {out} {data} --format csv "
                          f"| head -1", shell=True, capture_output=True, text=True)
    assert proc.stdout.startswith("path,class1") and "Traceback" not in proc.stderr


def test_stderr_is_clean_for_predict_export_and_evaluate(tmp_path, capsys):
    data = _folder(tmp_path / "photos")
    # a truncated JPEG: libjpeg's "Premature end of JPEG data" stays off stderr; tlkit's
    # own line about the skipped file is all a training command prints there
    Image.fromarray(np.full((32, 32, 3), 200, "uint8")).save(data / "a" / "cut.jpg")
    whole = (data / "a" / "cut.jpg").read_bytes()
    (data / "a" / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    out = tmp_path / "m.h5"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "TLKIT_TF_LOGS")}
    proc = subprocess.run([sys.executable, "-m", "tlkit.cli", "finetune", "--data", str(data),
                           *TINY, "--strategy", "large-dissimilar", "--out", str(out)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "E0000" not in proc.stderr and "JPEG" not in proc.stderr, proc.stderr
    assert "cut.jpg" in proc.stderr  # skipped and counted
    (data / "a" / "cut.jpg").unlink()
    for argv in (("predict", out, data / "a"),
                 ("evaluate", out, "--data", data),
                 ("export", out, "--format", "tflite", "--out", tmp_path / "m.tflite")):
        proc = subprocess.run([sys.executable, "-m", "tlkit.cli", *map(str, argv)],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", (argv[0], proc.stderr)


@pytest.mark.parametrize("argv", [
    ("lr-find", "--backbone", "zoo:simple_cnn", "--weights", "none", "--image-size", "32"),
    ("advise", "--backbone", "zoo:simple_cnn", "--weights", "none", "--image-size", "32"),
    ("tune", "--model", "zoo:simple_cnn", "--image-size", "32", "--max-trials", "1"),
    ("audit", "--backbone", "zoo:simple_cnn", "--weights", "none", "--image-size", "32"),
])
def test_every_command_refuses_to_write_into_its_data(tmp_path, capsys, argv):
    data = _folder(tmp_path / "photos")
    _refused(capsys, tmp_path, (argv[0], "--data", data, *argv[1:], "--out", data / "out"),
             "data folder")
