"""tlkit audit's command line: the summary, the files, and one-line errors that write nothing."""

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit_cli") / "photos"
    rng = np.random.default_rng(1)
    for name, colour in (("red", 0), ("blue", 2)):
        (root / name).mkdir(parents=True)
        for i in range(8):
            img = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            img[..., colour] = 200
            Image.fromarray(img).save(root / name / f"{i}.png")
    (root / "few").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i, 90, 9)).save(root / "few" / f"{i}.png")
    return root


COMMON = ["--backbone", "zoo:simple_cnn", "--weights", "none", "--image-size", "16"]


def test_audit_prints_the_summary_and_writes_the_files(capsys, photos, tmp_path):
    out = tmp_path / "a"
    code, stdout, err = run_cli(capsys, "audit", "--data", photos, *COMMON, "--folds", "3",
                                "--out", out, "--quiet")
    assert code == 0, err
    assert "issues:" in stdout and "class balance" in stdout
    assert {p.name for p in out.iterdir()} >= {"audit.json", "audit.csv", "label_scores.csv",
                                               "summary.md"}


@pytest.mark.parametrize("extra, needle", [
    (["--folds", "5"], "needs at least 5 images in every class; 'few' (3)"),
    (["--max-issues", "0"], "--max-issues must be an integer >= 1"),
    (["--backbone", "mobilenet_v9"], "Unknown backbone 'mobilenet_v9'"),
    (["--model", "{tmp}/broken.h5"], "broken.h5"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, photos, tmp_path, extra,
                                                         needle):
    (tmp_path / "broken.h5").write_bytes(b"not a model")
    out = tmp_path / "out"
    argv = ["audit", "--data", photos, *COMMON, "--out", out, "--quiet"]
    argv += [a.format(tmp=tmp_path) for a in extra]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.rglob("*")) == before
