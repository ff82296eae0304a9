"""Tests for tlkit.explain: Grad-CAM (flat and nested bases), feature maps, filters, files."""

import json
import math
import os

import h5py
import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from model_helpers import compile_and_build
from tlkit import explain
from tlkit.models import zoo
from tlkit.models.blocks import classifier_head, conv_bn_act
from tlkit.core.errors import TlkitError

CLASSES = ["blank", "square", "cross"]


# ---------------------------------------------------------------------------------------------
# helpers


def patch_images(n, rng, size=32):
    """Noise images (0..100); class 1 has a filled 8x8 square, class 2 a cross, class 0 none.

    The pattern sits in a random quadrant, independent of the class, so the class says what
    the evidence looks like and the quadrant says where it is.
    """
    x = rng.uniform(0, 100, (n, size, size, 1)).astype("float32")
    y = rng.integers(0, 3, n)
    quadrant = rng.integers(0, 4, n)
    half = size // 2
    for i in range(n):
        r = (quadrant[i] // 2) * half + rng.integers(2, half - 10)
        c = (quadrant[i] % 2) * half + rng.integers(2, half - 10)
        if y[i] == 1:
            x[i, r:r + 8, c:c + 8] = 255
        elif y[i] == 2:
            x[i, r + 3:r + 5, c:c + 8] = 255
            x[i, r:r + 8, c + 3:c + 5] = 255
    return x, y, quadrant


def tiny_cnn(num_classes=3, size=32):
    """Rescaling, three conv blocks (32 -> 16 -> 8 px), GAP head: a Grad-CAM-friendly net."""
    inputs = keras.Input((size, size, 1))
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = conv_bn_act(x, 16, 3, bn="none", name="c1")
    x = layers.MaxPooling2D(name="p1")(x)
    x = conv_bn_act(x, 32, 3, bn="none", name="c2")
    x = layers.MaxPooling2D(name="p2")(x)
    x = conv_bn_act(x, 32, 3, bn="none", name="c3")
    return keras.Model(inputs, classifier_head(x, num_classes, pooling="avg"), name="tiny_cnn")


def transfer_model(size=64, num_classes=3):
    """The tlkit transfer layout: Input -> nested MobileNetV2 base -> GAP -> Dropout -> Dense."""
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35,
                                          include_top=False, weights=None)
    inputs = keras.Input((size, size, 3), name="image")
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="transfer")


def quadrant_of(heatmap):
    r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return int(r >= heatmap.shape[0] / 2) * 2 + int(c >= heatmap.shape[1] / 2)


def write_png(path, array):
    Image.fromarray(np.asarray(array, dtype="uint8")).save(path)
    return str(path)


@pytest.fixture(scope="module")
def saved_transfer(tmp_path_factory):
    """A nested-base transfer model saved to .h5 with tlkit metadata, and loaded back."""
    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("models") / "pets.h5"
    transfer_model().save(path)
    with h5py.File(path, "a") as f:
        f.attrs["tlkit_metadata"] = json.dumps({"class_names": ["cat", "dog", "fish"],
                                                "input_shape": [64, 64, 3]})
    return path, keras.models.load_model(path, compile=False)


# ---------------------------------------------------------------------------------------------
# Grad-CAM


def test_gradcam_points_at_the_evidence():
    """Honesty: a net trained to tell a square from a cross finds them wherever they are."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train, _ = patch_images(768, rng)
    x_test, y_test, quadrant = patch_images(40, rng)
    model = tiny_cnn()
    compile_and_build(model, keras.optimizers.Adam(3e-3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    assert model.evaluate(x_test, y_test, verbose=0)[1] >= 0.9

    hits = []
    for i in np.flatnonzero(y_test > 0):  # blank images have no evidence to point at
        heatmap, k, probs = explain.gradcam(model, x_test[i])
        assert heatmap.shape == (8, 8)  # c3_relu, the last conv output
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
        hits.append(quadrant_of(heatmap) == quadrant[i])
    assert np.mean(hits) >= 0.8, f"Grad-CAM peak in the pattern's quadrant for {np.mean(hits):.0%}"


def test_gradcam_nested_equals_flat():
    """The nested path (clone + split base) gives the same heatmap as the same layers flat."""
    keras.utils.set_random_seed(2)
    base_in = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(base_in)
    x = layers.MaxPooling2D(name="p1")(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    base = keras.Model(base_in, x, name="base")
    pool, dense = layers.GlobalAveragePooling2D(), layers.Dense(4, activation="softmax")

    inp = keras.Input((16, 16, 3))
    nested = keras.Model(inp, dense(pool(base(inp))))
    inp2 = keras.Input((16, 16, 3))
    y = inp2
    for layer in base.layers[1:]:
        y = layer(y)
    flat = keras.Model(inp2, dense(pool(y)))

    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3))
    for layer in ("c1", "c2", "base/c2"):
        h_nested, k_nested, p_nested = explain.gradcam(nested, image, 2, layer)
        h_flat, k_flat, p_flat = explain.gradcam(flat, image, 2, layer.split("/")[-1])
        np.testing.assert_allclose(h_nested, h_flat, atol=1e-6)
        np.testing.assert_allclose(p_nested, p_flat, atol=1e-6)
    assert explain.conv_layers(nested) == ["c1", "p1", "c2"]


def test_gradcam_on_saved_transfer_model(saved_transfer):
    _, model = saved_transfer
    image = np.random.default_rng(0).uniform(0, 255, (64, 64, 3))
    usable = explain.conv_layers(model)
    assert "Conv_1" in usable and "block_6_expand_relu" in usable

    heatmap, k, probs = explain.gradcam(model, image)  # default: out_relu, 64 / 32 = 2 px
    assert heatmap.shape == (2, 2) and heatmap.dtype == np.float32
    np.testing.assert_allclose(probs, model.predict(image[None], verbose=0)[0], atol=1e-6)
    assert k == int(np.argmax(probs))

    heatmap, k, _ = explain.gradcam(model, image, class_index=1, layer="Conv_1")
    assert heatmap.shape == (2, 2) and k == 1
    heatmap, _, _ = explain.gradcam(model, image, layer="block_6_expand_relu")
    assert heatmap.shape == (8, 8)
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0

    with pytest.raises(TlkitError, match=r"'Conv_9' does not exist.*Usable conv layers: .*Conv_1"):
        explain.gradcam(model, image, layer="Conv_9")
    with pytest.raises(TlkitError, match="'predictions' has no spatial"):
        explain.gradcam(model, image, layer="predictions")
    with pytest.raises(TlkitError, match="class_index"):
        explain.gradcam(model, image, class_index=3)
    with pytest.raises(TlkitError, match="shape"):
        explain.gradcam(model, image[:32])


def test_default_layers():
    model = transfer_model()
    assert explain.default_layers(model) == [
        "block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
        "block_13_expand_relu", "out_relu"]
    simple = zoo.build("simple_cnn", (28, 28, 1), 10, dropout=0)
    assert explain.default_layers(simple) == ["block1_conv", "block2_conv", "block2_relu"]


# ---------------------------------------------------------------------------------------------
# feature maps and filters


def test_feature_map_pngs(tmp_path):
    model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    image = np.random.default_rng(0).uniform(0, 255, (28, 28, 1))
    maps = explain.feature_maps(model, image, ["block1_relu", "block2_pool"])
    assert maps["block1_relu"].shape == (28, 28, 32) and maps["block2_pool"].shape == (6, 6, 64)

    # 32 channels: 6 x 6 grid of 28 px maps upscaled x2; 64 channels: 8 x 8 of 6 px maps x6.
    for fmap, (n_side, tile) in zip(maps.values(), [(6, 56), (8, 36)]):
        side = n_side * tile + (n_side - 1)
        assert explain.feature_grid(fmap).shape == (side, side, 3)

    fig = explain.feature_maps_figure(maps["block2_pool"], "block2_pool", "shoe")
    ax = fig.axes[0]
    assert "shoe" in ax.get_title() and "block2_pool" in ax.get_title()
    assert "64 channels" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(64)]
    fig = explain.feature_maps_figure(np.random.rand(4, 4, 100), "wide")
    assert "channels 0-63 of 100" in fig.axes[0].get_title() and len(fig.axes[0].texts) == 64

    paths = explain.save_feature_maps(maps, tmp_path, "shoe")
    assert [os.path.basename(p) for p in paths] == ["shoe_block1_relu_maps.png",
                                                    "shoe_block2_pool_maps.png"]
    for path in paths:
        with Image.open(path) as img:
            assert min(img.size) >= 300 and img.mode in ("RGB", "RGBA")
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~current_umask()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.startswith(".")]


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_feature_grid_caps_channels():
    grid = explain.feature_grid(np.random.rand(2, 2, 1280))  # 64 tiles of 32 px, 8 x 8
    assert grid.shape == (8 * 32 + 7, 8 * 32 + 7, 3)
    rows, cols = explain.grid_shape(10)
    assert (rows, cols) == (3, 4) and rows * cols >= 10 and cols == math.ceil(math.sqrt(10))


def test_gradcam_figure_is_readable(tmp_path):
    """A 28x28 input: each panel at least 224 px, the class and probability, a colorbar."""
    image = np.random.default_rng(0).uniform(0, 255, (28, 28, 1))
    heatmap = np.zeros((7, 7), "float32")
    heatmap[1, 5] = 1.0
    fig = explain.gradcam_figure(image, heatmap, label="Sandal", probability=0.8766,
                                 layer="block2_relu", predicted=("Bag", 0.9))
    fig.canvas.draw()
    original, overlay, bar = fig.axes
    for ax in (original, overlay):
        box = ax.get_window_extent()
        assert min(box.width, box.height) >= explain.MIN_SIDE
        assert ax.images[0].get_array().shape[:2] == (224, 224)  # 28 px enlarged x8
    assert "Sandal" in fig._suptitle.get_text() and "0.877" in fig._suptitle.get_text()
    assert "predicted: Bag" in fig._suptitle.get_text()
    assert "block2_relu" in overlay.get_title() and "28x28" in original.get_title()
    assert bar.get_ylim() == (0.0, 1.0)  # the colorbar of the heatmap
    # The evidence is drawn where the heatmap has it: top right red, bottom left blue.
    flat = explain.gradcam_figure(np.full((28, 28, 1), 128.0), heatmap, label="x",
                                  probability=1.0)
    pic = flat.axes[1].images[0].get_array().astype(int)
    assert pic[48, 176, 0] > pic[48, 176, 2] + 40 and pic[200, 20, 2] > pic[200, 20, 0] + 40

    path = explain.save_gradcam(image, heatmap, tmp_path / "g.png", label="Sandal",
                                probability=0.5)
    with Image.open(path) as img:
        assert img.size[0] >= 2 * explain.MIN_SIDE and img.size[1] >= explain.MIN_SIDE
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~current_umask()


def test_first_layer_filters(tmp_path, saved_transfer):
    _, model = saved_transfer
    filters = explain.first_layer_filters(model)  # MobileNetV2's Conv1, after its Rescaling
    assert filters.shape == (3, 3, 3, 16)
    assert explain.filter_grid(filters).shape == (4 * 33 + 3, 4 * 33 + 3, 3)  # 4 x 4, 3 px x 11
    fig = explain.filters_figure(filters, "Conv1")
    assert "Conv1" in fig.axes[0].get_title() and len(fig.axes[0].texts) == 16
    path = explain.save_filter_grid(filters, tmp_path / "filters.png", layer="Conv1")
    with Image.open(path) as img:
        assert min(img.size) >= 224

    mlp = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(TlkitError, match="not a Conv2D"):
        explain.first_layer_filters(mlp)


# ---------------------------------------------------------------------------------------------
# explain_path


def test_explain_path_gradcam_and_maps(tmp_path, saved_transfer):
    model_path, _ = saved_transfer
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    write_png(images / "a.png", rng.integers(0, 255, (50, 80, 3)))
    write_png(images / "b.jpg", rng.integers(0, 255, (90, 90)))  # grayscale: becomes RGB
    (images / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"

    paths = explain.explain_path(model_path, images, "gradcam", class_name="dog", out_dir=out)
    assert sorted(os.path.basename(p) for p in paths) == ["a_gradcam_dog.png",
                                                          "b_gradcam_dog.png"]
    for p in paths:
        with Image.open(p) as img:  # original and overlay side by side, 64 px enlarged x4
            assert img.size[0] >= 2 * 224 and img.size[1] >= 224

    paths = explain.explain_path(model_path, images / "a.png", "gradcam", class_name=2,
                                 out_dir=out)
    assert [os.path.basename(p) for p in paths] == ["a_gradcam_fish.png"]

    paths = explain.explain_path(model_path, images / "a.png", "feature-maps",
                                 layer="block_3_expand_relu", out_dir=out)
    assert [os.path.basename(p) for p in paths] == ["a_block_3_expand_relu_maps.png"]

    paths = explain.explain_path(model_path, None, "filters", out_dir=out)
    assert [os.path.basename(p) for p in paths] == ["pets_filters.png"]
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_explain_path_errors(tmp_path, saved_transfer):
    model_path, _ = saved_transfer
    good = write_png(tmp_path / "good.png", np.zeros((64, 64, 3)))
    bad = tmp_path / "folder"
    bad.mkdir()
    write_png(bad / "1_ok.png", np.zeros((64, 64, 3)))
    (bad / "2_broken.png").write_bytes(b"this is no png")
    out = tmp_path / "out"

    with pytest.raises(TlkitError, match="Invalid method='saliency'.*'gradcam'"):
        explain.explain_path(model_path, good, "saliency", out_dir=out)
    with pytest.raises(TlkitError, match="Unknown class name 'horse'.*cat, dog, fish"):
        explain.explain_path(model_path, good, "gradcam", class_name="horse", out_dir=out)
    with pytest.raises(TlkitError, match="Layer 'nope' does not exist.*Usable conv layers"):
        explain.explain_path(model_path, good, "feature-maps", layer="nope", out_dir=out)
    with pytest.raises(TlkitError, match="missing.png' does not exist"):
        explain.explain_path(model_path, tmp_path / "missing.png", out_dir=out)
    with pytest.raises(TlkitError, match=r"alpha must be in \[0, 1\]"):
        explain.explain_path(model_path, good, out_dir=out, alpha=1.5)
    # One unreadable image with on_bad_image="error": an error naming it, and nothing
    # written for the others either.
    with pytest.raises(TlkitError, match="Cannot read image .*2_broken.png: not a readable "
                                         "image. Pass --on-bad-image skip"):
        explain.explain_path(model_path, bad, "gradcam", out_dir=out, on_bad_image="error")
    assert not out.exists()  # no empty output folder left behind either
    with pytest.raises(TlkitError, match="Cannot read image .*2_broken.png: not a readable"):
        explain.explain_path(model_path, bad / "2_broken.png", "gradcam", out_dir=out)
    assert not out.exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(TlkitError, match="--out .*a_file.*cannot create"):
        explain.explain_path(model_path, good, out_dir=blocker / "sub")
    with pytest.raises(TlkitError, match="Model file not found: .*none.h5"):
        explain.explain_path(tmp_path / "none.h5", good, out_dir=out)


def test_explain_path_skips_and_counts_unreadable_images(tmp_path, saved_transfer):
    model_path, _ = saved_transfer
    folder = tmp_path / "folder"
    folder.mkdir()
    write_png(folder / "1_ok.png", np.zeros((64, 64, 3)))
    (folder / "2_broken.png").write_bytes(b"this is no png")
    skipped = []
    paths = explain.explain_path(model_path, folder, "gradcam", out_dir=tmp_path / "out",
                                 skipped=skipped)
    assert len(paths) == 1 and os.path.basename(paths[0]).startswith("1_ok_gradcam_")
    assert [os.path.basename(p) for p, _ in skipped] == ["2_broken.png"]
    assert skipped[0][1] == "not a readable image"


def test_read_class_names(tmp_path, saved_transfer):
    model_path, _ = saved_transfer
    assert explain.read_class_names(model_path) == ["cat", "dog", "fish"]
    plain = tmp_path / "plain.txt"
    plain.write_text("no hdf5")
    assert explain.read_class_names(plain) is None


@pytest.mark.parametrize("module", ["tlkit.explain", "tlkit.explain.layers", "tlkit.explain.taps",
                                    "tlkit.explain.cam", "tlkit.explain.filters",
                                    "tlkit.explain.grids", "tlkit.explain.figures",
                                    "tlkit.data.listing"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
