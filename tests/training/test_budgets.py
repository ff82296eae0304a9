"""Small data that converges: budgets by optimizer steps, steps recorded, tiny epochs that
repeat their data, patience in steps, and the best weights kept across phases."""

import numpy as np

from model_helpers import finetune_tiny
from tlkit.training import strategies


def test_a_five_image_head_converges_by_default_and_records_how(tiny):
    from sklearn.linear_model import LogisticRegression

    from tlkit.training.frozen import feature_extractor

    default = finetune_tiny(tiny, strategy="small-similar")  # solved in closed form
    adam = finetune_tiny(tiny, strategy="small-similar", head_solver="adam")  # the step floor
    old = finetune_tiny(tiny, strategy="small-similar", epochs=10)  # the old budget: 20 steps
    head = default.report["fit"]["phases"][0]
    assert head["solver"] == "closed-form" and head["steps"] == 0 and head["epochs_run"] == 1
    assert head["cache"]["head_solver"]["logit_scale"] > 0
    stepped = adam.report["fit"]["phases"][0]
    assert stepped["solver"] == "adam" and stepped["min_steps"] == strategies.HEAD_MIN_STEPS
    assert stepped["steps_per_epoch"] == strategies.EPOCH_MIN_STEPS  # 2 batches repeat to 20
    assert stepped["steps"] == stepped["epochs_run"] * stepped["steps_per_epoch"] >= 200
    assert old.report["fit"]["phases"][0]["steps"] == 20
    assert old.report["fit"]["phases"][0]["solver"] == "adam"  # --epochs: gradient steps
    for run in (default, adam):
        assert run.report["accuracy"] > old.report["accuracy"] + 0.1
    # as good as a logistic regression on the same frozen features (random ones here)
    extract = feature_extractor(default.model)
    seen = default.dataset  # the images as the model saw them (converted to its input)
    f = {s: extract.predict(seen.split(s)[0], verbose=0) for s in ("train", "test")}
    lr = LogisticRegression(max_iter=3000).fit(f["train"], tiny.y_train)
    for run in (default, adam):
        assert run.report["accuracy"] >= lr.score(f["test"], tiny.y_test) - 0.08


def test_explicit_epochs_keep_their_meaning(tiny):
    r = finetune_tiny(tiny, strategy="large-dissimilar", epochs=3, patience=10)
    phase = r.report["fit"]["phases"][0]
    assert phase["epochs_run"] == 3 and phase["min_steps"] == 0
    assert phase["steps"] == 3 * 2 and phase["steps_per_epoch"] == 2


def test_patience_counts_steps_not_epochs():
    p = strategies.Phase("head", (), 10, 1e-3, min_steps=2000)
    assert p.patience(5, 1) == strategies.PATIENCE_MIN_STEPS
    assert p.patience(5, 94) == 5
    assert strategies.Phase("head", (), 10, 1e-3).patience(5, 1) == 5
    assert p.budget(94).epochs == 22 and p.budget(5000).epochs == 10


def test_pretrained_large_dissimilar_trains_at_a_lower_rate(tmp_path):
    from tlkit.models import backbones

    bb = backbones.build("zoo:simple_cnn", (16, 16, 1), weights=None)
    assert strategies.plan("large-dissimilar", bb).phases[0].learning_rate == \
        strategies.PRETRAINED_FULL_LR
    assert strategies.plan("large-dissimilar", bb, pretrained=False).phases[0].learning_rate \
        == strategies.HEAD_LR
    assert strategies.plan("large-dissimilar", bb, learning_rate=0.01).phases[0].learning_rate \
        == 0.01


def test_a_phase_that_ends_worse_does_not_replace_the_earlier_weights(tiny):
    # a fine-tuning rate that wrecks the weights: the head's weights are the final model
    r = finetune_tiny(tiny, strategy="large-similar", fine_tune_lr=5.0)
    best = r.report["best"]
    assert best["phase"] == "head" and best["restored"]
    fine = [h for h, p in zip(r.history["val_loss"], r.history["phase"]) if p == "fine-tune"]
    assert min(fine) > best["val_loss"] or not np.isfinite(min(fine))
