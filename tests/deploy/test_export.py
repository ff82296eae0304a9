"""Tests for tlkit.deploy.export: SavedModel / TFLite / .keras match Keras; atomic writes; errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from model_helpers import compile_and_build
from tlkit.deploy import artifacts
from tlkit.deploy import export as ex
from tlkit.core.errors import TlkitError

SIZE = 24


def patch_images(n, rng):
    """Noise images; class 1 has a bright square, class 2 a bright bar, class 0 nothing."""
    x = rng.uniform(0, 100, (n, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    for i in range(n):
        r, c = rng.integers(0, SIZE - 8, 2)
        if y[i] == 1:
            x[i, r:r + 8, c:c + 8] = 255
        elif y[i] == 2:
            x[i, r:r + 8, c + 3:c + 5] = 255
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A small trained classifier with its preprocessing (Rescaling) inside, and test images."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = patch_images(512, rng)
    x_test, _ = patch_images(16, rng)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = layers.Conv2D(16, 3, activation="relu", name="c1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.MaxPooling2D(name="p1")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    compile_and_build(model, keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=4, batch_size=32, verbose=0)
    return model, x_test


def listing(folder):
    return sorted(os.listdir(folder))


def test_savedmodel_matches_keras(tmp_path, trained):
    model, x = trained
    result = ex.export(model, "savedmodel", tmp_path / "sm", sample=x)
    assert result.path == str(tmp_path / "sm") and (tmp_path / "sm" / "saved_model.pb").exists()
    assert result.max_abs_diff <= result.tolerance == ex.FLOAT_TOLERANCE
    assert result.top1_agreement == 1.0 and result.size_bytes > 10_000
    # Raw pixels in: the artifact needs no preprocessing outside it.
    loaded = tf.saved_model.load(result.path)
    got = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4)
    assert listing(tmp_path) == ["sm"]  # no temporary folder left

    again = ex.export(model, "savedmodel", tmp_path / "sm")  # replaces the old SavedModel
    assert again.max_abs_diff <= 1e-4 and listing(tmp_path) == ["sm"]


@pytest.mark.parametrize("quantize", ["none", "dynamic", "float16"])
def test_tflite_matches_keras(tmp_path, trained, quantize):
    model, x = trained
    result = ex.export(model, "tflite", tmp_path / "m.tflite", quantize, sample=x)
    assert result.max_abs_diff <= result.tolerance
    assert result.tolerance == (ex.FLOAT_TOLERANCE if quantize == "none"
                                else ex.QUANT_TOLERANCES[quantize])
    assert result.top1_agreement == 1.0
    assert result.size_bytes == os.path.getsize(result.path)
    got = ex.run_tflite(result.path, x[:3])
    np.testing.assert_allclose(got, model.predict(x[:3], verbose=0), atol=result.tolerance)
    assert listing(tmp_path) == ["m.labels.txt", "m.tflite", "m.tlkit.json"]
    assert result.files == tuple(str(tmp_path / n) for n in ("m.tflite", "m.labels.txt",
                                                             "m.tlkit.json"))


def test_quantized_tflite_is_smaller(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(4, activation="softmax")(x))
    sizes = {q: ex.export(model, "tflite", tmp_path / f"{q}.tflite", q).size_bytes
             for q in ("none", "dynamic", "float16")}
    assert sizes["dynamic"] < 0.35 * sizes["none"]
    assert sizes["float16"] < 0.6 * sizes["none"]


def test_keras_round_trip_from_h5(tmp_path, trained):
    model, x = trained
    h5 = tmp_path / "tiny.h5"
    model.save(h5)
    result = ex.export(str(h5), "keras", tmp_path / "tiny.keras")
    assert result.max_abs_diff == 0.0 and result.top1_agreement == 1.0
    reloaded = keras.models.load_model(result.path, compile=False)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_nested_transfer_model_to_tflite(tmp_path):
    """The tlkit layout (nested MobileNetV2 base with its Rescaling) converts and matches."""
    keras.utils.set_random_seed(1)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                          include_top=False, weights=None)
    inputs = keras.Input((32, 32, 3))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dropout(0.2)(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="predictions")(x))
    h5 = tmp_path / "transfer.h5"
    model.save(h5)
    result = ex.export(h5, "tflite", tmp_path / "transfer.tflite")
    assert result.max_abs_diff <= 1e-4 and result.top1_agreement == 1.0


def test_bad_arguments(tmp_path, trained):
    model, _ = trained
    with pytest.raises(TlkitError, match=r"Invalid fmt='coreml'.*'savedmodel', 'tflite', 'keras'"):
        ex.export(model, "coreml", tmp_path / "m.mlmodel")
    with pytest.raises(TlkitError, match=r"Invalid quantize='int4'.*'dynamic', 'float16'"):
        ex.export(model, "tflite", tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(TlkitError, match="quantize='dynamic' needs fmt='tflite'"):
        ex.export(model, "savedmodel", tmp_path / "sm", quantize="dynamic")
    with pytest.raises(TlkitError, match="must end with '.keras'"):
        ex.export(model, "keras", tmp_path / "m.h5")
    with pytest.raises(TlkitError, match="must end with '.tflite'"):
        ex.export(model, "tflite", tmp_path / "m.bin")
    with pytest.raises(TlkitError, match="must end with '.onnx'"):
        ex.export(model, "onnx", tmp_path / "m.bin")
    with pytest.raises(TlkitError, match="int8 quantization needs representative images"):
        ex.export(model, "tflite", tmp_path / "m.tflite", quantize="int8")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(TlkitError, match="Cannot write .*a_file/sub/m.tflite"):
        ex.export(model, "tflite", blocker / "sub" / "m.tflite")
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(TlkitError, match="not a SavedModel is in the way"):
        ex.export(model, "savedmodel", folder)
    with pytest.raises(TlkitError, match=r"sample must be a batch of shape \(n, 24, 24, 3\)"):
        ex.export(model, "keras", tmp_path / "m.keras", sample=np.zeros((2, 8, 8, 3)))
    with pytest.raises(TlkitError, match="Model file .* does not exist"):
        ex.export(tmp_path / "missing.h5", "keras", tmp_path / "m.keras")
    assert listing(tmp_path) == ["a_file", "photos"]


def test_out_of_tolerance_writes_nothing(tmp_path, trained, monkeypatch):
    model, _ = trained
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old artifact")
    monkeypatch.setattr(ex, "FLOAT_TOLERANCE", -1.0)  # every difference is now too large
    with pytest.raises(TlkitError, match="differs from the Keras model by .* nothing was written"):
        ex.export(model, "tflite", out)
    assert listing(tmp_path) == ["m.tflite"] and out.read_bytes() == b"old artifact"


def test_default_sample():
    a, b = ex.default_sample((8, 8, 3)), ex.default_sample((8, 8, 3))
    assert a.shape == (8, 8, 8, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 255
    with pytest.raises(TlkitError, match="pass sample="):
        ex.default_sample((None, None, 3))


NAMES = ["none", "square", "bar"]


def test_savedmodel_signature_returns_class_names(tmp_path, trained):
    model, x = trained
    result = ex.export(model, "savedmodel", tmp_path / "sm", sample=x, metadata={
        "class_names": NAMES})
    assert (tmp_path / "sm" / "assets" / "labels.txt").read_text().splitlines() == NAMES
    loaded = tf.saved_model.load(result.path)
    out = loaded.signatures["serving_default"](images=tf.constant(x[:4]))
    probs = out["probabilities"].numpy()
    np.testing.assert_allclose(probs, model.predict(x[:4], verbose=0), atol=1e-5)
    names = out["class_names"].numpy().astype(str)
    assert names.shape == (4, 3) and names[0].tolist() == NAMES
    assert out["top_class"].numpy().astype(str).tolist() == [NAMES[i] for i in probs.argmax(1)]
    art = artifacts.load(result.path)
    assert art.kind == "savedmodel" and art.class_names == NAMES
    assert art.metadata["input"]["range"] == [0, 255] and art.input_shape == (SIZE, SIZE, 3)


def test_int8_full_integer_quantization(tmp_path, trained):
    model, x = trained
    rep, _ = patch_images(64, np.random.default_rng(5))
    result = ex.export(model, "tflite", tmp_path / "q.tflite", "int8", sample=x,
                       metadata={"class_names": NAMES}, representative=rep)
    interp = artifacts.tflite_interpreter(result.path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8  # integer only, in and out
    assert result.tolerance == ex.QUANT_TOLERANCES["int8"] and result.top1_agreement == 1.0
    assert result.max_abs_diff <= result.tolerance
    art = artifacts.load(result.path)
    assert art.class_names == NAMES and art.input_dtype == "uint8"
    assert art.metadata["input"]["quantization"]["scale"] > 0
    assert (tmp_path / "q.labels.txt").read_text() == "none\nsquare\nbar\n"
    float_size = ex.export(model, "tflite", tmp_path / "f.tflite").size_bytes
    assert result.size_bytes < 0.5 * float_size


def test_onnx_matches_keras(tmp_path, trained):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    model, x = trained
    result = ex.export(model, "onnx", tmp_path / "m.onnx", sample=x,
                       metadata={"class_names": NAMES})
    assert result.max_abs_diff <= ex.FLOAT_TOLERANCE and result.top1_agreement == 1.0
    art = artifacts.load(result.path)
    assert art.kind == "onnx" and art.class_names == NAMES
    np.testing.assert_allclose(art.predict(x), model.predict(x, verbose=0), atol=1e-4)
    assert listing(tmp_path) == ["m.onnx"]
