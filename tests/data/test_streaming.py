"""Streaming data end to end: folders become an index, pixels are decoded only in tf.data.

Folders written here are small (tiny JPEG/PNG files), so every check is about behaviour:
what is read, when, which files are skipped and counted, and which split a run recorded.
"""

import json
import os
import socket
import warnings

import numpy as np
import pytest
from PIL import Image

from process_helpers import BackgroundProcesses, background_fixture, cli_command
from cli_helpers import run_cli as run
from tlkit import cli, data
from tlkit.data import decode, index
from tlkit.core.errors import TlkitError


def _folder(root, classes=("a", "b", "c"), n=40, size=12, seed=0):
    """n images per class, JPEG and PNG alternating, colour by class."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 40, (size, size, 3)).astype("uint8")
            img[..., c % 3] += 180
            ext = "jpg" if i % 2 else "png"
            Image.fromarray(img).save(root / name / f"{name}{i:03d}.{ext}")
    return root




def test_a_folder_streams_no_image_is_decoded_eagerly(tmp_path, monkeypatch):
    root = _folder(tmp_path / "photos")

    def eager(*args, **kwargs):
        raise AssertionError("an image was decoded outside tf.data")

    monkeypatch.setattr(decode, "read_image", eager)
    ds = data.load(str(root), image_size=8, channels=3, seed=0)
    assert isinstance(ds.x_train, data.ImageFiles) and ds.streams
    assert ds.x_train.shape == (96, 8, 8, 3) and ds.summary()["counts"] == {
        "train": 96, "val": 12, "test": 12}
    seen = 0
    for images, labels in ds.pipeline("train", batch_size=16, shuffle=True):
        assert images.shape[1:] == (8, 8, 3) and images.dtype.name == "float32"
        seen += len(labels)
    assert seen == 96 and ds.x_train.failed() == []


def test_pixels_and_labels_travel_together(tmp_path):
    root = _folder(tmp_path / "photos", n=6)
    ds = data.load(str(root), image_size=12, seed=0, val_fraction=0, test_fraction=0)
    for images, labels in ds.pipeline("train", batch_size=5, shuffle=True, seed=3):
        dominant = np.asarray(images).mean(axis=(1, 2)).argmax(axis=-1)  # colour = class
        assert np.array_equal(dominant, labels.numpy() % 3)


def test_splits_are_seeded_and_recorded(tmp_path):
    root = _folder(tmp_path / "photos", n=20)
    a = data.load(str(root), image_size=8, seed=1)
    b = data.load(str(root), image_size=8, seed=1)
    c = data.load(str(root), image_size=8, seed=2)
    for split in ("train", "val", "test"):
        assert list(a.split(split)[0].paths) == list(b.split(split)[0].paths)
    assert list(a.x_test.paths) != list(c.x_test.paths)
    assert sorted(np.bincount(a.y_test)) == [2, 2, 2]  # stratified
    path = index.save(a, tmp_path / "run" / "index.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "tlkit-index" and doc["settings"]["seed"] == 1
    assert len(doc["splits"]["test"]["paths"]) == 6 and not os.path.isabs(
        doc["splits"]["test"]["paths"][0])
    back = index.load(path)
    for split in ("train", "val", "test"):
        assert list(back.split(split)[0].paths) == list(a.split(split)[0].paths)
        assert np.array_equal(back.split(split)[1], a.split(split)[1])
    moved = tmp_path / "moved"
    root.rename(moved)
    again = index.load(path, root=moved)
    assert all(p.startswith(str(moved)) for p in again.x_test.paths)


def test_mixed_formats_load_through_the_pipeline(tmp_path):
    root = tmp_path / "mixed"
    for c in ("x", "y"):
        (root / c).mkdir(parents=True)
    value = np.linspace(0, 65535, 100, dtype=np.uint16).reshape(10, 10)
    Image.fromarray(value).save(root / "x" / "sixteen.png")          # 16-bit grey PNG
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(root / "x" / "cmyk.jpg")  # red
    Image.new("P", (10, 10), 3).save(root / "x" / "palette.png")
    Image.new("LA", (10, 10), (200, 255)).save(root / "y" / "la.png")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(root / "y" / "blue.bmp")
    Image.new("RGB", (10, 10), (0, 255, 0)).save(root / "y" / "green.webp")
    Image.new("RGB", (10, 10), (255, 255, 0)).save(root / "y" / "yellow.gif")
    ds = data.load(str(root), image_size=10, channels=3, val_fraction=0, test_fraction=0)
    assert len(ds.y_train) == 7 and ds.skipped == []
    images = {os.path.basename(p): None for p in ds.x_train.paths}
    for batch, _ in ds.pipeline("train", batch_size=7):
        for p, im in zip(ds.x_train.paths, np.asarray(batch)):
            images[os.path.basename(p)] = im
    assert ds.x_train.failed() == []
    red = images["cmyk.jpg"].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert images["sixteen.png"].max() > 200  # 16 bit scaled to 8, not clipped to 255 or 0
    assert images["green.webp"].mean(axis=(0, 1))[1] > 200
    assert abs(images["la.png"].mean() - 200) < 3


def test_corrupt_in_scan_and_after_scan_are_skipped_and_counted(tmp_path, capsys):
    root = _folder(tmp_path / "photos", n=12)
    (root / "a" / "notes.txt.jpg").write_text("not an image")
    good = root / "b" / "b001.jpg"
    cut = root / "b" / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = data.load(str(root), image_size=8, val_fraction=0, test_fraction=0)
    assert sorted(os.path.basename(p) for p in ds.skipped) == ["cut.jpg", "notes.txt.jpg"]
    assert any("Skipped 2" in str(w.message) for w in record)
    victim = ds.x_train.paths[5]
    with open(victim, "wb") as f:  # turns bad after the scan
        f.write(b"\xff\xd8garbage" * 10)
    n = sum(len(y) for _, y in ds.pipeline("train", batch_size=8))
    assert n == len(ds.y_train) - 1
    assert ds.note_failed() == [victim] and victim in ds.skipped
    summary = ds.summary()
    assert summary["skipped"] == 3 and any(f["path"] == victim
                                           for f in summary["skipped_files"])


def test_every_file_bad_names_the_folder_and_a_file(tmp_path):
    root = tmp_path / "bad"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.jpg").write_text("nope")
    with pytest.raises(TlkitError, match=r"No file in .*bad is a readable image.*x\.jpg"):
        data.load(str(root))


def test_no_usable_images_after_filtering(tmp_path):
    root = tmp_path / "few"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGB", (4, 4)).save(root / "a" / "ok.png")
    (root / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(TlkitError, match="at least two"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.load(str(root))


def test_symlink_loops_are_not_followed(tmp_path):
    root = _folder(tmp_path / "photos", n=4)
    os.symlink(root, root / "loop")          # a "class" that is the data root
    os.symlink(root / "a", root / "a" / "again")  # a loop inside a class
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = data.load(str(root), image_size=8, val_fraction=0, test_fraction=0)
    assert ds.class_names == ["a", "b", "c"] and len(ds.y_train) == 12
    assert any("Not following" in str(w.message) for w in record)


def test_npz_with_nan_is_refused(tmp_path):
    x = np.full((4, 8, 8), 100.0)
    x[1, 2, 3] = np.nan
    np.savez(tmp_path / "n.npz", x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(TlkitError, match="NaN or infinite"):
        data.load(f"npz:{tmp_path / 'n.npz'}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model finetuned on a folder, with its run folder and index."""
    tmp = tmp_path_factory.mktemp("stream")
    root = _folder(tmp / "photos", n=10, size=16)
    out = tmp / "models" / "m.h5"
    assert cli.main(["finetune", "--data", str(root), "--backbone", "zoo:simple_cnn",
                     "--weights", "none", "--image-size", "16", "--strategy", "large-dissimilar",
                     "--epochs", "1", "--out", str(out), "--quiet", "--no-augment"]) == 0
    return root, out


def test_evaluate_reads_the_runs_test_files_only(trained, capsys, monkeypatch):
    root, out = trained
    idx = json.loads((out.with_suffix("") / "index.json").read_text())
    test_files = {os.path.join(str(root), p) for p in idx["splits"]["test"]["paths"]}
    Image.new("RGB", (16, 16)).save(root / "a" / "new_after_training.png")  # a later file
    opened = []
    real = decode.decode_and_resize

    def spy(path, use_pil, **kw):
        import tensorflow as tf

        def note(p):
            opened.append(p.decode())
            return p

        spied = tf.numpy_function(note, [path], tf.string, stateful=True)
        spied.set_shape([])
        return real(spied, use_pil, **kw)

    monkeypatch.setattr(decode, "decode_and_resize", spy)
    code, stdout, err = run(capsys, "evaluate", out, "--data", root)
    assert code == 0, err
    assert "index" in stdout and f"(n={len(test_files)})" in stdout
    assert set(opened) == test_files


def test_predict_skips_bad_files_and_streams_csv(trained, capsys, tmp_path):
    root, out = trained
    folder = tmp_path / "to_predict"
    folder.mkdir()
    for i, p in enumerate(sorted((root / "b").glob("*"))[:5]):
        (folder / f"{i}{p.suffix}").write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_text("not a jpeg")
    code, stdout, err = run(capsys, "predict", out, folder, "--format", "csv",
                            "--on-bad-image", "skip")
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("path,class1,prob1") and len(lines) == 6
    assert "skipped 1" in err and "broken.jpg" in err
    code, _, err = run(capsys, "predict", out, folder, "--on-bad-image", "error")
    assert code == 2 and "broken.jpg" in err and len(err.strip().splitlines()) == 1
    csv_path = tmp_path / "preds.csv"
    code, stdout, err = run(capsys, "predict", out, folder, "--out", csv_path,
                            "--batch-size", "2")
    assert code == 0, err
    def classes(rows):  # path and classes (columns: path, class1, prob1, class2, prob2, ...)
        return [[r.split(",")[0]] + r.split(",")[1::2] for r in rows]

    def probs(rows):
        return np.array([[float(v) for v in r.split(",")[2::2]] for r in rows[1:]])

    written = csv_path.read_text().splitlines()
    assert classes(written) == classes(lines)
    # another batch size may change a probability's last printed digit (oneDNN's AVX-512
    # kernels sum in a batch-dependent order), not more
    np.testing.assert_allclose(probs(written), probs(lines), atol=2e-6)
    assert f"wrote {csv_path}" in stdout
    # stdout is not a terminal here: Keras's one-line progress (verbose=2), no redrawn bar
    assert "\r" not in stdout and "\b" not in stdout and "━" not in stdout, stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two_folder_workers(workdir):
    root = _folder(workdir / "photos", n=10, size=16)
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    return BackgroundProcesses(workdir, {
        f"worker{i}": cli_command(
            "finetune", "--data", str(root), "--backbone", "zoo:simple_cnn", "--weights",
            "none", "--image-size", "16", "--strategy", "large-dissimilar", "--epochs", "1",
            "--batch-size", "8", "--no-augment", "--distribute", "multiworker", "--quiet",
            "--out", workdir / f"worker{i}.h5",
            env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}),
                 "CUDA_VISIBLE_DEVICES": ""})
        for i in range(2)})


two_folder_workers = background_fixture("two_folder_workers", _start_two_folder_workers,
                                        timeout=300)


def test_multiworker_workers_read_disjoint_files(two_folder_workers):
    shards = []
    for i in range(2):
        run_ = two_folder_workers[f"worker{i}"]
        assert run_["code"] == 0, (run_["out"] + run_["err"])[-3000:]
        shard = json.loads((two_folder_workers["workdir"] / f"worker{i}" / f"shard-{i}.json")
                           .read_text())
        assert shard["workers"] == 2 and shard["index"] == i
        shards.append(set(shard["paths"]))
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert len(shards[0]) == len(shards[1]) == 24 // 2  # 24 training files, equal shards


def test_predict_warns_about_a_tiny_image(trained, capsys, tmp_path):
    root, out = trained
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "dot.png")
    Image.new("RGB", (12, 12)).save(folder / "fine.png")  # >= 8 px: no warning for it
    with pytest.warns(UserWarning, match=r"^1 image is much smaller than the model input "
                                         r"16x16 \(e\.g\. dot\.png: 1x1 px\): it is upscaled"):
        code, stdout, err = run(capsys, "predict", out, folder)
    assert code == 0, err
    assert len(stdout.strip().splitlines()) == 2  # both are still scored
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert run(capsys, "predict", out, folder / "fine.png")[0] == 0
    assert not [w for w in record if "much smaller" in str(w.message)]
