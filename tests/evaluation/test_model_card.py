"""The model card built from what a tiny `finetune` wrote: its numbers are report.json's,
its links resolve, and its plain-Keras code runs."""

import json
import re
import shutil
import warnings

import numpy as np
import pytest

import tlkit
from tlkit.evaluation import model_card
from tlkit.deploy import saving
from tlkit.core.errors import TlkitError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("card")
    photos = write_image_folder(root / "photos", per_class=8, size=32)
    with warnings.catch_warnings():  # random frozen base, chance level: in the card instead
        warnings.simplefilter("ignore", UserWarning)
        result = tlkit.finetune(data=str(photos), backbone="zoo:fashion_cnn", weights=None,
                                image_size=32, strategy="small-similar", epochs=1,
                                out=root / "m.h5", verbose=0, augment=False)
    return root / "m.h5", result, photos


def _python_block(text):
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_card_content_matches_the_report(run):
    model, result, _ = run
    card = model_card.write(model, settings={"epochs": 1, "strategy": "small-similar"})
    assert card == model.with_suffix("") / "model_card.md"
    text = card.read_text()
    rep = json.loads((model.with_suffix("") / "report.json").read_text())
    assert text.startswith("# Model card: m.h5")
    assert f"accuracy **{rep['accuracy']:.4f}**" in text and f"(n={rep['n']})" in text
    assert f"macro F1 {rep['macro_f1']:.4f}" in text
    for row in rep["per_class"]:  # the per-class table, as in report.json
        assert (f"| {row['class']} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{row['f1']:.3f} | {row['support']} |") in text
    for name, count in rep["data"]["train_per_class"].items():
        assert f"| {name} | {count} |" in text
    assert "](confusion_matrix.png)" in text and (card.parent / "confusion_matrix.png").is_file()
    assert "[`../m.h5`](../m.h5)" in text
    for phase in rep["plan"]["phases"]:
        assert f"| {phase['name']} | {phase['epochs']} | {phase['learning_rate']} |" in text
    # limitations: the run's warnings (random frozen base, chance level at n=3) are all there
    assert rep["warnings"] and all(w in text for w in rep["warnings"])
    assert "random weights" in text and "- `epochs`: `1`" in text
    # the call transfer.py makes, with the report dict it holds: the same card
    again = model_card.write(model, result.report, settings={"epochs": 1,
                                                             "strategy": "small-similar"},
                             out=model.with_suffix("") / model_card.FILENAME)
    assert again.read_text() == text


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_load_code_runs_in_plain_keras(run, tmp_path, monkeypatch, suffix):
    model, result, photos = run
    path = model
    if suffix == ".keras":
        m, meta = saving.load(model)
        path = saving.save(m, tmp_path / "m.keras", meta)
        shutil.copy(model.with_suffix("") / "report.json", tmp_path / "report.json")
        card = model_card.write(path, tmp_path, out=tmp_path / "card" / "model_card.md")
    else:
        card = model_card.write(model)
    code = _python_block(card.read_text())
    assert "import tlkit" not in code and "from tlkit" not in code
    image = sorted((photos / "square").glob("*.png"))[0]
    shutil.copy(image, card.parent / "photo.jpg")  # the name the card's code uses
    monkeypatch.chdir(card.parent)
    printed = []
    exec(compile(code, str(card), "exec"),
         {"print": lambda *a: printed.append(a), "__name__": "card"})
    name, prob = printed[0]
    x = tlkit.data.read_images([image], 32, 1).astype("float32")
    want = result.model.predict(x, verbose=0)[0]
    assert name == result.dataset.class_names[int(np.argmax(want))]
    assert prob == pytest.approx(float(want.max()), abs=1e-4)


def test_missing_report(tmp_path, run):
    model, _, _ = run
    with pytest.raises(TlkitError, match="No report for the model card"):
        model_card.write(model, tmp_path / "nowhere")


def test_card_of_a_tuned_model(tmp_path):
    """What `tlkit tune` records (no plan; a search and its hyperparameters) makes a card."""
    rep = {"n": 40, "accuracy": 0.85, "top_2_accuracy": 0.95, "macro_f1": 0.84,
           "class_names": ["a", "b", "c"],
           "per_class": [{"class": c, "precision": 0.8, "recall": 0.9, "f1": 0.85,
                          "support": 13} for c in "abc"]}
    meta = {"class_names": ["a", "b", "c"], "input_shape": [28, 28, 1],
            "hyperparameters": {"dropout": 0.2, "lr": 0.001},
            "tuning": {"tuner": "random", "objective": "val_accuracy", "score": 0.9,
                       "trial": "03", "trials": 4, "epochs": 2, "best_model": "retrained"},
            "data": {"source": "digits", "counts": {"train": 100, "val": 20, "test": 40}}}
    (tmp_path / "report").mkdir()
    card = model_card.write(tmp_path / "best.h5", rep, metadata=meta,
                            out=tmp_path / "report" / "model_card.md")
    text = card.read_text()
    assert "tuner `random`, objective `val_accuracy` = 0.9, best of 4 trials" in text
    assert "| dropout | 0.2 |" in text and "accuracy **0.8500**" in text
    assert "[`../best.h5`](../best.h5)" in text and "H, W = 28, 28" in text
    assert "±0.111" in text  # 1.96 * sqrt(0.85 * 0.15 / 40)
