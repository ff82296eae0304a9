"""The mahalanobis unknown score: fitted on features, stored in .h5/.keras, computed in the
graph of every float export (tlkit.deploy.feature_score)."""

import types
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest

from process_helpers import predict_in_fresh_process
from tlkit import calibrate
from tlkit.core.errors import TlkitError
from tlkit.deploy import artifacts, export, feature_score, saving


def _clusters(n=150, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n)
    return rng.normal(size=(3 * n, d)) + 5 * np.eye(3, d)[y], y


def test_scores_are_the_squared_distance_to_the_nearest_mean_under_the_covariance():
    f, y = _clusters()
    fs = feature_score.FeatureScore.fit(f, y, layer="head_pool", covariance="pooled")
    means = np.stack([f[y == c].mean(0) for c in range(3)])
    centred = f - means[y]
    prec = np.linalg.inv(centred.T @ centred / (len(f) - 1))
    x = np.random.default_rng(1).normal(size=(7, 5)) * 4
    want = np.min([np.einsum("nd,de,ne->n", x - m, prec, x - m) for m in means], axis=0)
    np.testing.assert_allclose(fs.scores(x), want, rtol=1e-4)
    # the Keras layer (what every export computes) gives the same, in float32
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Identity(name="head_pool")(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax")(model.output),
                                 model.output])
    scored = feature_score.scored_model(model, fs)
    np.testing.assert_allclose(scored.predict(x, verbose=0)[1], want, rtol=1e-4)


def _tiny_classifier():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _calibrated(tmp_path, suffix):
    model = _tiny_classifier()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (120, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 120)
    ds = types.SimpleNamespace(x_train=x[:60], y_train=y[:60], x_val=x[60:90], y_val=y[60:90],
                               x_test=x[90:], y_test=y[90:])
    cal = calibrate.calibrate_model(model, ds)
    unk = cal["unknown"]
    # no cached training features: fitted on the 30 validation images, the threshold set on
    # out-of-fold scores, the test coverage measured on the test pass's features
    assert unk["score"] == "mahalanobis" and unk["fit_images"] == 30
    assert unk["fit_on"].startswith("validation images (5-fold")
    assert 0.9 <= unk["val_coverage"] < 1 and unk["test_coverage"] is not None
    in_sample = unk["params"].scores(keras.Model(model.inputs, model.get_layer(
        "head_pool").output).predict(x[60:90], verbose=0))
    assert unk["threshold"] > np.quantile(in_sample, 0.95)  # out-of-fold: farther than in-fit
    path = saving.save(model, tmp_path / f"m{suffix}", {"class_names": ["a", "b", "c"],
                                                         "calibration": cal})
    return model, path, x, cal


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_the_model_file_stores_the_score_and_plain_keras_still_loads_it(tmp_path, suffix):
    model, path, x, cal = _calibrated(tmp_path, suffix)
    if suffix == ".h5":
        with h5py.File(path) as f:
            assert f[feature_score.H5_GROUP]["whiten"].shape == (6, 6)
    else:
        with zipfile.ZipFile(path) as zf:
            assert feature_score.ZIP_ENTRY in zf.namelist()
    meta = saving.read_metadata(path)
    assert feature_score.of(meta) == cal["unknown"]["params"]
    art = artifacts.load(path)
    probs, scores = art.predict_scored(x[:10])
    features = keras.Model(model.inputs, model.get_layer("head_pool").output).predict(
        x[:10], verbose=0)
    np.testing.assert_allclose(scores, cal["unknown"]["params"].scores(features), rtol=1e-4)
    got, tlkit_imported = predict_in_fresh_process(path, x[:10], tmp_path)
    assert not tlkit_imported
    np.testing.assert_allclose(got, probs, atol=1e-6)
    # rewriting the metadata without a feature score removes the arrays
    saving.write_metadata(path, {**meta, "calibration": None})
    assert feature_score.of(saving.read_metadata(path)) is None
    assert not artifacts.load(path).has_feature_score


def test_int8_tflite_leaves_the_score_out_and_reject_says_so(tmp_path):
    from tlkit.evaluation import predict

    _, path, x, _ = _calibrated(tmp_path, ".h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export.export(str(path), "tflite", str(tmp_path / "q.tflite"), quantize="int8",
                      sample=x[:32], representative=x[:32])
        export.export(str(path), "tflite", str(tmp_path / "f.tflite"), sample=x[:32])
    q = artifacts.load(tmp_path / "q.tflite")
    assert not q.has_feature_score and q.metadata["calibration"]["unknown"]["in_graph"] is False
    assert artifacts.load(tmp_path / "f.tflite").has_feature_score
    probs, scores, rejected = calibrate.apply_metadata(q.predict(x[:4]), q.metadata)
    assert np.isnan(scores).all() and not rejected.any()
    with pytest.raises(TlkitError, match="int8 TFLite exports leave it out"):
        predict.check_reject(q, tmp_path / "q.tflite", True)
    predict.check_reject(artifacts.load(tmp_path / "f.tflite"), "f.tflite", True)


def test_cached_features_fit_the_score_without_reading_an_image():
    """A head-only run hands calibration its cached features: nothing is predicted."""
    f, y = _clusters(n=40)
    model = types.SimpleNamespace(layers=[types.SimpleNamespace(name="head_pool")])
    ds = types.SimpleNamespace(y_val=y[::2], y_test=y[1::2], y_train=y)  # no images at all
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), len(y))
    cal = calibrate.calibrate_model(model, ds, val_probs=(probs[::2], y[::2]),
                                    test_probs=(probs[1::2], y[1::2]),
                                    features={"train": (f, y), "val": (f[::2], y[::2])})
    fs = cal["unknown"]["params"]
    assert cal["unknown"]["score"] == "mahalanobis" and cal["unknown"]["fit_images"] == len(y)
    assert cal["unknown"]["fit_on"] == "training images (cached features)"
    assert cal["unknown"]["threshold"] == calibrate.run.unknown.threshold(
        fs.scores(f[::2]), cal["unknown"]["coverage"])
