import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tlkit's own cache (--precision auto's probe decisions) lives in one folder per test session,
# made by the first process (pytest-xdist's workers inherit it), never in the user's ~/.cache.
if "TLKIT_CACHE_DIR" not in os.environ:
    os.environ["TLKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="tlkit-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TLKIT_CACHE_DIR"], True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import process_helpers  # noqa: E402


# `make test-fast` (`-m "not slow"`): everything but the modules that train for minutes (the
# quick demo, resume after kill, tuning searches, distributed processes, ONNX/TFLite exports,
# end to end runs, the failed-run and curve workflows, multi-worker streaming, the resize
# contract of every export). `make test` runs them all.
SLOW_MODULES = ("test_demo.py", "test_runs.py", "test_tuning.py", "test_tune_cli.py",
                "test_distribute.py", "test_export.py", "test_export_cli.py", "test_finetune.py",
                "test_advise.py", "test_explain_cli.py", "test_lr_find.py", "test_readme.py",
                "test_failed_runs.py", "test_curve.py", "test_streaming.py",
                "test_resize_contract.py", "test_backends.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session):
    """Begin the background runs that the selected tests use
    (process_helpers.background_fixture), in the order the tests need them, and the fresh-load
    process (process_helpers.py)."""
    if session.config.option.collectonly:
        return
    # Under pytest-xdist (-n 2 --dist loadfile, setup.cfg) every worker collects every test,
    # so none begins the runs early: each starts when its module first asks, in the one
    # worker that runs that module, while the other worker goes on.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        process_helpers.begin_background_runs(session.items)
    if any(getattr(getattr(item, "module", None), "predict_in_fresh_process", None)
           for item in session.items):
        process_helpers.fresh_load_process()  # its TensorFlow import overlaps with the first tests


def pytest_sessionfinish(session):
    process_helpers.stop_background_runs()


@pytest.fixture(scope="module", autouse=True)
def _freeze_survivors():
    """Move what is still alive when a test module starts out of the garbage collector's way.

    `keras.backend.clear_session()` runs a full `gc.collect()`, and tlkit calls it per
    tuning trial and per demo run: each one scans every object in the process, and after
    TensorFlow, Keras and the earlier test modules that is millions of them (over a second
    per call late in the suite: 259 of the suite's 697 s went to it). What survives a
    collection at a module boundary is imported modules, registries, caches and what earlier
    tests left reachable; freezing it (`gc.freeze`) keeps the collections the tests trigger
    down to what the current module allocates. Frozen objects that become cyclic garbage
    later are not freed, but the peak RSS does not grow (test_backbones, test_train,
    test_tuning and test_zoo together: 4.00 GB frozen, 4.04 GB not, in 161 s instead of
    273 s). No test checks either.
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


@pytest.fixture(scope="session")
def tiny():
    """Digits at 16 px gray, 5 training and 5 validation images per class (50 + 50): the
    small-data runs of tests/training."""
    import dataclasses

    from tlkit import data

    ds = data.load("digits", image_size=16, channels=1)
    few = ds.select(per_class=5, seed=0)
    val = ds.select(eval_per_class=5, seed=1)
    return dataclasses.replace(few, x_val=val.x_val, y_val=val.y_val)


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup + call + teardown, summed over its tests), the 12 largest:
    where `make test`'s time goes (CI keeps it under 15 minutes on 2 cores)."""
    per_file = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) in ("setup", "call", "teardown") and \
                    hasattr(rep, "duration"):
                name = rep.nodeid.split("::")[0]
                per_file[name] = per_file.get(name, 0.0) + rep.duration
    if len(per_file) < 2:
        return
    terminalreporter.write_sep("=", "seconds per test file (the 12 largest)")
    for name, secs in sorted(per_file.items(), key=lambda kv: -kv[1])[:12]:
        terminalreporter.write_line(f"{secs:8.1f}s  {name}")
