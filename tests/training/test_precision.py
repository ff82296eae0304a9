"""Training precision (tlkit.training.precision): policies, the float32 model that comes out,
and auto's decisions."""

import keras
import numpy as np
import pytest

from model_helpers import finetune_tiny
from tlkit.core.errors import TlkitError
from tlkit.deploy import saving
from tlkit.training import precision


def _nested_classifier():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    base = keras.Model(inputs, x, name="base")
    outer_in = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D(name="pool")(base(outer_in, training=False))
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(h)
    return keras.Model(outer_in, out)


def test_with_policy_sets_every_nested_layer_but_the_softmax_and_keeps_the_weights():
    model = _nested_classifier()
    mixed = precision.with_policy(model, "mixed_bfloat16")
    assert mixed.get_layer("base").get_layer("conv").compute_dtype == "bfloat16"
    assert mixed.get_layer("pool").compute_dtype == "bfloat16"
    assert mixed.get_layer("predictions").compute_dtype == "float32"
    assert precision.policy_of(mixed) == "mixed_bfloat16"
    for a, b in zip(model.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    back = precision.to_float32(mixed)
    assert precision.policy_of(back) == "float32"
    assert all(layer.compute_dtype == "float32"
               for layer in back.get_layer("base").layers + back.layers)
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert precision.to_float32(model) is model


def test_a_bfloat16_run_trains_and_returns_and_saves_a_float32_model(tiny, tmp_path):
    out = tmp_path / "bf16.h5"
    result = finetune_tiny(tiny, strategy="large-dissimilar", precision="mixed_bfloat16",
                           out=str(out), calibrate="none")
    rec = result.report["precision"]
    assert rec == {"policy": "mixed_bfloat16", "requested": "mixed_bfloat16",
                   "reason": "requested"}
    # 10 classes, chance 0.1: it learned in bfloat16 (float32 reaches 0.79 on this split)
    assert result.report["accuracy"] > 0.5
    assert precision.policy_of(result.model) == "float32"
    loaded = keras.models.load_model(out)
    assert precision.policy_of(loaded) == "float32"
    x = np.asarray(result.dataset.x_test[:8], "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               result.model.predict(x, verbose=0), atol=1e-6)
    assert saving.read_metadata(out)["precision"]["policy"] == "mixed_bfloat16"


def test_explicit_policies_are_taken_and_unknown_ones_refused():
    assert precision.resolve("mixed_float16", trains_base=True).policy == "mixed_float16"
    with pytest.raises(TlkitError, match="precision.*'auto', 'float32', 'mixed_bfloat16'"):
        precision.resolve("fp8", trains_base=True)


def test_auto_keeps_float32_where_bfloat16_cannot_pay(monkeypatch):
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", True))
    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3)])
    assert "no base layer" in precision.resolve("auto", trains_base=False, model=small).reason
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", False))
    big = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Conv2D(2, 3)])
    choice = precision.resolve("auto", trains_base=True, model=big)
    assert choice.policy == "float32" and "no native bfloat16" in choice.reason


@pytest.mark.parametrize("f32, bf16, expected", [(1.0, 0.5, "mixed_bfloat16"),
                                                 (1.0, 0.95, "float32")])
def test_auto_follows_the_probe_and_caches_it(monkeypatch, tmp_path, f32, bf16, expected):
    monkeypatch.setenv("TLKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", True))
    calls = []
    monkeypatch.setattr(precision, "probe", lambda model, batch_size: calls.append(1) or
                        {"float32": f32, "mixed_bfloat16": bf16})
    big = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Conv2D(2, 3)])
    first = precision.resolve("auto", trains_base=True, model=big)
    again = precision.resolve("auto", trains_base=True, model=big)
    assert first.policy == again.policy == expected
    assert len(calls) == 1 and (tmp_path / "precision.json").is_file()
    assert first.to_dict()["probe_seconds_per_step"] == {"float32": f32, "mixed_bfloat16": bf16}


def test_a_resumed_run_keeps_the_policy_its_folder_recorded(monkeypatch, tmp_path):
    """auto's probe is a timing: a run resumed elsewhere (or with the cache cleared) must not
    train its second part in the other policy."""
    from tlkit.training import runs

    monkeypatch.setenv("TLKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", True))
    monkeypatch.setattr(precision, "probe", lambda model, batch_size:
                        {"float32": 1.0, "mixed_bfloat16": 0.5})
    big = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Conv2D(2, 3)])
    with runs.RunFolder(tmp_path / "run", {"a": 1}) as run:
        run.begin()
        assert run.recalled("precision") is None  # a new run: nothing to recall
        first = precision.resolve("auto", trains_base=True, model=big, run=run)
        assert run.recalled("precision") is None  # recorded, but this run is not resuming
        (run.phase_dir(0) / "epochs.json").write_text("[]")  # progress: the run resumes
    monkeypatch.setattr(precision, "probe", lambda model, batch_size:
                        {"float32": 1.0, "mixed_bfloat16": 2.0})  # another machine's timing
    (tmp_path / "cache" / "precision.json").unlink()
    with runs.RunFolder(tmp_path / "run", {"a": 1}) as run:
        assert run.resuming
        assert run.recalled("precision") == first.to_dict()
        again = precision.resolve("auto", trains_base=True, model=big, run=run)
    assert first.policy == again.policy == "mixed_bfloat16"
    assert again.reason.startswith("resumed run: probe")
    fresh = precision.resolve("auto", trains_base=True, model=big)
    assert fresh.policy == "float32"  # what the new probe alone would have chosen


def test_auto_takes_float16_on_gpus_with_tensor_cores_only(monkeypatch):
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [(8, 0)])
    assert precision.resolve("auto", trains_base=False).policy == "mixed_float16"
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [(6, 1)])
    assert precision.resolve("auto", trains_base=True).policy == "float32"


@pytest.mark.parametrize("classifier", [False, True])
def test_the_probe_times_both_policies_on_a_base_or_a_classifier(classifier):
    layers = [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3)]
    if classifier:
        layers += [keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    layers.insert(2, keras.layers.BatchNormalization())
    model = keras.Sequential(layers)
    before = [w.copy() for w in model.get_weights()]
    out = precision.probe(model, batch_size=4, steps=1)
    assert set(out) == {"float32", "mixed_bfloat16"} and all(v > 0 for v in out.values())
    for a, b in zip(before, model.get_weights()):  # it trained copies, not the run's base
        np.testing.assert_array_equal(a, b)
