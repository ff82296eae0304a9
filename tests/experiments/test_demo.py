"""`tlkit demo`: the quick run through the CLI (structure and files), and its bad input.

The quick run trains 20 small models plus the source net and the baseline (about 1.5 minutes
on 2 cores); it runs once per session, as `python -m tlkit.cli demo --quick` in a background
process that begins when collection ends (process_helpers.background_fixture). Accuracy ordering is
not tested: quick runs are too short for it.
"""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from process_helpers import BackgroundProcesses, background_fixture, cli_command
from tlkit import cli, data
from tlkit.experiments import demo
from tlkit.deploy import saving
from tlkit.core.errors import TlkitError


def run_cli(*argv):
    """Run `tlkit ARGV` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


quick_demo = background_fixture("quick_demo", lambda workdir: BackgroundProcesses(
    workdir, {"demo": cli_command("demo", "--quick", "--out", workdir / "out")}))


@pytest.fixture(scope="module")
def quick(quick_demo):
    """{"code", "out", "err", "dir"} of `tlkit demo --quick --out DIR`."""
    return {**quick_demo["demo"], "dir": quick_demo["workdir"] / "out"}


# ---------------------------------------------------------------------------------------------
# the quick run


def test_quick_demo_exits_cleanly(quick):
    assert quick["code"] == 0, quick["err"][-3000:]
    assert "Traceback" not in quick["err"]


def test_quick_demo_prints_the_table(quick):
    lines = quick["out"].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("situation "))
    assert lines[header].split() == ["situation", *demo.METHODS]
    rows = lines[header + 1: header + 1 + len(demo.SITUATIONS)]
    assert [r.split()[0] for r in rows] == list(demo.SITUATIONS)
    for row in rows:
        cells = row.split()[1:]
        numbers = [c for c in cells if c not in ("*",)]
        assert len(numbers) == 2 * len(demo.METHODS), row  # accuracy and seconds per cell
        accs = [float(c) for c in numbers[0::2]]
        secs = [float(c.rstrip("s")) for c in numbers[1::2]]
        assert all(0.0 <= a <= 1.0 for a in accs) and all(s >= 0 for s in secs), row
        assert "*" in cells, row  # the best of the row is marked
    # progress: one line per run with the elapsed time
    n = len(demo.SITUATIONS) * len(demo.METHODS)
    runs = [line for line in lines if line.startswith("[") and f"/{n}]" in line]
    assert len(runs) == len(demo.SITUATIONS) * len(demo.METHODS)
    assert "baseline: fashion_cnn" in quick["out"]


def test_quick_demo_matrix_json(quick):
    records = json.loads((quick["dir"] / "matrix.json").read_text())
    assert isinstance(records, list)
    pairs = [(r["situation"], r["strategy"]) for r in records]
    assert sorted(pairs) == sorted((s, m) for s in demo.SITUATIONS for m in demo.METHODS)
    for r in records:
        for key in ("test_accuracy", "seconds", "macro_f1"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (key, r)
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["seconds"] > 0
        if r["strategy"] == "auto":  # what auto chose, why, and how it compares
            assert r["chosen"] in demo.STRATEGIES and r["reasons"]
            assert "cost_ratio" in r and "gap_to_best_pp" in r
        assert isinstance(r["best"], bool) and r["textbook"] == (r["strategy"] == r["situation"])
        assert r["test_images"] > 0 and r["train_images"] > 0
    for s in demo.SITUATIONS:
        row = [r for r in records if r["situation"] == s]
        top = max(r["test_accuracy"] for r in row)
        assert [r["best"] for r in row] == [r["test_accuracy"] == top for r in row]
    small = {r["train_images"] for r in records if r["situation"] == "small-similar"}
    large = {r["train_images"] for r in records if r["situation"] == "large-similar"}
    assert max(small) < min(large)


def test_quick_demo_png_and_other_files(quick):
    from PIL import Image

    d = quick["dir"]
    with Image.open(d / "matrix.png") as img:
        assert img.format == "PNG"
        w, h = img.size
        img.load()  # decodes: a truncated file fails here
    assert w >= 600 and h >= 300
    baseline = json.loads((d / "baseline.json").read_text())
    assert baseline["model"] == "fashion_cnn" and 0.0 <= baseline["test_accuracy"] <= 1.0
    summary = json.loads((d / "demo.json").read_text())
    assert summary["quick"] is True and summary["seed"] == 0
    assert summary["source_classes"] == list(demo.DEFAULT_SOURCE_CLASSES)
    assert 0.0 <= summary["source"]["test_accuracy"] <= 1.0
    assert (d / "matrix.md").read_text().startswith("| situation |")
    assert "quick: true" in (d / "settings.yaml").read_text()
    assert not (d / "feature_cache").exists()  # removed at the end of the run
    meta = saving.read_metadata(d / "source.h5")
    assert meta["class_names"] == list(demo.DEFAULT_SOURCE_CLASSES)
    for s in demo.SITUATIONS:
        for m in demo.METHODS:
            assert (d / "runs" / s / f"{m}.h5").is_file()
            for f in ("report.json", "confusion_matrix.png", "curves.png"):
                assert (d / "runs" / s / m / f).is_file(), (s, m, f)


def test_quick_demo_models_transfer_the_source(quick):
    """A transferred model holds the source's trained base; scratch starts from random."""
    import keras

    d = quick["dir"]
    source = keras.models.load_model(d / "source.h5", compile=False)
    target = keras.models.load_model(d / "runs" / "small-similar" / "small-similar.h5",
                                     compile=False)
    scratch = keras.models.load_model(d / "runs" / "small-similar" / "scratch.h5",
                                      compile=False)

    def first_conv(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                return first_conv(layer)
            if layer.name == "block1_conv1":
                return layer.get_weights()[0]
        raise AssertionError(f"no block1_conv1 in {model.name}")

    np.testing.assert_array_equal(first_conv(source), first_conv(target))  # frozen base
    assert not np.array_equal(first_conv(source), first_conv(scratch))
    assert target.output_shape == (None, len(demo.DEFAULT_TARGET_CLASSES))


# ---------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2, nothing trained


@pytest.mark.parametrize("argv, message", [
    (["--source-classes", "Shirts,Bag"], "unknown Fashion-MNIST class 'Shirts'. Did you mean"),
    (["--source-classes", "0,1,12"], "no Fashion-MNIST class id 12"),
    (["--source-classes", "0,1,2", "--target-classes", "Pullover,Coat"], "overlap: Pullover"),
    (["--source-classes", "Bag,bag"], "lists 'Bag' (id 8) twice"),
    (["--target-classes", "0,1,2,3,4,5,6,7,8"], "leaves 1 class on the source side"),
    (["--source-classes", "0", "--target-classes", "1,2"], "each side needs at least two"),
    (["--source-classes", ","], "must list Fashion-MNIST classes"),
])
def test_bad_class_split(argv, message, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run_cli("demo", "--quick", "--out", str(out_dir), *argv)
    assert code == 2
    assert err.startswith("tlkit demo: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out_dir.exists()


def test_missing_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN", str(tmp_path / "nowhere"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    code, out, err = run_cli("demo", "--quick", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1, err
    assert "apt-get install dataset-fashion-mnist" in err


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    code, _, err = run_cli("demo", "--quick", "--out", str(f))
    assert code == 2 and "is a file" in err and err.count("\n") == 1


def test_bad_seed_in_the_library():
    with pytest.raises(TlkitError, match="seed must be an int >= 0"):
        demo.run_demo("/tmp/unused-tlkit-demo", seed=-1)


# ---------------------------------------------------------------------------------------------
# pure helpers


def test_parse_and_resolve_classes():
    assert demo.parse_classes("ankle-boot, 0 ,COAT,sandal") == [9, 0, 4, 5]
    assert demo.parse_classes("tshirttop,Ankle Boot") == [0, 9]
    assert demo.parse_classes(["T-shirt/top", 8]) == [0, 8]
    assert demo.resolve_classes() == ([0, 1, 4, 5, 8], [2, 3, 6, 7, 9])
    assert demo.resolve_classes("Sandal,Sneaker") == ([5, 7], [0, 1, 2, 3, 4, 6, 8, 9])
    assert demo.resolve_classes(None, [9, 7]) == ([0, 1, 2, 3, 4, 5, 6, 8], [9, 7])
    assert demo.resolve_classes("0,1", "2,3") == ([0, 1], [2, 3])


def synthetic_records():
    rng = np.random.default_rng(0)
    records = [{"situation": s, "strategy": m, "test_accuracy": float(rng.uniform(0.5, 1)),
                "seconds": float(rng.uniform(1, 100)), "train_images": 100,
                "data": "digits" if "dis" in s else "fashion_mnist"}
               for s in demo.SITUATIONS for m in demo.METHODS]
    return demo.mark_best(records)


def test_table_markdown_and_heatmap(tmp_path):
    from PIL import Image

    records = synthetic_records()
    rows = demo.format_table(records).splitlines()[2:]
    assert [r.split()[0] for r in rows] == list(demo.SITUATIONS)
    assert all(r.split().count("*") == 1 for r in rows)
    md = demo.format_markdown(records)
    assert md.count("**") == 2 * len(demo.SITUATIONS) and md.count("†") == 4
    path = demo.plot_matrix(records, tmp_path / "m.png", title="test")
    with Image.open(path) as img:
        assert img.format == "PNG"



def test_a_rerun_reuses_the_source_and_baseline_only_when_everything_matches(tmp_path):
    from tlkit.experiments import config, reuse

    key = reuse.source_key([0, 1, 4], config.FULL, 0)
    assert key != reuse.source_key([0, 1, 4], config.FULL, 1)  # another seed
    assert key != reuse.source_key([0, 1, 5], config.FULL, 0)  # another split
    assert key != reuse.source_key([0, 1, 4], config.QUICK, 0)  # other settings
    assert reuse.baseline_key(config.FULL, 0) != reuse.baseline_key(config.QUICK, 0)
    model = tmp_path / "source.h5"
    (tmp_path / "source.json").write_text(json.dumps({"key": key, "test_accuracy": 0.9}))
    assert reuse.cached(tmp_path, "source.json", key, [model]) is None  # the model is gone
    model.write_bytes(b"h5")
    assert reuse.cached(tmp_path, "source.json", key, [model])["test_accuracy"] == 0.9
    assert reuse.cached(tmp_path, "source.json", "0" * 16, [model]) is None
    (tmp_path / "source.json").write_text("{broken")
    assert reuse.cached(tmp_path, "source.json", key, [model]) is None
