import gc
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import helpers  # noqa: E402

# Slow end-to-end commands that the collected tests need, started in the background when
# collection ends (see helpers.BackgroundCLI); the fixtures below collect their results.
_BACKGROUND = {}


def _start_quick_demo():
    workdir = tempfile.mkdtemp(prefix="tlkit-test-demo-")
    return helpers.BackgroundCLI(["demo", "--quick", "--out", os.path.join(workdir, "out")],
                                 workdir)


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    fixtures = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if "quick_demo" in fixtures:
        _BACKGROUND["quick_demo"] = _start_quick_demo()
    if any(getattr(getattr(item, "module", None), "predict_in_fresh_process", None)
           for item in session.items):
        helpers._fresh_process()  # its TensorFlow import overlaps with the first tests


def pytest_sessionfinish(session):
    for run in _BACKGROUND.values():
        run.stop()
        shutil.rmtree(run.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def quick_demo():
    """`tlkit demo --quick --out DIR` as a user runs it, in a process of its own (about
    1.5 minutes on 2 cores, which overlap with the tests before tests/test_demo.py)."""
    run = _BACKGROUND.get("quick_demo") or _BACKGROUND.setdefault("quick_demo",
                                                                   _start_quick_demo())
    code, out, err = run.result(timeout=900)
    return {"code": code, "out": out, "err": err, "dir": run.workdir / "out"}


@pytest.fixture(scope="module", autouse=True)
def _freeze_survivors():
    """Move what is still alive when a test module starts out of the garbage collector's way.

    `keras.backend.clear_session()` runs a full `gc.collect()`, and tlkit calls it per
    tuning trial and per demo run: each one scans every object in the process, and after
    TensorFlow, Keras and the earlier test modules that is millions of them (over a second
    per call late in the suite). Objects that survive a collection at a module boundary are
    imported modules, registries and caches that live as long as the process, so freezing
    them (`gc.freeze`) keeps the collections the tests trigger down to what the tests
    themselves allocate. Nothing a test checks depends on it.
    """
    gc.collect()
    gc.freeze()
    yield


def write_image_folder(root, classes=("circle", "square", "stripes"), per_class=12, size=40,
                       seed=0):
    """A tiny image folder: one subfolder per class, PNGs whose class is visible."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(classes):
        (root / name).mkdir(exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, size=(size, size, 3)).astype("uint8")
            img[..., c % 3] = np.clip(img[..., c % 3].astype(int) + 150, 0, 255)
            if c == 1:
                img[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
            if c == 2:
                img[::4] = 0
            Image.fromarray(img).save(root / name / f"{name}_{i:02d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "photos")


@pytest.fixture(scope="session")
def tiny_digits():
    """scikit-learn's digits at 32x32 RGB, 12 training images per class."""
    from tlkit import data

    ds = data.load("digits", image_size=32, channels=3, seed=0)
    return ds.select(per_class=12, eval_per_class=6, seed=0)
