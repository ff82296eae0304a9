"""The closed-form head (`tlkit.training.head_solver`): what it solves, where it applies, and how a
run records it."""

import keras
import numpy as np
import pytest
from scipy import special

from model_helpers import finetune_tiny
from tlkit.training import head_solver
from tlkit.core.errors import TlkitError


def _blobs(n_per_class, classes, dim, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(scale=3.0, size=(classes, dim))
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    return x.astype("float32"), y


def _nll(logits, y):
    return -special.log_softmax(logits, axis=1)[np.arange(len(y)), y].mean()


def test_the_solve_agrees_with_scikit_learns_lda_and_its_scale_is_the_best_on_val():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y = _blobs(40, 4, 16, 0, spread=6.0)
    xv, yv = _blobs(30, 4, 16, 0, spread=6.0)
    kernel, bias, facts = head_solver.solve(x, y, xv, yv, 4)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
    ours = (xv @ kernel + bias).argmax(1)
    assert np.mean(ours == lda.predict(xv)) >= 0.97
    # the scale is the one-dimensional minimum of val NLL: scaling it either way is worse
    assert 0 < facts["logit_scale"] < 1
    best = _nll(xv @ kernel + bias, yv)
    for factor in (0.8, 1.25):
        assert _nll(factor * (xv @ kernel + bias), yv) > best


def test_a_separable_val_split_never_sharpens_ldas_posteriors():
    x, y = _blobs(20, 3, 8, 4, spread=1.0)
    kernel, bias, facts = head_solver.solve(x, y, x, y, 3)
    assert np.mean((x @ kernel + bias).argmax(1) == y) == 1.0  # val NLL falls as scale grows
    assert facts["logit_scale"] == pytest.approx(1.0, rel=1e-2)
    assert facts["solver"] == "closed-form" and 0 <= facts["shrinkage"] <= 1


def test_class_weights_move_the_priors_toward_the_weighted_class():
    x, y = _blobs(30, 3, 8, 1, spread=4.0)
    plain, b_plain, _ = head_solver.solve(x, y, x, y, 3)
    weighted, b_weighted, _ = head_solver.solve(x, y, x, y, 3, class_weight={2: 10.0})
    share = lambda k, b: np.mean((x @ k + b).argmax(1) == 2)  # noqa: E731
    assert share(weighted, b_weighted) > share(plain, b_plain)


def test_constant_features_and_more_features_than_images_still_solve():
    x, y = _blobs(3, 5, 64, 2)  # 15 images, 64 features
    x[:, :10] = 0.0  # dead ReLU channels
    kernel, bias, _ = head_solver.solve(x, y, x, y, 5)
    assert np.isfinite(kernel).all() and np.isfinite(bias).all()
    assert np.mean((x @ kernel + bias).argmax(1) == y) == 1.0


def test_one_image_per_class_is_the_nearest_class_mean():
    x, y = _blobs(1, 4, 16, 5)
    xv, yv = _blobs(6, 4, 16, 5, spread=0.5)  # the same centres: seed 5 again
    kernel, bias, facts = head_solver.solve(x, y, xv, yv, 4)
    nearest = ((xv[:, None, :] - x[None, :, :]) ** 2).sum(-1).argmin(1)
    assert (np.asarray(xv @ kernel + bias).argmax(1) == y[nearest]).all()
    assert facts["shrinkage"] == 1.0


def _head(dense=(), activation="softmax", units=3):
    inp = keras.Input((8,))
    h = keras.layers.Dropout(0.2)(inp)
    for w in dense:
        h = keras.layers.Dense(w, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(units, activation=activation)(h))


def test_where_the_solve_does_not_apply_it_says_why():
    x, y = _blobs(5, 3, 8, 3)
    assert head_solver.unsuited(_head(), x, y, 3, None) is None
    assert "other than dropout" in head_solver.unsuited(_head(dense=(4,)), x, y, 3, None)
    assert "other than dropout" in head_solver.unsuited(_head(activation="sigmoid", units=1),
                                                        x, y, 1, None)
    assert "targets" in head_solver.unsuited(_head(), x, y, 3, object())
    assert "[2]" in head_solver.unsuited(_head(), x[y < 2], y[y < 2], 3, None)


def test_features_on_disk_are_solved_when_they_fit_the_memory_limit(tmp_path):
    x, y = _blobs(5, 3, 8, 3)
    np.save(tmp_path / "f.npy", x)
    disk = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert isinstance(disk, np.memmap)
    assert head_solver.unsuited(_head(), disk, y, 3, None, memory_limit=10**6) is None
    assert "memory limit" in head_solver.unsuited(_head(), disk, y, 3, None, memory_limit=100)


def test_a_two_phase_strategy_fine_tunes_from_the_solved_head(tiny):
    r = finetune_tiny(tiny, strategy="large-similar", unfreeze=1)
    head, tune = r.report["fit"]["phases"]
    assert head["solver"] == "closed-form" and tune["solver"] == "adam"
    assert tune["steps"] > 0
    history = r.history
    assert history["phase"][0] == "head" and history["phase"][1:] == ["fine-tune"] * (
        len(history["phase"]) - 1)
    # the final model is the best val_loss of both phases (the head's if fine-tuning was worse)
    assert r.report["fit"]["best"]["val_loss"] == pytest.approx(min(history["val_loss"]))
    assert r.report["fit"]["settings"]["head_solver"] == "auto"


def test_hidden_layers_train_by_gradient_steps_and_an_explicit_closed_form_is_refused(tiny):
    r = finetune_tiny(tiny, strategy="small-similar", dense=(16,))
    assert r.report["fit"]["phases"][0]["solver"] == "adam"
    with pytest.raises(TlkitError, match="--head-solver closed-form cannot train this head"):
        finetune_tiny(tiny, strategy="small-similar", dense=(16,), head_solver="closed-form")
    with pytest.raises(TlkitError, match="head_solver"):
        finetune_tiny(tiny, strategy="small-similar", head_solver="lbfgs")


def test_features_reused_from_the_cache_folder_are_solved_too(tiny, tmp_path):
    # the second run reads the first one's features from disk (as `auto` reads advise's)
    first = finetune_tiny(tiny, strategy="small-similar", cache_dir=tmp_path / "cache")
    again = finetune_tiny(tiny, strategy="small-similar", cache_dir=tmp_path / "cache")
    head = again.report["fit"]["phases"][0]
    assert head["cache"]["train"]["where"] == "reused" and head["solver"] == "closed-form"
    assert again.report["accuracy"] == first.report["accuracy"]
