"""`tlkit.curve`: complete rows, nested seeded draws, one test split, the files, scratch from a
classifier file, and every bad input refused before any run with nothing written."""

import itertools
import json
import pathlib

import keras
import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit.evaluation import curve_plot
from tlkit import data
from tlkit.workflows import curve as learning_curve, finetune as transfer
from tlkit.core.errors import TlkitError

SIZES, SEEDS, STRATEGIES = (2, 4), 2, ("small-similar", "scratch")
RUN = dict(backbone="zoo:simple_cnn", image_size=16, epochs=20, batch_size=4, learning_rate=1e-2,
           augment=False, verbose=0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """train/ (8 per class), val/ (3 per class), test/ (6 per class), 3 classes, 16x16."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("curve") / "photos"
    for split, n, seed in (("train", 8, 0), ("val", 3, 1), ("test", 6, 2)):
        write_image_folder(root / split, per_class=n, size=16, seed=seed)
    return root


class Spy:
    """Wraps `tlkit.workflows.finetune.finetune` (which `curve` calls) and records each call."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = transfer.finetune

        def spy(data, **kwargs):
            res = real(data=data, **kwargs)
            self.calls.append({"data": data, "kwargs": kwargs,
                               "accuracy": res.report["accuracy"]})
            return res

        monkeypatch.setattr(transfer, "finetune", spy)


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    spy = Spy(mp)
    out = tmp_path_factory.mktemp("curve-out") / "curve"
    try:
        result = tlkit.curve(str(photos), sizes="4,2", strategies=",".join(STRATEGIES),
                             seeds=SEEDS, seed=3, out=out, **RUN)
    finally:
        mp.undo()
    return result, spy.calls, out


def _paths(x):
    return [str(p) for p in x.paths]


def test_rows_are_complete(run):
    result, calls, _ = run
    keys = {(r["strategy"], r["images_per_class"], r["seed"]) for r in result.rows}
    assert keys == set(itertools.product(STRATEGIES, SIZES, (3, 4)))  # seeds 3 and 4
    assert len(result.rows) == len(calls) == 8
    for r in result.rows:
        assert {"strategy", "images_per_class", "seed", "accuracy", "seconds",
                "accuracy_ci95", "train_images", "val_images", "test_images",
                "phases"} <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["seconds"] > 0
        assert r["train_images"] == 3 * r["images_per_class"]
        assert r["val_images"] == 3 * min(r["images_per_class"], 3)  # capped at val's 3
        assert r["phases"] and all(p["epochs_run"] >= 1 for p in r["phases"])
    # each row holds its own run's accuracy (in call order, rows are sorted afterwards)
    by_call = [(c["kwargs"]["strategy"], len(c["data"].y_train), c["kwargs"]["seed"],
                c["accuracy"]) for c in calls]
    for r in result.rows:
        trained = "large-dissimilar" if r["strategy"] == "scratch" else r["strategy"]
        match = [a for s, n, seed, a in by_call
                 if (s, n, seed) == (trained, r["train_images"], r["seed"])]
        assert match == [r["accuracy"]]
    # scratch is the same network from random weights, trained whole
    for c in calls:
        if c["kwargs"]["strategy"] == "large-dissimilar":
            assert c["kwargs"]["weights"] is None
        assert c["kwargs"]["out"] is None and c["kwargs"]["verbose"] == 0
    # not a constant: the separable squares are learned by scratch at 4 per class
    scratch4 = [r["accuracy"] for r in result.rows
                if r["strategy"] == "scratch" and r["images_per_class"] == 4]
    assert max(scratch4) > result.chance + 0.05, result.rows  # (0.65 where measured)


def test_draws_are_nested_seeded_and_shared_by_strategies(run):
    _, calls, _ = run
    draws = {}
    for c in calls:
        key = (c["kwargs"]["seed"], len(c["data"].y_train) // 3)
        files = (_paths(c["data"].x_train), _paths(c["data"].x_val))
        assert draws.setdefault(key, files) == files  # every strategy saw the same images
        counts = np.bincount(c["data"].y_train, minlength=3)
        assert counts.tolist() == [key[1]] * 3  # k of every class
    for seed in (3, 4):
        for split in (0, 1):
            assert set(draws[seed, 2][split]) < set(draws[seed, 4][split])  # nested
    assert draws[3, 4][0] != draws[4, 4][0]  # another seed, another draw
    # the same seed draws the same items, whatever other sizes are asked for
    y = data.load("digits").y_train
    a = learning_curve.nested_draws(y, 10, (2, 5), seed=[7, 0])
    b = learning_curve.nested_draws(y, 10, (5, 20), seed=[7, 0])
    assert a[5].tolist() == b[5].tolist() and set(a[2]) < set(b[5])


def test_every_run_evaluates_on_the_whole_test_split(run, photos):
    _, calls, _ = run
    whole = data.load(str(photos), image_size=16)
    assert len(whole.y_test) == 18
    for c in calls:
        assert _paths(c["data"].x_test) == _paths(whole.x_test)
        assert c["data"].y_test.tolist() == whole.y_test.tolist()


def test_files_are_written_and_valid(run):
    result, _, out = run
    assert sorted(p.name for p in out.iterdir()) == ["curve.json", "curve.md", "curve.png"]
    assert (result.json, result.png, result.md) == (out / "curve.json", out / "curve.png",
                                                    out / "curve.md")
    assert json.loads(result.json.read_text()) == json.loads(json.dumps(result.rows))
    with Image.open(result.png) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
    md = result.md.read_text().splitlines()
    assert md[2] == "| images per class | small-similar | scratch |"
    stats = curve_plot.aggregate(result)
    for line, k in zip(md[4:], SIZES):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(k)
        for cell, s in zip(cells[1:], STRATEGIES):
            mean = np.mean([r["accuracy"] for r in result.rows
                            if (r["strategy"], r["images_per_class"]) == (s, k)])
            assert cell.startswith(f"{mean:.3f} ± ") and abs(stats[s, k]["mean"] - mean) < 1e-9
    assert "18 test images" in md[0] and "chance 0.333" in md[0]
    assert result.table().splitlines()[1].split() == ["images/class", *STRATEGIES]


def test_figure_has_log_axis_chance_line_and_legend(run):
    result, _, _ = run
    ax = curve_plot.curve_figure(result).axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(l.startswith("chance (1/3") for l in labels)
    assert all(f"{s} (mean)" in labels and f"{s} (min-max)" in labels for s in STRATEGIES)
    chance = [l for l in ax.get_lines() if l.get_label().startswith("chance")][0]
    assert list(chance.get_ydata()) == [pytest.approx(1 / 3)] * 2


def test_scratch_from_a_classifier_file_is_the_same_network_reinitialised(photos, tmp_path,
                                                                           monkeypatch):
    h5 = tmp_path / "source.h5"
    tlkit.finetune(data=str(photos), backbone="zoo:simple_cnn", weights=None, image_size=16,
                   strategy="large-dissimilar", epochs=1, out=h5, augment=False, verbose=0)
    keras.backend.clear_session()
    a = keras.models.load_model(learning_curve.scratch_file(h5, 1, tmp_path / "a"))
    b = keras.models.load_model(learning_curve.scratch_file(h5, 1, tmp_path / "b"))
    c = keras.models.load_model(learning_curve.scratch_file(h5, 2, tmp_path / "c"))
    src = keras.models.load_model(h5)
    assert [l.name for l in a.layers] == [l.name for l in src.layers]
    kernels = [[w for w in m.get_weights() if w.ndim == 4] for m in (src, a, b, c)]
    assert len(kernels[0]) == 2  # simple_cnn's two convolutions
    for s_, a_, b_, c_ in zip(*kernels):
        assert not np.allclose(s_, a_) and np.array_equal(a_, b_)  # re-initialised, seeded
        assert not np.array_equal(a_, c_)  # one initialisation per seed
    spy = Spy(monkeypatch)
    result = tlkit.curve(str(photos), backbone=str(h5), sizes=(2, 3),
                         strategies="small-similar,scratch", seeds=2, epochs=1, augment=False,
                         verbose=0)
    assert len(result.rows) == 8 and result.json is None
    used = {s: {c["kwargs"]["backbone"] for c in spy.calls if c["kwargs"]["strategy"] == s}
            for s in ("small-similar", "large-dissimilar")}
    assert used["small-similar"] == {str(h5)}  # transfer starts from the file's weights
    scratch = used["large-dissimilar"]
    assert len(scratch) == 2 and str(h5) not in scratch  # a re-initialised copy per seed
    assert not any(pathlib.Path(u).exists() for u in scratch)  # removed with the work folder


BAD = [
    (dict(sizes="5"), "at least 2 sizes"),
    (dict(sizes=[3]), "at least 2 sizes"),
    (dict(seeds=1), "at least 2 seeds"),
    (dict(sizes="0,2"), "must be positive"),
    (dict(sizes="-1,2"), "must be positive"),
    (dict(sizes="2,x"), "comma-separated whole numbers"),
    (dict(sizes="2.5,4"), "comma-separated whole numbers"),
    (dict(strategies="small-similar,bogus"), "Valid: large-dissimilar, large-similar, "
                                             "scratch, small-dissimilar, small-similar"),
    (dict(sizes="2,9"), "class 'circle' (8)"),
    (dict(epochs=0), "--epochs must be an integer >= 1"),
]


@pytest.mark.parametrize("kwargs,needle", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_input_is_one_error_before_any_run_and_writes_nothing(photos, tmp_path,
                                                                  monkeypatch, kwargs,
                                                                  needle):
    spy = Spy(monkeypatch)
    out = tmp_path / "new" / "curve"
    args = {**RUN, "sizes": "2,4", "strategies": "scratch", "seeds": 2, "out": out, **kwargs}
    with pytest.raises(TlkitError) as e:
        tlkit.curve(str(photos), **args)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert spy.calls == [] and not (tmp_path / "new").exists()


def test_output_inside_the_data_folder_is_refused(photos, monkeypatch):
    spy = Spy(monkeypatch)
    with pytest.raises(TlkitError, match="inside the data folder"):
        tlkit.curve(str(photos), sizes="2,4", seeds=2, out=photos / "curve", **RUN)
    assert spy.calls == [] and not (photos / "curve").exists()


def test_a_failing_run_leaves_no_files(photos, tmp_path, monkeypatch):
    def boom(**kwargs):
        raise TlkitError("boom")

    monkeypatch.setattr(transfer, "finetune", boom)
    out = tmp_path / "curve"
    with pytest.raises(TlkitError, match="boom"):
        tlkit.curve(str(photos), sizes="2,4", strategies="scratch", seeds=2, out=out, **RUN)
    assert not out.exists()
