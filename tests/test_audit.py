"""tlkit audit on a tiny folder the test writes, with planted problems (behaviour, not speed).

Two classes of 16x16 colour textures, red and blue: random-weight conv features separate them
by colour, so a red image filed under blue is a planted wrong label the out-of-fold probe
must find. Also planted: an exact copy of a training image in test (a leak), a constant image,
a dark image, a tiny image (upscaled by the loader, small at its stored size).
"""

import csv
import doctest
import importlib
import inspect
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tlkit import data as data_lib

N = 14  # images per class and split-folder train (test gets 4)


def _texture(rng, colour, size=16):
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    img[..., colour] = rng.integers(170, 255, (size, size))
    return img


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit") / "photos"
    rng = np.random.default_rng(0)
    for split, n in (("train", N), ("test", 4)):
        for name, colour in (("red", 0), ("blue", 2)):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_texture(rng, colour)).save(d / f"{name}{i}.png")
    # planted problems
    Image.fromarray(_texture(rng, 0)).save(root / "train/blue/wrong.png")  # red, filed blue
    shutil.copy(root / "train/red/red3.png", root / "test/red/copy.png")  # leak
    Image.new("RGB", (16, 16), (128, 128, 128)).save(root / "train/red/constant.png")
    dark = (_texture(rng, 2) // 12).astype(np.uint8)
    Image.fromarray(dark).save(root / "train/blue/dark.png")
    Image.fromarray(_texture(rng, 0, size=6)).save(root / "train/red/tiny.png")
    return root


@pytest.fixture(scope="module")
def audited(photos, tmp_path_factory):
    import keras

    from tlkit.audit import audit

    keras.utils.set_random_seed(0)  # the random base weights, the same every run
    out = tmp_path_factory.mktemp("audit_out") / "audit"
    # near_threshold 1: random-weight features put unrelated textures close together, so
    # only the exact copy (found by its pixel hash) pairs images here
    result = audit(str(photos), "mobilenet_v2", weights=None, image_size=32, out=out,
                   fix_splits=True, min_side=12, outlier_share=0.05, near_threshold=1.0,
                   verbose=0)
    return result, out


def _rows(result, kind):
    return [r for r in result.issues if r["kind"] == kind]


def test_the_planted_wrong_label_is_flagged_first(audited):
    result, _ = audited
    labels = _rows(result, "label")
    wrong = [r for r in labels if r["path"] == "train/blue/wrong.png"]
    assert wrong and wrong[0]["given"] == "blue" and wrong[0]["suggested"] == "red"
    assert len(labels) <= 8  # a handful, not every image
    scores = {r["path"]: r["label_quality"] for r in result.label_scores}
    # among the two worst (the dark blue image, unlike any other, may rank with it)
    assert scores["train/blue/wrong.png"] <= sorted(scores.values())[1]


def test_duplicates_leaks_and_properties(audited):
    result, _ = audited
    leaks = _rows(result, "leak")
    assert {"path": "test/red/copy.png", "split": "test", "kind": "leak", "score": 1.0,
            "given": "", "suggested": "", "other": "train/red/red3.png"} in leaks
    assert result.summary["leak_rates"]["train-test"]["images"] >= 1
    by_kind = {k: {r["path"] for r in _rows(result, k)} for k in
               ("constant", "dark", "small", "grayscale")}
    assert "train/red/constant.png" in by_kind["constant"]
    assert "train/red/constant.png" in by_kind["grayscale"]
    assert "train/blue/dark.png" in by_kind["dark"]
    assert by_kind["small"] == {"train/red/tiny.png"}
    assert "train/red/red0.png" not in set().union(*by_kind.values())
    assert len(_rows(result, "outlier")) == int(np.ceil(0.05 * result.summary["audited"]))
    balance = result.summary["class_balance"]
    assert balance["per_class"]["red"] == N + 4 + 1 + 2 and balance["ratio"] > 1


def test_the_files(audited):
    result, out = audited
    doc = json.loads((out / "audit.json").read_text())
    assert set(doc) == {"issues", "summary"} and doc["issues"] == result.issues
    assert all(set(r) == {"path", "split", "kind", "score", "given", "suggested", "other"}
               for r in doc["issues"])
    with open(out / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(doc["issues"]) and rows[0]["path"] == doc["issues"][0]["path"]
    with open(out / "label_scores.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert len(scores) == result.summary["audited"] == 2 * (N + 4) + 5
    assert list(scores[0])[:2] == ["path", "label_quality"]
    for kind in {r["kind"] for r in result.issues}:
        png = out / "galleries" / f"{kind}.png"
        with Image.open(png) as im:
            assert im.size[0] >= 2 * 96 and im.size[1] >= 96
    text = (out / "summary.md").read_text()
    assert "| label |" in text and "### label" in text
    assert not [p for p in out.rglob(".audit-*")]  # no staging folder left


def test_fix_splits_writes_an_index_load_and_finetune_accept(audited, photos):
    result, out = audited
    ds = data_lib.load(str(photos), image_size=16, index=out / "index.json")
    where = {str(p): s for s in ("train", "val", "test") for p in ds.split(s)[0].paths}
    # the copy moved to its original's split (train or the val carved from it)
    assert where[str(photos / "test/red/copy.png")] == where[str(photos / "train/red/red3.png")]
    assert where[str(photos / "test/red/copy.png")] != "test"
    assert len(ds.y_test) == 2 * 4  # the rest of test stays


def test_exclude_and_relabel_change_what_load_returns(audited, photos, tmp_path):
    _, out = audited
    plain = data_lib.load(str(photos), image_size=16)
    ds = data_lib.load(str(photos), image_size=16, exclude=out / "audit.csv")
    total = lambda d: sum(len(d.split(s)[1]) for s in ("train", "val", "test"))  # noqa: E731
    flagged = {r["path"] for r in json.loads((out / "audit.json").read_text())["issues"]}
    assert total(ds) == total(plain) - len(flagged)
    assert not any(str(p).endswith("wrong.png") for s in ("train", "val", "test")
                   for p in ds.split(s)[0].paths)
    relabel = tmp_path / "fix.csv"
    relabel.write_text("path,label\ntrain/blue/wrong.png,red\n")
    fixed = data_lib.load(str(photos), image_size=16, relabel=relabel)
    def label_of(d):
        for s in ("train", "val", "test"):
            x, y = d.split(s)
            for p, v in zip(x.paths, y):
                if str(p).endswith("wrong.png"):
                    return d.class_names[v]

    assert label_of(plain) == "blue" and label_of(fixed) == "red"
    summary = fixed.summary()["overrides"]
    assert summary["relabelled"] == 1 and summary["relabel"] == str(relabel)
    assert ds.summary()["overrides"]["excluded"] == len(flagged)


def test_a_trained_model_gives_the_features(photos, tmp_path):
    """--model: the pooled features of a trained tlkit classifier."""
    import tlkit
    from tlkit.audit import audit

    model = tmp_path / "m.h5"
    tlkit.finetune(data=str(photos), backbone="zoo:simple_cnn", weights=None, image_size=16,
                   strategy="large-dissimilar", epochs=1, out=str(model), verbose=0,
                   augment=False)
    r = audit(str(photos), model=str(model), verbose=0)
    assert r.summary["features"]["model"] == str(model)
    assert r.summary["audited"] == 2 * (N + 4) + 5


MODULES = ["tlkit.audit", "tlkit.audit.properties", "tlkit.audit.labels",
           "tlkit.audit.duplicates", "tlkit.audit.outliers", "tlkit.data.overrides"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_cli_defaults_are_the_library_defaults():
    from tlkit.audit import labels, run
    from tlkit.cli import audit as cli_audit

    params = inspect.signature(run.audit).parameters
    for name, value in cli_audit.DEFAULTS.items():
        assert params[name].default == value, name
    assert cli_audit.LABEL_SCORES == labels.SCORES


def test_the_package_is_callable_as_tlkit_audit():
    import tlkit
    import tlkit.audit

    assert callable(tlkit.audit)
