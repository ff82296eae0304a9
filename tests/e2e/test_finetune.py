"""tlkit.finetune end to end, as a Python user calls it."""

import json

import keras
import numpy as np
import pytest

import tlkit
from model_helpers import compile_and_build
from process_helpers import predict_in_fresh_process
from tlkit import data
from tlkit.deploy import saving
from tlkit.training import strategies


def pixels(x):
    """float32 pixels of a split: folders stream as files, decoded here to compare models."""
    return np.asarray(x.to_numpy() if data.is_files(x) else x, "float32")


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_every_strategy_end_to_end(strategy, image_folder, tmp_path):
    out = tmp_path / f"{strategy}.h5"
    # tests/training/test_train.py runs every strategy on MobileNetV2; here a small zoo backbone with
    # BN and three stages keeps the end-to-end path fast.
    result = tlkit.finetune(data=str(image_folder), backbone="zoo:resnet_small", weights=None,
                            strategy=strategy, epochs=2, image_size=32, out=out, verbose=0,
                            val_fraction=0.2, test_fraction=0.2)
    assert 0.0 <= result.report["accuracy"] <= 1.0
    assert result.report["n"] == len(result.dataset.y_test) > 0
    assert [p.name for p in result.plan.phases][0] in ("head", "full")
    model, meta = saving.load(out)
    assert meta["strategy"] == strategy and meta["class_names"] == ["circle", "square", "stripes"]
    assert meta["data"]["counts"]["train"] == len(result.dataset.y_train)
    assert "accuracy" in meta["metrics"]
    x = pixels(result.dataset.x_test)
    np.testing.assert_array_equal(model.predict(x, verbose=0), result.model.predict(x, verbose=0))
    rep = json.loads((tmp_path / strategy / "report.json").read_text())
    assert rep["plan"]["strategy"] == strategy
    # The final model is the best val_loss epoch of the run, whichever phase reached it.
    assert rep["best"]["val_loss"] == pytest.approx(min(rep["history"]["val_loss"]))
    for key in ("schedule", "lr_decay_per_stage", "label_smoothing", "class_weight", "mixup",
                "cutmix", "best"):
        assert key in rep and key in meta, key


def test_saved_classifier_is_a_backbone(tmp_path, tiny_digits):
    """Train on digits 0-4 from scratch, then transfer the saved .h5 to digits 5-9."""
    source = tiny_digits.select(classes=["0", "1", "2", "3", "4"])
    target = tiny_digits.select(classes=["5", "6", "7", "8", "9"])
    src = tlkit.finetune(data=source, backbone="zoo:fashion_cnn", weights=None,
                         strategy="large-dissimilar", epochs=2, image_size=28,
                         out=tmp_path / "source.h5", augment=False, verbose=0)
    res = tlkit.finetune(data=target, backbone=str(tmp_path / "source.h5"),
                         strategy="small-similar", epochs=2, out=tmp_path / "target.h5",
                         augment=False, verbose=0)
    base = res.plan.base_of(res.model)
    src_conv = src.model.get_layer(res.plan.base_of(src.model).name).get_layer("block2_conv")
    np.testing.assert_array_equal(base.get_layer("block2_conv").get_weights()[0],
                                  src_conv.get_weights()[0])
    assert res.model.output_shape == (None, 5)
    x = pixels(res.dataset.x_test[:5])
    got, tlkit_imported = predict_in_fresh_process(tmp_path / "target.h5", x, tmp_path)
    assert not tlkit_imported
    np.testing.assert_array_equal(got, res.model.predict(x, verbose=0))


def test_tfds_mock_source(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        res = tlkit.finetune(data="tfds:mnist", backbone="zoo:simple_cnn", weights=None,
                             strategy="small-similar", epochs=1, verbose=0, augment=False)
    assert res.model.input_shape == (None, 28, 28, 1)
    assert len(res.dataset.class_names) == 10


def test_continue_training_from_loaded(tmp_path, tiny_digits):
    res = tlkit.finetune(data=tiny_digits, backbone="zoo:simple_cnn", weights=None,
                         strategy="large-dissimilar", epochs=1, out=tmp_path / "m.h5",
                         augment=False, verbose=0)
    model, meta = saving.load(tmp_path / "m.h5")
    compile_and_build(model, keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    h = model.fit(pixels(res.dataset.x_train), res.dataset.y_train, epochs=1,
                  verbose=0)
    assert np.isfinite(h.history["loss"][0])
