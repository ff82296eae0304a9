"""The resize contract: a model file says how image files are fitted to its input (resize
mode, bilinear, no antialias), and predict, evaluate, the model card's plain-Keras code and
the exports all fit them that way (issue 27, item 1)."""

import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

import tlkit
from cli_helpers import assert_one_line_error, run_cli
from tlkit.deploy import artifacts, saving
from tlkit.evaluation import predict
from tlkit.data import decode

SIZES = [(50, 30), (23, 41), (64, 64), (90, 17), (33, 33), (20, 12)]  # (w, h), none 32x32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny RGB model per resize mode on a photo folder, and images of other sizes."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("resize")
    photos = write_image_folder(root / "photos", per_class=6, size=40)
    models = {}
    for mode in ("squash", "pad"):
        with warnings.catch_warnings():  # random frozen base, chance level: expected here
            warnings.simplefilter("ignore", UserWarning)
            tlkit.finetune(data=str(photos), backbone="zoo:resnet_small", weights=None,
                           image_size=32, strategy="small-similar", epochs=1, resize=mode,
                           out=root / f"{mode}.h5", verbose=0, augment=False)
        models[mode] = root / f"{mode}.h5"
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(SIZES):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[h // 4: h // 2, w // 3: 2 * w // 3] = 255  # structure: not only noise
        Image.fromarray(pixels).save(images / f"img{i}.png")
    return models, photos, images


def _card_code(model):
    text = (model.with_suffix("") / "model_card.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def _run_card(code, folder, image):
    """The card's code on `image` (copied to the photo.jpg it names), run in `folder`:
    (printed class, printed probability, the input it fed the model)."""
    shutil.copy(image, folder / "photo.jpg")
    printed = []
    namespace = {"print": lambda *a: printed.append(a), "__name__": "card"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(code, "model_card.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    (name, prob), = printed
    return name, prob, namespace["x"]


@pytest.mark.parametrize("mode", ["squash", "pad"])
def test_metadata_states_the_contract(trained, mode):
    models, _, _ = trained
    contract = saving.read_metadata(models[mode])["input"]
    assert {k: contract[k] for k in ("resize", "interpolation", "antialias")} == {
        "resize": mode, "interpolation": "bilinear", "antialias": False}


@pytest.mark.parametrize("mode", ["squash", "pad"])
def test_card_code_gives_what_predict_gives(trained, mode):
    """The card's plain-Keras code, on images of other sizes than the input: the same top
    class and probabilities (1e-4) as `tlkit predict`, from the same pixels."""
    models, _, images = trained
    model = models[mode]
    code = _card_code(model)
    assert "tlkit" not in re.sub(r'#.*|"tlkit_metadata[^"]*"', "", code)
    assert f'resize "{mode}"' in code
    with warnings.catch_warnings():  # the 20x12 image is much smaller than the input
        warnings.simplefilter("ignore", UserWarning)
        rows = {r["path"]: r["top"] for r in predict.iter_predictions(model, images, top_k=3)}
    assert len(rows) == len(SIZES)
    for image in sorted(images.glob("*.png")):
        name, prob, x = _run_card(code, model.with_suffix(""), image)
        want = decode.read_image(image, image_size=(32, 32), channels=3, resize=mode)
        np.testing.assert_array_equal(x[0], want, err_msg=image.name)
        top_name, top_prob = rows[str(image)][0]
        assert name == top_name, image.name
        assert prob == pytest.approx(top_prob, abs=1e-4), image.name


def test_predict_and_evaluate_use_the_recorded_mode(trained, tmp_path):
    """A pad model: predict fits files by pad, not squash; evaluate without the run's index
    (the folder copied elsewhere) scores pad-fitted images as evaluate with it does."""
    models, photos, images = trained
    image = images / "img0.png"
    m, _ = saving.load(models["pad"])
    for mode in ("pad", "squash"):
        x = decode.read_image(image, image_size=(32, 32), channels=3, resize=mode)
        got = predict.predict_files(models["pad"], image, top_k=3, resize=mode)[0]["top"]
        want = m.predict(x[None].astype("float32"), verbose=0)[0]
        assert got[0][1] == pytest.approx(float(want.max()), abs=1e-5)
        if mode == "pad":
            assert predict.predict_files(models["pad"], image, top_k=3)[0]["top"] == got
    copy = shutil.copytree(photos, tmp_path / "photos")
    with_index = predict.evaluate_file(models["pad"], str(photos), split="all")
    without = predict.evaluate_file(models["pad"], str(copy), split="all")
    assert with_index["index"] and without["index"] is None
    assert without["accuracy"] == pytest.approx(with_index["accuracy"])
    assert without["selective"]["nll"] == pytest.approx(with_index["selective"]["nll"], abs=1e-5)


def test_older_files_keep_squash(trained, tmp_path):
    """A model file without the contract's keys (written before they existed) is fitted by
    squash, as then; an export of it states squash."""
    models, _, images = trained
    old = shutil.copy(models["pad"], tmp_path / "old.h5")
    meta = saving.read_metadata(old)
    for key in ("resize", "interpolation", "antialias"):
        del meta["input"][key]
    meta["data"].pop("resize")
    saving.write_metadata(old, meta)
    image = images / "img3.png"
    assert predict.predict_files(old, image)[0]["top"] == predict.predict_files(
        models["pad"], image, resize="squash")[0]["top"]
    from tlkit.deploy.export import export

    out = export(old, "keras", tmp_path / "old.keras")
    assert artifacts.load(out.path).metadata["input"]["resize"] == "squash"


def test_exports_carry_the_contract(trained, tmp_path):
    """The TFLite sidecar (m.tlkit.json) states pad, and predict with the .tflite fits by pad:
    the probabilities of the .h5."""
    from tlkit.deploy.export import export

    models, _, images = trained
    result = export(models["pad"], "tflite", tmp_path / "m.tflite")
    sidecar = json.loads(artifacts.metadata_path(result.path).read_text())
    assert sidecar["input"]["resize"] == "pad" and sidecar["input"]["antialias"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        h5 = predict.predict_files(models["pad"], images, top_k=3)
        lite = predict.predict_files(result.path, images, top_k=3)
    for a, b in zip(h5, lite):
        assert [c for c, _ in a["top"]][:1] == [c for c, _ in b["top"]][:1]
        assert np.allclose([p for _, p in a["top"]], [p for _, p in b["top"]], atol=1e-4)


def test_a_contract_tlkit_cannot_apply_is_refused(trained, tmp_path, capsys):
    models, _, images = trained
    odd = shutil.copy(models["squash"], tmp_path / "odd.h5")
    meta = saving.read_metadata(odd)
    meta["input"]["interpolation"] = "bicubic"
    saving.write_metadata(odd, meta)
    assert_one_line_error(capsys, tmp_path, ["predict", str(odd), str(images)],
                          "records input resize 'squash', interpolation 'bicubic'")
    code, _, err = run_cli(capsys, "evaluate", odd, "--data", images.parent / "photos")
    assert code == 2 and "interpolation 'bicubic'" in err


def test_card_code_of_a_calibrated_model(trained, tmp_path):
    """With a temperature in the metadata, the card's code prints predict's calibrated
    probability."""
    from tlkit.evaluation import model_card

    models, _, images = trained
    model = shutil.copy(models["squash"], tmp_path / "cal.h5")
    meta = saving.read_metadata(model)
    meta["calibration"] = {"temperature": 0.5, "n_val": 6, **{
        f"{k}_{when}": 0.1 for k in ("ece", "nll", "brier") for when in ("before", "after")}}
    saving.write_metadata(model, meta)
    card = model_card.write(model, models["squash"].with_suffix(""),
                            out=tmp_path / "cal" / model_card.FILENAME)
    code = re.search(r"```python\n(.*?)```", card.read_text(), re.S).group(1)
    image = images / "img1.png"
    name, prob, _ = _run_card(code, card.parent, image)
    (top_name, top_prob), = predict.predict_files(model, image, top_k=1)[0]["top"]
    raw = predict.predict_files(models["squash"], image, top_k=1)[0]["top"][0][1]
    assert name == top_name and prob == pytest.approx(top_prob, abs=1e-4)
    assert abs(top_prob - raw) > 1e-3  # T = 0.5 sharpens: the check can tell
