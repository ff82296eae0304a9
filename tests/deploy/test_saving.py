import h5py
import keras
import numpy as np
import pytest

from model_helpers import compile_and_build
from process_helpers import predict_in_fresh_process
from tlkit.models import backbones
from tlkit.deploy import saving
from tlkit.training import strategies, train
from tlkit.core.errors import TlkitError


@pytest.fixture(scope="module")
def trained(tiny_digits):
    bb = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)
    p = strategies.plan("large-similar", bb, epochs=2)
    return train.fit(p, tiny_digits, augment=False, verbose=0).model


def test_metadata_round_trip(trained, tmp_path, tiny_digits):
    path = saving.save(trained, tmp_path / "m.h5", {"class_names": tiny_digits.class_names,
                                                    "strategy": "large-similar",
                                                    "metrics": {"accuracy": np.float32(0.5)}})
    model, meta = saving.load(path)
    assert meta["class_names"] == tiny_digits.class_names
    assert meta["strategy"] == "large-similar" and meta["input_shape"] == [32, 32, 3]
    assert meta["tlkit_version"] and meta["metrics"]["accuracy"] == 0.5
    x = tiny_digits.x_test[:8].astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), trained.predict(x, verbose=0))
    assert not list(tmp_path.glob(".*tmp*"))


def test_transfer_model_loads_in_plain_keras(trained, tmp_path, tiny_digits):
    path = saving.save(trained, tmp_path / "digits.h5", {"class_names": tiny_digits.class_names})
    x = tiny_digits.x_test[:10].astype("float32")
    got, tlkit_imported = predict_in_fresh_process(path, x, tmp_path)
    assert not tlkit_imported
    np.testing.assert_array_equal(got, trained.predict(x, verbose=0))


def test_training_continues_from_loaded_model(trained, tmp_path, tiny_digits):
    path = saving.save(trained, tmp_path / "m.h5")
    model, _ = saving.load(path)
    compile_and_build(model, "adam", loss=keras.losses.SparseCategoricalCrossentropy())
    before = model.get_layer("predictions").get_weights()[0].copy()
    # 120 images in batches of 40: no smaller last batch for Keras to trace the step again.
    model.fit(tiny_digits.x_train.astype("float32"), tiny_digits.y_train, batch_size=40,
              epochs=1, verbose=0)
    assert not np.array_equal(before, model.get_layer("predictions").get_weights()[0])


def test_failed_save_leaves_existing_file_intact(trained, tmp_path, monkeypatch):
    path = saving.save(trained, tmp_path / "m.h5", {"version": 1})
    original = path.read_bytes()

    def broken_save(self, filepath, *a, **k):
        with open(filepath, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError):
        saving.save(trained, path, {"version": 2})
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]


def test_plain_keras_file_has_empty_metadata(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.save(tmp_path / "plain.h5")
    _, meta = saving.load(tmp_path / "plain.h5")
    assert meta == {}
    assert saving.class_names(model, meta) == ["0", "1"]


@pytest.mark.parametrize("target,match", [
    ("model.keras5", "must end with .h5 or .keras"),
    ("/proc/nope/m.h5", "cannot create folder|not writable"),
])
def test_bad_output_paths(trained, tmp_path, target, match):
    with pytest.raises(TlkitError, match=match):
        saving.save(trained, target if target.startswith("/") else tmp_path / target)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(TlkitError, match="Model file not found"):
        saving.load(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(TlkitError, match="bad.h5"):
        saving.load(bad)
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(TlkitError, match="empty.h5"):
        saving.load(tmp_path / "empty.h5")


def test_keras_format_keeps_metadata_and_loads_in_plain_keras(trained, tmp_path, tiny_digits):
    path = saving.save(trained, tmp_path / "digits.keras",
                       {"class_names": tiny_digits.class_names, "strategy": "large-similar"})
    model, meta = saving.load(path)
    assert meta["class_names"] == tiny_digits.class_names and meta["strategy"] == "large-similar"
    assert meta["input"] == {"shape": [32, 32, 3], **saving.INPUT_CONTRACT, "resize": "squash",
                             "interpolation": "bilinear", "antialias": False}
    import zipfile

    with zipfile.ZipFile(path) as zf:  # Keras's own entries, and tlkit's beside them
        assert {"config.json", "metadata.json", "model.weights.h5",
                saving.METADATA_ENTRY} <= set(zf.namelist())
    x = tiny_digits.x_test[:6].astype("float32")
    got, tlkit_imported = predict_in_fresh_process(path, x, tmp_path)
    assert not tlkit_imported
    np.testing.assert_array_equal(got, trained.predict(x, verbose=0))
    np.testing.assert_array_equal(model.predict(x, verbose=0), got)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.keras", "x.npy", "y.npy"]


def test_plain_keras_file_in_native_format(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(tmp_path / "plain.keras")
    assert saving.load(tmp_path / "plain.keras")[1] == {}
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(TlkitError, match="bad.keras"):
        saving.load(tmp_path / "bad.keras")
