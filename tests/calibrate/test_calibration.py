"""tlkit.calibrate: temperature scaling, its metrics, the unknown threshold, and T in every
artifact a finetuned model is exported to."""

import json
import warnings

import keras
import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf

from tlkit import calibrate
from tlkit.deploy import feature_score, saving
from tlkit.calibrate import metrics, temperature, unknown
from tlkit.core.errors import TlkitError


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _planted(t_true, n=3000, c=6, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(z x t_true): T = t_true
    undoes it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2.5
    p_true = _softmax(z)
    y = (p_true.cumsum(1) > rng.uniform(size=(n, 1))).argmax(1)
    return _softmax(z * t_true), y


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_temperature_recovers_a_planted_temperature(t_true):
    probs, y = _planted(t_true)
    assert temperature.fit_temperature(probs, y) == pytest.approx(t_true, rel=0.08)


def test_scaling_an_over_confident_model_lowers_ece_and_nll_and_keeps_classes():
    probs, y = _planted(2.5, seed=1)  # over-confident: the model's logits are 2.5x too large
    val, test = slice(0, 1500), slice(1500, None)
    t = temperature.fit_temperature(probs[val], y[val])
    after = calibrate.apply(probs[test], t)
    assert t > 1.5
    assert metrics.ece(probs[test], y[test]) > 0.1
    assert metrics.ece(after, y[test]) < metrics.ece(probs[test], y[test]) / 3
    assert metrics.nll(after, y[test]) < metrics.nll(probs[test], y[test])
    np.testing.assert_array_equal(after.argmax(1), probs[test].argmax(1))


@pytest.mark.parametrize("coverage", [0.5, 0.9, 0.95, 1.0])
def test_threshold_keeps_the_requested_share_of_validation_images(coverage):
    probs, y = _planted(1.0, n=997, seed=2)
    s = unknown.scores(probs, "msp", 1.3)
    thr = unknown.threshold(s, coverage)
    kept = np.mean(~unknown.reject(s, thr))
    assert coverage <= kept <= coverage + 2 / len(s)


def test_calibrate_probs_reports_every_field_and_refuses_bad_input():
    probs, y = _planted(0.5, n=400, seed=3)
    cal = calibrate.run.calibrate_probs(probs[:200], y[:200], probs[200:], y[200:], 0.9)
    for key in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after",
                "brier_before", "brier_after"):
        assert np.isfinite(cal[key]), key
    assert cal["unknown"]["score"] == "entropy" and cal["unknown"]["val_coverage"] >= 0.9
    assert cal["error_at_90"] < cal["error_full"]  # the least confident are the most wrong
    with pytest.raises(TlkitError, match=r"\(0, 1\]"):
        calibrate.run.calibrate_probs(probs[:200], y[:200], probs[200:], y[200:], 1.5)
    with pytest.raises(TlkitError, match="19 images: fitting a temperature needs at least 20"):
        calibrate.run.calibrate_probs(probs[:19], y[:19], probs[200:], y[200:])
    assert calibrate.run.resolve_method(None, 19)[0] == "none"
    assert calibrate.run.resolve_method(None, 20) == ("temperature", None)


def test_risk_coverage_and_auroc():
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    cov, risk = metrics.risk_coverage(conf, [True, True, False, False])
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 0.5])
    assert metrics.auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert metrics.fpr_at_tpr(np.linspace(0, 1, 101), [0.5, 2.0]) == 0.5


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A digits classifier (zoo:simple_cnn, 16 px, 2 epochs) that finetune calibrated."""
    import tlkit

    out = tmp_path_factory.mktemp("calibrated") / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tlkit.finetune(data="digits", backbone="zoo:simple_cnn", weights=None,
                             strategy="large-dissimilar", epochs=2, image_size=16, out=str(out),
                             verbose=0, augment=False)
    return res, out


def test_finetune_reports_and_saves_the_calibration(calibrated):
    res, out = calibrated
    cal = res.report["calibration"]
    assert cal["temperature"] > 0 and cal["nll_after"] <= cal["nll_before"] + 1e-9
    report = json.loads((out.with_suffix("") / "report.json").read_text())
    assert report["calibration"]["temperature"] == cal["temperature"]
    assert (out.with_suffix("") / "reliability.png").stat().st_size > 1000
    assert "## Calibration" in (out.with_suffix("") / "model_card.md").read_text()
    meta = saving.read_metadata(out)
    assert meta["calibration"]["unknown"]["threshold"] == cal["unknown"]["threshold"]


def test_write_metadata_replaces_it_in_both_formats(calibrated, tmp_path):
    model, meta = saving.load(calibrated[1])
    for name in ("m.h5", "m.keras"):
        path = saving.save(model, tmp_path / name, meta)
        saving.write_metadata(path, {**meta, "calibration": {"temperature": 3.0}})
        assert saving.read_metadata(path)["calibration"] == {"temperature": 3.0}
        assert saving.load(path)[0].count_params() == model.count_params()
        assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []


def test_every_artifact_carries_t_and_the_threshold(calibrated, tmp_path):
    import tensorflow as tf

    from tlkit.deploy import artifacts, export

    model, meta = saving.load(calibrated[1])
    fs = feature_score.of(meta)
    assert fs is not None and meta["calibration"]["unknown"]["score"] == "mahalanobis"
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 16, 16, 1)).astype("float32")
    x[:8] = np.asarray(calibrated[0].dataset.x_test[:8], "float32")  # known images too
    raw = model.predict(x, verbose=0)
    features = keras.Model(model.inputs, model.get_layer(fs.layer).output).predict(x, verbose=0)
    want, want_s, want_r = calibrate.apply_metadata(raw, meta, fs.scores(features))
    assert 0 < want_r.sum() < len(x)  # the threshold separates: some kept, some rejected
    formats = [("keras", "m.keras"), ("savedmodel", "sm"), ("tflite", "m.tflite")]
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
        formats.append(("onnx", "m.onnx"))
    except ImportError:
        pass
    for fmt, name in formats:
        export.export(str(calibrated[1]), fmt, str(tmp_path / name), sample=x)
        art = artifacts.load(tmp_path / name)
        assert art.metadata["calibration"]["temperature"] == meta["calibration"]["temperature"]
        unk = dict(art.metadata["calibration"]["unknown"])
        params = unk.pop("params")
        assert unk.pop("in_graph", True) is True, fmt
        assert params == (fs if fmt == "keras" else fs.to_json()), fmt
        assert unk == {k: v for k, v in meta["calibration"]["unknown"].items()
                       if k != "params"}, fmt
        assert art.has_feature_score, fmt
        raw_got, scores = art.predict_scored(x)
        got, got_s, got_r = calibrate.apply_metadata(raw_got, art.metadata, scores)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=fmt)
        np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5 * want_s.max(),
                                   err_msg=fmt)
        np.testing.assert_array_equal(got_r, want_r)
    out = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](
        images=tf.constant(x))
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    np.testing.assert_array_equal(out["unknown"].numpy(), want_r)
    np.testing.assert_allclose(out["unknown_score"].numpy(), want_s, rtol=1e-5,
                               atol=1e-5 * want_s.max())
    assert not np.allclose(want, model.predict(x, verbose=0), atol=1e-3)  # T does something


def _clusters(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n)
    return rng.normal(size=(3 * n, d)) + 4 * np.eye(3, d)[y], y, rng


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "pooled"])
def test_mahalanobis_is_the_distance_to_the_nearest_class_mean(covariance):
    x, y, rng = _clusters()
    g = unknown.fit_gaussians(x, y, covariance=covariance)
    q = rng.normal(size=(7, x.shape[1])) * 3
    centred = x - g["means"][y]
    cov = (np.cov(centred.T) if covariance == "pooled" else
           ledoit_wolf(centred, assume_centered=True)[0])
    prec = np.linalg.inv(cov)
    want = [min((v - m) @ prec @ (v - m) for m in g["means"]) for v in q]
    np.testing.assert_allclose(unknown.mahalanobis_scores(q, g), want, rtol=1e-4)


def test_mahalanobis_scores_far_images_above_known_ones():
    x, y, rng = _clusters(seed=1)
    g = unknown.fit_gaussians(x[::2], y[::2])
    known = x[1::2]
    far = rng.normal(size=(100, x.shape[1])) + 12  # away from every class
    for relative in (False, True):
        s_known, s_far = (unknown.mahalanobis_scores(v, g, relative=relative)
                          for v in (known, far))
        assert metrics.auroc(s_known, s_far) > 0.99
    with pytest.raises(ValueError, match="covariance"):
        unknown.fit_gaussians(x, y, covariance="diagonal")


def test_entropy_score_ranks_uncertain_rows_higher_and_energy_only_below_t_1():
    p = np.array([[0.98, 0.01, 0.01], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    for t in (0.5, 1.0, 2.0):
        h = unknown.scores(p, "entropy", t)
        q = calibrate.apply(p, t).astype("float64")
        np.testing.assert_allclose(h, -(q * np.log(q)).sum(1), rtol=1e-5)
        assert h[0] < h[1] < h[2] and h[2] == pytest.approx(np.log(3))
    e = {t: unknown.scores(p, "energy", t) for t in (0.5, 1.0, 2.0)}
    assert e[0.5][0] < e[0.5][1] < e[0.5][2]  # (1 - T) x an entropy: right way round
    np.testing.assert_allclose(e[1.0], 0, atol=1e-6)  # says nothing
    assert e[2.0][0] > e[2.0][1] > e[2.0][2]  # backwards


def test_calibrate_probs_refuses_scores_the_artifacts_cannot_compute():
    probs, y = _planted(2.5, n=400, seed=4)  # over-confident: T > 1
    with pytest.raises(TlkitError, match="ranks images by uncertainty only for T < 1"):
        calibrate.run.calibrate_probs(probs[:200], y[:200], probs[200:], y[200:],
                                      score="energy")
    with pytest.raises(TlkitError, match="score must be one of msp, energy, entropy, "
                                         "mahalanobis"):
        calibrate.run.calibrate_probs(probs[:200], y[:200], probs[200:], y[200:], score="knn")
    with pytest.raises(TlkitError, match="computed from the model's features"):
        calibrate.run.calibrate_probs(probs[:200], y[:200], probs[200:], y[200:],
                                      score="mahalanobis")
    under, y = _planted(0.5, n=400, seed=4)  # under-confident: T < 1, energy is sound
    cal = calibrate.run.calibrate_probs(under[:200], y[:200], under[200:], y[200:],
                                        score="energy")
    assert cal["temperature"] < 1 and cal["unknown"]["score"] == "energy"


def test_probabilities_already_fitted_on_val_keep_t_1_bit_for_bit():
    """A solved head fits its scale on val (tlkit.training.head_solver): T is then 1.0
    exactly, and the calibrated probabilities, ECE and NLL are the raw ones."""
    probs, y = _planted(2.0, n=1000, seed=5)
    fitted = calibrate.apply(probs, temperature.fit_temperature(probs[:500], y[:500]))
    assert temperature.fit_temperature(fitted[:500], y[:500]) == 1.0
    cal = calibrate.run.calibrate_probs(fitted[:500], y[:500], fitted[500:], y[500:])
    assert cal["temperature"] == 1.0
    assert cal["nll_after"] == cal["nll_before"] and cal["ece_after"] == cal["ece_before"]


def test_calibrate_model_predicts_nothing_it_is_given(tmp_path):
    import types

    probs, y = _planted(1.5, n=600, seed=6)
    ds = types.SimpleNamespace(y_val=y[:300], y_test=y[300:])
    cal = calibrate.calibrate_model(None, ds, out_dir=tmp_path, val_probs=(probs[:300], y[:300]),
                                    test_probs=(probs[300:], y[300:]))
    assert cal == {**calibrate.run.calibrate_probs(probs[:300], y[:300], probs[300:],
                                                   y[300:]), "files": cal["files"]}
    assert (tmp_path / "reliability.png").stat().st_size > 1000


def test_reliability_figure_has_both_diagrams_and_their_histograms():
    from tlkit.calibrate import plots

    probs, y = _planted(1.5, n=300, seed=7)
    fig = plots.reliability_figure(probs, calibrate.apply(probs, 1.4), y, 1.4)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 4 and titles[0].startswith("before: ECE")
    assert titles[2].startswith("after (T = 1.4): ECE")
    assert [ax.get_xlabel() for ax in fig.axes[1::2]] == ["confidence (max probability)"] * 2
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert len(heights) == metrics.BINS and sum(heights) == pytest.approx(1.0)


@pytest.mark.parametrize("score", ["msp", "energy", "entropy"])
def test_the_savedmodel_graph_computes_each_exported_score_as_numpy_does(score, tmp_path):
    """serving_default's unknown_score equals tlkit.calibrate.unknown.scores (T < 1, where
    energy is sound too)."""
    import keras
    import tensorflow as tf

    from tlkit.deploy import saved_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(0, 2, (16, 4)).astype("float32")
    meta = {"class_names": ["a", "b", "c"], "calibration": {
        "temperature": 0.7, "unknown": {"score": score, "threshold": 0.4}}}
    saved_model.write_savedmodel(model, tmp_path / "sm", meta, tmp_path)
    got = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](
        images=tf.constant(x))
    want = unknown.scores(model.predict(x, verbose=0), score, 0.7)
    np.testing.assert_allclose(got["unknown_score"].numpy(), want, atol=1e-5)
    np.testing.assert_array_equal(got["unknown"].numpy(), want > 0.4)
