import numpy as np
import pytest

from tlkit.models import backbones
from tlkit.training import feature_cache, frozen, strategies, train
from tlkit.core.errors import TlkitError


@pytest.fixture(scope="module")
def model():
    bb = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)
    return strategies.plan("small-similar", bb, epochs=1).build_model(10)


def test_reuse_by_content_key(model, tiny_digits, tmp_path):
    ext = frozen.feature_extractor(model)
    x = tiny_digits.x_train
    f1, i1 = feature_cache.get(ext, x, cache_dir=tmp_path, name="train", verbose=0)
    f2, i2 = feature_cache.get(ext, x, cache_dir=tmp_path, name="train", verbose=0)
    assert i1["where"] == "memory" and i2["where"] == "reused" and i1["key"] == i2["key"]
    np.testing.assert_array_equal(f1, f2)
    # other data -> other key, never the old file
    f3, i3 = feature_cache.get(ext, x[::-1].copy(), cache_dir=tmp_path, name="train", verbose=0)
    assert i3["where"] == "memory" and i3["key"] != i1["key"]
    np.testing.assert_allclose(f3, f1[::-1], rtol=1e-5, atol=1e-6)
    # other weights -> other key
    w = model.get_layer("mobilenet_v2").get_layer("Conv1")
    kernel = w.get_weights()
    w.set_weights([kernel[0] * 1.5])
    try:
        _, i4 = feature_cache.get(ext, x, cache_dir=tmp_path, name="train", verbose=0)
    finally:
        w.set_weights(kernel)
    assert i4["where"] == "memory" and i4["key"] != i1["key"]
    assert not list(tmp_path.glob(".*"))


def test_disk_when_over_memory_limit_trains_the_same(tiny_digits, tmp_path):
    bb = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)

    def run(limit, folder):
        p = strategies.plan("small-similar", bb, epochs=2)
        r = train.fit(p, tiny_digits, augment=False, verbose=0, seed=1, cache_dir=folder,
                      cache_memory_limit=limit)
        return r

    disk = run(0, tmp_path / "c")
    assert disk.info["cache"]["train"]["where"] == "disk"
    assert list((tmp_path / "c").glob("train-*.npy"))
    x = tiny_digits.x_test.astype("float32")
    feats = frozen.extract_features(disk.model, tiny_digits.x_test, verbose=0)
    np.testing.assert_allclose(frozen.head_model(disk.model).predict(feats, verbose=0),
                               disk.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_cached_and_uncached_paths_predict_the_same(model, tiny_digits):
    """Same weights: the assembled model equals the head on cached features."""
    feats = frozen.extract_features(model, tiny_digits.x_val, verbose=0)
    np.testing.assert_allclose(frozen.head_model(model).predict(feats, verbose=0),
                               model.predict(tiny_digits.x_val.astype("float32"), verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_unwritable_cache_dir(model, tiny_digits, capsys):
    ext = frozen.feature_extractor(model)
    f, info = feature_cache.get(ext, tiny_digits.x_val, cache_dir="/proc/nope", verbose=0)
    assert info["where"] == "memory" and "/proc/nope" in capsys.readouterr().out
    with pytest.raises(TlkitError, match="/proc/nope"):
        feature_cache.get(ext, tiny_digits.x_val, cache_dir="/proc/nope", memory_limit=0,
                          verbose=0)
    with pytest.raises(TlkitError, match="memory limit"):
        feature_cache.get(ext, tiny_digits.x_val, memory_limit=0, verbose=0)
