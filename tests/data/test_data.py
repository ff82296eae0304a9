"""Tests for tlkit.data: sources, validation, splits, conversion, augmentation, pipelines.

Everything is offline and small: image folders written here with PIL, sklearn's digits,
Fashion-MNIST from Debian's dataset-fashion-mnist, and `tfds.testing.mock_data`.
"""

import gzip
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from tlkit import data
from tlkit.core.errors import TlkitError


def _save(path, size=(8, 8), mode="RGB", value=100, fmt=None):
    """Write a small image whose pixels vary with `value` (so classes are distinguishable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(value)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path, format=fmt)
    return path


def _folder(root, classes=("cats", "dogs"), n=6, size=(8, 8), ext="png"):
    for c, name in enumerate(classes):
        for i in range(n):
            _save(root / name / f"{i}.{ext}", size=size, value=100 * c + i)
    return root


def _messages(record):
    return [str(w.message) for w in record]


# ---------------------------------------------------------------------------------------------
# Sources


@pytest.mark.parametrize("source, expected", [
    ("photos", ("folder", "photos", None)),
    ("tfds:mnist", ("tfds", "mnist", None)),
    ("tfds:mnist:train[:10%]", ("tfds", "mnist", "train[:10%]")),
    ("npz:/tmp/a.npz", ("npz", "/tmp/a.npz", None)),
    ("b.npz", ("npz", "b.npz", None)),
    ("fashion_mnist", ("fashion_mnist", None, None)),
    ("digits", ("digits", None, None)),
])
def test_parse_source(source, expected):
    assert data.parse_source(source) == expected


@pytest.mark.parametrize("source, words", [("", "tfds:NAME"), (3, "npz:PATH"), ("tfds:", "tfds:NAME")])
def test_parse_source_rejects(source, words):
    with pytest.raises(TlkitError, match=words.replace("[", r"\[")):
        data.parse_source(source)


def test_missing_path_names_it_and_the_valid_forms(tmp_path):
    with pytest.raises(TlkitError) as e:
        data.load(str(tmp_path / "nowhere"))
    message = str(e.value)
    assert "nowhere" in message and "tfds:NAME" in message and "fashion_mnist" in message
    assert "\n" not in message  # one line for the CLI


# ---------------------------------------------------------------------------------------------
# Image folders


def test_folder_loads_uint8_with_sorted_classes(tmp_path):
    _folder(tmp_path / "photos", classes=("dogs", "cats"), n=10)
    ds = data.load(str(tmp_path / "photos"))
    assert ds.class_names == ["cats", "dogs"] and ds.num_classes == 2
    assert ds.image_shape == (8, 8, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int64
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 20
    assert len(ds.y_val) == len(ds.y_test) == 2
    summary = ds.summary()
    json.dumps(summary)
    assert summary["counts"] == {"train": 16, "val": 2, "test": 2}
    assert summary["train_per_class"] == {"cats": 8, "dogs": 8} and summary["skipped"] == 0
    # pixels are the files' pixels, not normalised
    stored = np.asarray(Image.open(tmp_path / "photos" / "cats" / "0.png"))
    assert any(np.array_equal(stored, x) for x in np.concatenate([ds.x_train, ds.x_val, ds.x_test]))


@pytest.fixture
def messy(tmp_path):
    """A folder with the problems users have: bad files, modes, sizes, hidden and empty folders."""
    root = _folder(tmp_path / "messy", classes=("a", "b"), n=4, ext="jpg")
    truncated = root / "a" / "truncated.jpg"
    _save(truncated, size=(64, 64), fmt="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:300])
    (root / "b" / "notes.txt").write_text("not an image")
    _save(root / "b" / "rgba.PNG", mode="RGBA")
    _save(root / "a" / "gray.png", mode="L")
    _save(root / "a" / "big.png", size=(12, 10))
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden_class").mkdir()
    _save(root / ".hidden_class" / "x.png")
    (root / "empty").mkdir()
    return root


def test_messy_folder_skips_bad_files_with_one_warning(messy):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = data.load(str(messy), image_size=8, val_fraction=0.0, test_fraction=0.0)
    skipped_lines = [m for m in _messages(record) if m.startswith("Skipped")]
    assert len(skipped_lines) == 1 and "Skipped 2 " in skipped_lines[0]
    assert "truncated.jpg" in skipped_lines[0]
    assert sorted(os.path.basename(p) for p in ds.skipped) == ["notes.txt", "truncated.jpg"]
    assert any("empty" in m and "Excluded" in m for m in _messages(record))
    assert ds.class_names == ["a", "b"]  # empty/ excluded, .hidden_class ignored
    assert ds.image_shape == (8, 8, 3)  # colour present -> 3 channels; big.png resized
    assert len(ds.y_train) == 4 + 2 + 4 + 1  # a: 4 jpg + gray + big, b: 4 jpg + rgba
    assert ds.summary()["skipped"] == 2


def test_messy_folder_mixed_sizes_need_image_size(messy):
    with pytest.raises(TlkitError, match="image_size.*--image-size"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.load(str(messy))


def test_bad_image_error_mode_names_the_file(messy):
    with pytest.raises(TlkitError, match="truncated.jpg"):
        data.load(str(messy), image_size=8, on_bad_image="error")
    with pytest.raises(TlkitError, match="on_bad_image"):
        data.load(str(messy), on_bad_image="ignore")


def test_channels_default_and_conversion(tmp_path):
    root = tmp_path / "gray"
    for c in ("x", "y"):
        for i in range(3):
            _save(root / c / f"{i}.png", mode="L", value=i + (10 if c == "y" else 0))
    ds = data.load(str(root), val_fraction=0, test_fraction=0)
    assert ds.image_shape == (8, 8, 1)
    rgb = data.load(str(root), channels=3, val_fraction=0, test_fraction=0)
    assert rgb.image_shape == (8, 8, 3)
    pixels = rgb.x_train.to_numpy()  # files stream; decode them here to look at the pixels
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_single_class_folder_is_an_error(tmp_path):
    _folder(tmp_path / "one", classes=("cats",))
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(TlkitError, match="at least two"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.load(str(tmp_path / "one"))


def test_files_without_class_folders_explain_the_layout(tmp_path):
    for i in range(3):
        _save(tmp_path / "flat" / f"{i}.png")
    with pytest.raises(TlkitError, match="class subfolders.*photos/cats"):
        data.load(str(tmp_path / "flat"))


def test_pre_split_folder_keeps_its_splits(tmp_path):
    root = tmp_path / "split"
    _folder(root / "train", n=5)
    _folder(root / "validation", n=2)
    _folder(root / "test", classes=("cats", "dogs", "owls"), n=3)
    (root / "README.md").write_text("ignored")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = data.load(str(root))
    # owls has no training images: excluded with a warning, its test images dropped
    assert any("owls" in m for m in _messages(record))
    assert ds.class_names == ["cats", "dogs"]
    assert ds.summary()["counts"] == {"train": 10, "val": 4, "test": 6}


def test_pre_split_folder_carves_a_missing_test_split(tmp_path):
    root = tmp_path / "split"
    _folder(root / "train", n=10)
    _folder(root / "val", n=2)
    ds = data.load(str(root), test_fraction=0.2)
    assert ds.summary()["counts"] == {"train": 16, "val": 4, "test": 4}
    assert sorted(np.bincount(ds.y_test)) == [2, 2]  # stratified


def test_split_folders_mixed_with_class_folders_is_an_error(tmp_path):
    _folder(tmp_path / "odd" / "train")
    _folder(tmp_path / "odd", classes=("extra",))
    with pytest.raises(TlkitError, match="extra"):
        data.load(str(tmp_path / "odd"))


def test_too_few_images_to_stratify_falls_back(tmp_path):
    root = tmp_path / "tiny"
    _save(root / "a" / "0.png")
    _folder(root, classes=("b", "c"), n=2)
    ds = data.load(str(root), val_fraction=0.2, test_fraction=0.2, seed=3)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 5 and len(ds.y_train) >= 1


# ---------------------------------------------------------------------------------------------
# Splits, fractions, select


def test_stratified_seeded_splits():
    a = data.load("digits", seed=0)
    b = data.load("digits", seed=0)
    c = data.load("digits", seed=1)
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_val, c.x_val)
    overall = np.bincount(np.concatenate([a.y_train, a.y_val, a.y_test])) / 1797
    for y in (a.y_train, a.y_val, a.y_test):
        assert np.abs(np.bincount(y, minlength=10) / len(y) - overall).max() < 0.01


@pytest.mark.parametrize("kwargs, culprit", [
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"test_fraction": -0.1}, "test_fraction"),
    ({"val_fraction": "0.1"}, "val_fraction"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": (8, 8, 3)}, "image_size"),
    ({"channels": 4}, "channels"),
])
def test_bad_arguments_name_the_culprit(kwargs, culprit):
    with pytest.raises(TlkitError, match=culprit):
        data.load("digits", **kwargs)


def test_select_classes_and_per_class():
    ds = data.load("digits")
    small = ds.select(["7", 2], per_class=15, eval_per_class=3, seed=1)
    assert small.class_names == ["7", "2"] and small.num_classes == 2
    assert np.bincount(small.y_train).tolist() == [15, 15]
    assert np.bincount(small.y_val).tolist() == [3, 3] and np.bincount(small.y_test).tolist() == [3, 3]
    # label 0 is old class 7: the images are the same as the originals
    sevens = {x.tobytes() for x in ds.x_train[ds.y_train == 7]}
    assert all(x.tobytes() in sevens for x in small.x_train[small.y_train == 0])
    assert np.array_equal(small.x_train, ds.select(["7", 2], per_class=15, seed=1).x_train)
    untouched = ds.select(per_class=5)
    assert untouched.num_classes == 10 and len(untouched.y_val) == len(ds.y_val)
    assert len(ds.y_train) == 1437  # the original is unchanged
    with pytest.raises(TlkitError, match="Unknown class"):
        ds.select(["seven", "2"])
    with pytest.raises(TlkitError, match="at least two"):
        ds.select(["7"])
    with pytest.raises(TlkitError, match="per_class"):
        ds.select(per_class=0)


# ---------------------------------------------------------------------------------------------
# npz, digits, Fashion-MNIST, tfds


def test_npz_sources(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    y = np.repeat([0, 1], 20)
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["neg", "pos"]))
    ds = data.load(f"npz:{tmp_path / 'd.npz'}", image_size=4, channels=3)
    assert ds.class_names == ["neg", "pos"] and ds.image_shape == (4, 4, 3)
    # string labels, and a test split of its own
    np.savez(tmp_path / "s.npz", x=x, y=np.where(y, "pos", "neg"), x_test=x[:6], y_test=np.array(["pos"] * 6))
    ds = data.load(str(tmp_path / "s.npz"))
    assert ds.class_names == ["neg", "pos"] and ds.image_shape == (6, 6, 1)
    assert len(ds.y_test) == 6 and set(ds.y_test) == {1} and len(ds.y_train) == 36


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((4, 5, 5))}, "'x' .* and 'y'"),
    ({"x": np.full((4, 5, 5), 0.5), "y": np.array([0, 1, 0, 1])}, "normalised to 0..1"),
    ({"x": np.zeros((4, 5, 5), np.uint8), "y": np.array([0, 1, 0])}, "1-D array as long"),
    ({"x": np.zeros((4, 5, 5, 2), np.uint8), "y": np.array([0, 1, 0, 1])}, "C in 1, 3, 4"),
    ({"x": np.zeros((4, 5, 5), np.uint8), "y": np.array([0, 3, 0, 1]),
      "class_names": np.array(["a", "b"])}, "class ids 0..1"),
])
def test_npz_rejects(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TlkitError, match=words):
        data.load(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(TlkitError, match="not found"):
        data.load(f"npz:{tmp_path / 'none.npz'}")


def test_digits():
    ds = data.load("digits", val_fraction=0.0, test_fraction=0.0)
    assert ds.image_shape == (8, 8, 1) and ds.x_train.dtype == np.uint8
    assert ds.x_train.max() == 255 and len(ds.y_train) == 1797
    assert ds.class_names == [str(i) for i in range(10)]


@pytest.mark.skipif(not os.path.isfile(os.path.join(data.FASHION_MNIST_DEBIAN, "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed (make data)")
def test_fashion_mnist_from_debian():
    ds = data.load("fashion_mnist")
    assert ds.summary()["counts"] == {"train": 54000, "val": 6000, "test": 10000}
    assert ds.image_shape == (28, 28, 1) and ds.class_names[0] == "T-shirt/top"
    assert ds.class_names[9] == "Ankle boot"
    assert set(np.bincount(ds.y_val)) == {600} and set(np.bincount(ds.y_test)) == {1000}


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_the_keras_cache(tmp_path, monkeypatch):
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    monkeypatch.setattr(data.arrays, "FASHION_MNIST_DEBIAN", str(tmp_path / "no-debian"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ds = data.load("fashion_mnist", val_fraction=0.25)
    assert ds.summary()["counts"] == {"train": 30, "val": 10, "test": 10}


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data.arrays, "FASHION_MNIST_DEBIAN", str(tmp_path / "no-debian"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(TlkitError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist")


@pytest.fixture
def tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    return tfds


def test_tfds_mock_keeps_the_test_split(tfds):
    with tfds.testing.mock_data(num_examples=40):
        ds = data.load("tfds:mnist", image_size=16, channels=3)
    assert ds.class_names == [str(i) for i in range(10)]
    # 10% of 40 would be 4 validation images: the carved split keeps one of every class
    assert ds.summary()["counts"] == {"train": 30, "val": 10, "test": 40}
    assert ds.image_shape == (16, 16, 3) and ds.x_train.dtype == np.uint8


def test_tfds_mock_named_split_is_split_three_ways(tfds):
    with tfds.testing.mock_data(num_examples=30):
        ds = data.load("tfds:cifar10:train[:10%]")
    assert ds.image_shape == (32, 32, 3)
    assert ds.summary()["counts"] == {"train": 24, "val": 3, "test": 3}


def test_tfds_not_on_disk_or_unknown(tfds, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(TlkitError, match="'mnist' is not in the tfds data dir.*--download"):
        data.load("tfds:mnist")
    with pytest.raises(TlkitError, match="Unknown tfds data set 'mnistt'.*mnist"):
        data.load("tfds:mnistt")


# ---------------------------------------------------------------------------------------------
# convert_images, augmentation, pipeline


def test_convert_images_channels_size_and_no_mutation():
    rgba = np.random.default_rng(0).integers(0, 256, (3, 10, 12, 4), dtype=np.uint8)
    before = rgba.copy()
    rgb = data.convert_images(rgba)
    assert rgb.shape == (3, 10, 12, 3) and np.array_equal(rgb, rgba[..., :3])
    gray = data.convert_images(rgba, image_size=(5, 6), channels=1)
    assert gray.shape == (3, 5, 6, 1) and gray.dtype == np.uint8
    assert np.array_equal(rgba, before)
    back = data.convert_images(gray, image_size=5, channels=3)
    assert back.shape == (3, 5, 5, 3) and np.array_equal(back[..., 0], back[..., 1])
    same = data.convert_images(rgb)
    assert same is not rgb and np.array_equal(same, rgb)
    flat = np.full((2, 4, 4), 200.0)
    assert data.convert_images(flat, image_size=8).max() == 200  # no rescaling, constant stays
    with pytest.raises(TlkitError, match="channels"):
        data.convert_images(rgb, channels=2)
    with pytest.raises(TlkitError, match="shape"):
        data.convert_images(np.zeros((4, 4)))


def test_augmentation_layers_and_validation():
    assert data.augmentation(flip=None, rotation=0, zoom=0, contrast=0) is None
    aug = data.augmentation(flip="vertical", contrast=0.2)
    assert [layer.name for layer in aug.layers] == ["aug_flip", "aug_rotation", "aug_zoom", "aug_contrast"]
    with pytest.raises(TlkitError, match="flip"):
        data.augmentation(flip="diagonal")
    with pytest.raises(TlkitError, match="rotation"):
        data.augmentation(rotation=-1)
    with pytest.raises(TlkitError, match="zoom"):
        data.augmentation(zoom=1.5)


def test_pipeline_batches_float32_raw_pixels():
    x = np.random.default_rng(0).integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    y = np.arange(10)
    batches = list(data.pipeline(x, y, batch_size=4))
    assert [int(b.shape[0]) for b, _ in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert xb.dtype.name == "float32" and yb.dtype.name == "int64"
    assert np.array_equal(xb.numpy(), x[:4].astype(np.float32))  # no augmentation, no scaling
    assert len(list(data.pipeline(x, y, batch_size=4, drop_remainder=True))) == 2
    only_x = next(iter(data.pipeline(x, None, batch_size=3)))
    assert tuple(only_x.shape) == (3, 6, 6, 3)
    with pytest.raises(TlkitError, match="batch_size"):
        data.pipeline(x, y, batch_size=0)
    with pytest.raises(TlkitError, match="differ in length"):
        data.pipeline(x, y[:5])


def test_pipeline_shuffle_is_seeded_and_reshuffles_each_epoch():
    x = np.arange(32, dtype=np.uint8).reshape(32, 1, 1, 1)
    ds = data.pipeline(x, np.arange(32), batch_size=32, shuffle=True, seed=5, cache=True)
    epoch1, epoch2 = [next(iter(ds))[1].numpy() for _ in range(2)]
    again = next(iter(data.pipeline(x, np.arange(32), batch_size=32, shuffle=True, seed=5)))[1].numpy()
    assert sorted(epoch1) == list(range(32))
    assert not np.array_equal(epoch1, epoch2)
    assert np.array_equal(epoch1, again)


def test_pipeline_augments_only_when_asked():
    x = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    y = np.zeros(8)
    plain = next(iter(data.pipeline(x, y, batch_size=8)))[0].numpy()
    aug = data.augmentation(flip="horizontal_and_vertical", rotation=0.2, zoom=0.2, seed=1)
    ds = data.pipeline(x, y, batch_size=8, augment=aug)
    a, b = [next(iter(ds))[0].numpy() for _ in range(2)]
    assert np.array_equal(plain, x.astype(np.float32))
    assert not np.allclose(a, plain) and not np.allclose(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 255.5
    with pytest.raises(TlkitError, match="augment"):
        data.pipeline(x, y, augment="yes")


def test_pipeline_without_autotune():
    x = np.zeros((20, 4, 4, 1), np.uint8)
    ds = data.pipeline(x, np.zeros(20), batch_size=8, shuffle=True, autotune=False, prefetch=1,
                       augment=True)
    assert ds.options().autotune.enabled is False
    for _ in range(2):
        assert [int(b.shape[0]) for b, _ in ds] == [8, 8, 4]


def test_read_images(tmp_path):
    a = _save(tmp_path / "a.png", size=(10, 6), mode="L")
    b = _save(tmp_path / "b.jpg", size=(4, 4))
    x = data.read_images([a, b], image_size=5)
    assert x.shape == (2, 5, 5, 3) and x.dtype == np.uint8
    (tmp_path / "c.png").write_bytes(b"broken")
    with pytest.raises(TlkitError, match="c.png"):
        data.read_images([tmp_path / "c.png"])
