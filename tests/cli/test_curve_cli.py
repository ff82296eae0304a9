"""`tlkit curve`: one line per run, the table and the files; bad input is one line, exit code 2
and no files."""

import json

import pytest

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("curve-cli") / "photos"
    for split, n, seed in (("train", 6, 0), ("val", 2, 1), ("test", 4, 2)):
        write_image_folder(root / split, per_class=n, size=16, seed=seed)
    return root


BASE = ["curve", "--backbone", "zoo:simple_cnn", "--image-size", "16", "--epochs", "1",
        "--no-augment"]


def test_curve_prints_a_line_per_run_and_the_table(photos, tmp_path, capsys):
    out = tmp_path / "curve"
    code, stdout, err = run_cli(capsys, *BASE, "--data", photos, "--sizes", "2,3",
                                "--strategies", "scratch", "--seeds", "2", "--out", out)
    assert code == 0, err
    lines = stdout.splitlines()
    runs = [l for l in lines if l.startswith("[")]
    assert [l.split(":")[0] for l in runs] == [  # one draw per seed, then its sizes
        "[1/4] scratch k=2 seed 0", "[2/4] scratch k=3 seed 0", "[3/4] scratch k=2 seed 1",
        "[4/4] scratch k=3 seed 1"]
    assert all(" accuracy " in l and l.endswith(" s)") for l in runs)
    assert any(l.split() == ["images/class", "scratch"] for l in lines)
    assert "Epoch" not in stdout  # Keras stays quiet
    rows = json.loads((out / "curve.json").read_text())
    assert [(r["images_per_class"], r["seed"]) for r in rows] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert (out / "curve.png").stat().st_size > 0 and (out / "curve.md").exists()
    assert f"wrote {out / 'curve.png'}" in stdout


BAD = [
    (["--sizes", "5"], "at least 2 sizes"),
    (["--sizes", "2,x"], "--sizes must be comma-separated whole numbers"),
    (["--sizes", "0,3"], "--sizes must be positive"),
    (["--sizes", "2,7"], "of class 'circle' (6)"),
    (["--seeds", "1"], "at least 2 seeds"),
    (["--strategies", "small-similar,scrach"], "Did you mean scratch?"),
    (["--strategies", "bogus"], "Valid: large-dissimilar, large-similar, scratch, "
                                "small-dissimilar, small-similar"),
    (["--lr", "-1"], "--lr must be a finite number > 0"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_no_files(photos, tmp_path, capsys, argv, needle):
    out = tmp_path / "made" / "curve"
    code, stdout, err = run_cli(capsys, *BASE, "--data", photos, "--out", out, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlkit curve: error: ") and needle in lines[0]
    assert "Traceback" not in err and not (tmp_path / "made").exists()
    assert not stdout.strip()


def test_outputs_inside_the_data_or_on_a_file_are_refused(photos, tmp_path, capsys):
    for out, needle in ((photos / "curve", "inside the data folder"),
                        (photos / "train" / "circle" / "circle_00.png", "is a file")):
        code, _, err = run_cli(capsys, *BASE, "--data", photos, "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (photos / "curve").exists()
