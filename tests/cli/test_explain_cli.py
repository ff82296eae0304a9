"""tlkit explain as a user runs them on a model tlkit trained."""

import pytest
from PIL import Image

from cli_helpers import assert_one_line_error
from cli_helpers import run_cli as run
from model_helpers import small_photo_model as _finetune


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("explain") / "photos", per_class=8)


@pytest.fixture(scope="module")
def trained(photos):
    """A MobileNetV2 classifier that tlkit trained (the nested keras.applications layout)."""
    return _finetune(photos, "mobilenet_v2", photos.parent / "m.h5")


def test_gradcam_feature_maps_filters(capsys, trained, tmp_path):
    model, photos = trained
    code, out, err = run(capsys, "explain", model, photos / "square", "--out", tmp_path / "g")
    assert code == 0, err
    pngs = sorted((tmp_path / "g").glob("*_gradcam_*.png"))
    assert len(pngs) == 8 and "8 PNG" in out
    with Image.open(pngs[0]) as img:  # original and overlay side by side, each >= 224 px
        assert img.size[0] >= 2 * 224 and img.size[1] >= 224
    code, out, err = run(capsys, "explain", model, photos / "circle" / "circle_00.png",
                         "--method", "feature-maps", "--out", tmp_path / "f")
    assert code == 0, err
    assert len(list((tmp_path / "f").glob("circle_00_*_maps.png"))) >= 3
    code, out, err = run(capsys, "explain", model, "--method", "filters", "--out", tmp_path / "w")
    assert code == 0, err
    assert list((tmp_path / "w").glob("*_filters.png"))
    code, out, err = run(capsys, "explain", model, "--list-layers")
    assert code == 0 and "out_relu" in out


def test_unreadable_image_in_a_folder_is_skipped_and_counted(capsys, trained, tmp_path):
    model, photos = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted((photos / "square").glob("*.png"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all")
    code, out, err = run(capsys, "explain", model, folder, "--out", tmp_path / "g")
    assert code == 0, err
    assert "2 PNG" in out and len(list((tmp_path / "g").glob("*.png"))) == 2
    assert err.strip() == "tlkit: skipped 1 unreadable image: corrupt.jpg"
    code, out, err = run(capsys, "explain", model, folder, "--on-bad-image", "error",
                         "--out", tmp_path / "e")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "corrupt.jpg: not a readable image" in err and "Unidentified" not in err


@pytest.mark.parametrize("argv,needle", [
    (["explain", "{model}", "{photos}", "--layer", "nope"], "out_relu"),
    (["explain", "{model}", "{bad}"], "bad.png: not a readable image"),
    (["explain", "{bad}", "{photos}"], "bad.png is not a model file; give a .h5 or .keras model."),
    (["explain", "{model}", "{photos}", "--method", "saliency"], "gradcam"),
    (["explain", "{model}", "{photos}", "--alpha", "1.5"], "--alpha"),
])
def test_bad_input(capsys, trained, tmp_path, argv, needle):
    model, photos = trained
    assert_one_line_error(capsys, tmp_path, argv, needle, model=model, photos=photos)


def test_method_choices_are_the_library_methods():
    from tlkit import explain
    from tlkit.cli import explain as cli_explain

    assert cli_explain.METHODS == tuple(explain.METHODS)
