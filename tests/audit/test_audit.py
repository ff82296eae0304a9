"""tlkit audit on a tiny folder the test writes, with planted problems (behaviour, not speed).

Two classes of 16x16 colour textures, red and blue: random-weight conv features separate them
by colour, so a red image filed under blue is a planted wrong label the out-of-fold probe
must find. Also planted: an exact copy of a training image in test (a leak), a constant image,
a dark image, a tiny image (upscaled by the loader, small at its stored size). Near duplicates
have their own garments: 28 px silhouettes filled with a print, copied JPEG-re-encoded, shifted
and brightened, next to look-alikes (the same silhouette, another print).
"""

import csv
import io
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
    # random textures: no two are alike in their pixels, so only the exact copy (found by its
    # pixel hash) pairs images here
    result = audit(str(photos), "mobilenet_v2", weights=None, image_size=32, out=out,
                   fix_splits=True, min_side=12, outlier_share=0.05, verbose=0)
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


SHIRT = np.zeros((28, 28), bool)
SHIRT[3:26, 7:21] = True  # body
SHIRT[3:13, 2:26] = True  # sleeves


def _garment(rng, mask=SHIRT):
    """A silhouette filled with a smooth print: look-alikes share the silhouette (a global
    correlation of about 0.98, as Fashion-MNIST's do), copies also the print."""
    from scipy import ndimage

    print_ = ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.2)
    return (mask * np.clip(170 + 20 * print_ / print_.std(), 0, 255)).astype(np.uint8)


def _altered(img, quality=50, shift=(2, -3), gain=1.1):
    """`img` JPEG-re-encoded, moved by `shift` px (zero fill) and brightness-scaled by `gain`,
    the alterations of bench/bench_audit.py's planted copies at their strongest."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    img = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32)
    out = np.zeros_like(img)
    (dy, dx), h, w = shift, *img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return np.clip(out * gain, 0, 255).astype(np.uint8)


def test_an_altered_copy_is_a_near_duplicate_and_a_look_alike_is_not():
    from tlkit.audit import pixels

    rng = np.random.default_rng(3)
    garments = [_garment(rng) for _ in range(12)]
    original, look_alike = garments[0], garments[1]
    # as alike as a copy by their global correlation: the local difference must decide
    assert np.corrcoef(original.ravel(), look_alike.ravel())[0, 1] > pixels.MIN_CORRELATION
    copies = [_altered(original), _altered(original, quality=90, shift=(-3, 3), gain=0.9)]
    thumbs, boxes = pixels.stack([pixels.thumbnail(g) for g in garments + copies])
    found = {(i, j): s for i, j, s in pixels.near_pairs(thumbs, boxes)}
    assert set(found) == {(0, 12), (0, 13), (12, 13)}, found
    assert all(s >= pixels.DEFAULT_THRESHOLD for s in found.values())
    everything = {(i, j): s for i, j, s in pixels.near_pairs(thumbs, boxes, threshold=0)}
    assert everything[(0, 1)] < pixels.DEFAULT_THRESHOLD - 0.05, everything


def test_thumbnails_keep_small_images_and_scale_large_ones():
    from tlkit.audit import pixels

    img = (np.arange(28 * 28) % 251).astype(np.uint8).reshape(28, 28)
    small, box = pixels.thumbnail(img)
    assert box == (2, 30, 2, 30) and np.array_equal(small[2:30, 2:30], img)
    big, box = pixels.thumbnail(np.zeros((400, 200, 3), np.uint8))
    assert big.shape == (32, 32) and box == (0, 32, 8, 24)


def test_audit_reports_altered_copies_as_leaks_and_near_duplicates(tmp_path):
    """End to end: an altered copy in test is a leak, one in train a near duplicate, and a
    look-alike in test is neither."""
    from tlkit.audit import audit

    rng = np.random.default_rng(5)
    root = tmp_path / "garments"
    for split, n in (("train", 6), ("test", 2)):
        for cls, tint in (("warm", (1.0, 0.7, 0.5)), ("cold", (0.5, 0.7, 1.0))):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                g = _garment(rng)[..., None] * np.array(tint)
                Image.fromarray(g.astype(np.uint8)).save(root / split / cls / f"{i}.png")
    with Image.open(root / "train/warm/0.png") as im:
        original = np.asarray(im.convert("L"))
    Image.fromarray(_altered(original)).save(root / "test/warm/copy.png")
    again = _altered(original, shift=(-1, 2), gain=0.92)
    Image.fromarray(again).save(root / "train/warm/again.png")
    Image.fromarray(_garment(rng)).save(root / "test/warm/look_alike.png")
    r = audit(str(root), "zoo:simple_cnn", weights=None, image_size=16, folds=2,
              val_fraction=0, verbose=0)
    pairs = {(row["kind"], row["path"], row["other"]) for row in r.issues
             if row["kind"] in ("near_duplicate", "leak")}
    # the copy in test pairs with both training images it copies (within a split, which one
    # is called the copy follows the order of the data)
    assert pairs == {("leak", "test/warm/copy.png", "train/warm/0.png"),
                     ("leak", "test/warm/copy.png", "train/warm/again.png"),
                     ("near_duplicate", "train/warm/0.png", "train/warm/again.png")}, pairs
    assert r.summary["leak_rates"]["train-test"]["images"] == 1
    assert r.summary["thumbnails"]["shape"] == [r.summary["audited"], 32, 32]


MODULES = ["tlkit.audit", "tlkit.audit.properties", "tlkit.audit.labels",
           "tlkit.audit.duplicates", "tlkit.audit.pixels", "tlkit.audit.outliers",
           "tlkit.data.overrides"]


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
