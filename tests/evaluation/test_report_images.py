"""The report's and tuning's images: what they show, and that others can read them."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from tlkit import data
from tlkit.evaluation import plots, report
from tlkit.tuning import reports as trial_reports

CLASSES = ["cat", "dog", "fish"]


def file_mode(path):
    return os.stat(path).st_mode & 0o777


def expected_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.fixture(scope="module")
def model():
    """A 3-class softmax classifier of 8x8 gray images; its weights make errors certain."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                          keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax")])
    return m


@pytest.fixture()
def spy_top_losses(monkeypatch):
    """Record the arguments of every top-losses figure the report draws."""
    calls = []
    draw = plots.top_losses_figure

    def spy(images, true, pred, prob, class_names, **kw):
        calls.append({"images": np.asarray(images), "true": np.asarray(true),
                      "pred": np.asarray(pred), "prob": np.asarray(prob)})
        fig = draw(images, true, pred, prob, class_names, **kw)
        calls[-1]["panels"] = len(fig.axes)
        calls[-1]["titles"] = [ax.get_title() for ax in fig.axes]
        return fig

    monkeypatch.setattr(plots, "top_losses_figure", spy)
    return calls


# ---------------------------------------------------------------------------------------------
# top losses


def test_top_losses_are_the_most_confident_mistakes_first():
    probs = np.array([[0.90, 0.05, 0.05],   # right
                      [0.20, 0.70, 0.10],   # wrong, p(true) 0.20
                      [0.01, 0.01, 0.98],   # wrong, p(true) 0.01: the worst
                      [0.40, 0.35, 0.25],   # right, yet a larger loss than row 1 would be
                      [0.20, 0.10, 0.70],   # wrong, p(true) 0.20: tie with row 1, after it
                      [0.30, 0.60, 0.10]])  # wrong, p(true) 0.30
    y = np.array([0, 0, 0, 0, 0, 0])
    assert report.top_losses(probs, y).tolist() == [2, 1, 4, 5]
    assert report.top_losses(probs, y, k=2).tolist() == [2, 1]
    assert report.top_losses(probs, np.argmax(probs, axis=1)).tolist() == []
    assert report.top_losses(np.zeros((0, 3)), np.zeros(0, int)).tolist() == []


def test_report_writes_top_losses_and_every_file_is_readable(tmp_path, model, spy_top_losses):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8, 1)).astype("uint8")
    y = rng.integers(0, 3, 30)
    history = {"loss": [1.2, 1.0, 0.9], "val_loss": [1.3, 1.1, 1.0],
               "accuracy": [0.3, 0.4, 0.5], "val_accuracy": [0.3, 0.35, 0.4],
               "phase": ["head", "fine-tune", "fine-tune"]}
    rep = report.evaluate(model, x, y, CLASSES, out_dir=tmp_path, history=history)

    probs = model.predict(x, verbose=0)
    wrong = int((probs.argmax(axis=1) != y).sum())
    assert wrong == rep["n"] - np.trace(rep["confusion_matrix"]) and wrong > 0
    (call,) = spy_top_losses
    assert call["panels"] == min(report.TOP_LOSSES, wrong)
    rows = report.top_losses(probs, y)
    np.testing.assert_array_equal(call["images"], x[rows])  # the images of those rows
    np.testing.assert_array_equal(call["true"], y[rows])
    assert (call["true"] != call["pred"]).all()
    np.testing.assert_allclose(call["prob"], probs[rows].max(axis=1), rtol=1e-6)
    assert [t.splitlines()[0] for t in call["titles"]] == [f"#{r}" for r in rows]

    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["confusion_matrix.png", "curves.png", "report.json", "top_losses.png"]
    assert rep["files"]["top_losses"] == str(tmp_path / "top_losses.png")
    for name in written:
        assert file_mode(tmp_path / name) == expected_mode(), name
    with Image.open(tmp_path / "top_losses.png") as img:
        assert min(img.size) >= 224

    # Evaluated again, now without a mistake: no top-losses picture is left from before.
    report.evaluate(model, x, probs.argmax(axis=1), CLASSES, out_dir=tmp_path)
    assert not (tmp_path / "top_losses.png").exists()


def test_top_losses_of_files_skip_the_ones_that_failed(tmp_path, model, spy_top_losses):
    """Files that fail to decode are not rows: the pictures still match their rows."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (6, 8, 8)).astype("uint8")
    paths = []
    for i, im in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(im).save(paths[-1])
    (tmp_path / "2.png").write_bytes(b"not a png any more")
    files = data.ImageFiles(paths, (8, 8), 1)
    y = np.array([0, 1, 2, 0, 1, 2])
    rep = report.evaluate(model, files, y, CLASSES, out_dir=tmp_path / "r")
    assert rep["failed_files"] == [paths[2]]

    kept = [0, 1, 3, 4, 5]
    probs = model.predict(pixels[kept][..., None], verbose=0)
    rows = report.top_losses(probs, y[kept])
    (call,) = spy_top_losses
    np.testing.assert_array_equal(call["images"][..., 0], pixels[kept][rows])
    np.testing.assert_array_equal(call["true"], y[kept][rows])
    # each panel names its file, so a mistake can be found (and relabelled) on disk
    assert [t.splitlines()[0] for t in call["titles"]] == [f"{kept[r]}.png" for r in rows]
    assert all(t.splitlines()[1].startswith("true: ") for t in call["titles"])


# ---------------------------------------------------------------------------------------------
# curves and the confusion matrix


def test_curves_integer_epochs_phases_and_no_offset():
    history = {"loss": [1.3865, 1.3863, 1.3862, 1.3861, 1.3860],
               "val_loss": [1.3866, 1.3864, 1.3862, 1.3860, 1.3859],
               "accuracy": [0.25, 0.26, 0.27, 0.28, 0.30],
               "phase": ["head", "head", "fine-tune", "fine-tune", "fine-tune"]}
    fig = plots.curves_figure(history)
    fig.canvas.draw()
    loss_ax, acc_ax = [ax for ax in fig.axes if ax.get_title() in ("loss", "accuracy")]
    for ax in (loss_ax, acc_ax):
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 5.5]
        assert ticks == [1, 2, 3, 4, 5]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert all(not ax_.get_major_formatter().get_offset() for ax_ in (ax.xaxis, ax.yaxis))
        assert all("+" not in t and "e" not in t for t in labels)
        # the phase change between epochs 2 and 3 is a vertical line
        assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"] == [2.5]
    loss_labels = [t.get_text() for t in loss_ax.get_yticklabels() if t.get_text()]
    assert any(label.startswith("1.386") for label in loss_labels), loss_labels
    # the phases are named on a top axis, over their epochs, inside the figure
    tops = loss_ax.child_axes
    assert len(tops) == 1
    assert [t.get_text() for t in tops[0].get_xticklabels()] == ["head", "fine-tune"]
    assert list(tops[0].get_xticks()) == [1.5, 4.0]

    one = plots.curves_figure({"loss": [0.5], "phase": ["head"]})
    assert [t for t in one.axes[0].get_xticks() if 0.5 <= t <= 1.5] == [1]


def test_confusion_matrix_readable_with_many_classes(tmp_path):
    names = [f"class_{i:02d}" for i in range(12)]
    cm = np.random.default_rng(0).integers(0, 50, (12, 12))
    fig = plots.confusion_figure(cm, names)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    counts = [t.get_text() for t in ax.texts]
    assert counts == [str(v) for v in cm.ravel()]
    assert min(t.get_fontsize() for t in ax.texts) >= 7
    path = plots.save_figure(fig, tmp_path / "cm.png")
    with Image.open(path) as img:
        assert min(img.size) >= 12 * 40  # at least 40 px a cell
    assert file_mode(path) == expected_mode()


# ---------------------------------------------------------------------------------------------
# trials.png


def trial_rows():
    scores = [0.81, 0.86, 0.79, 0.84]
    dropouts = [0.2, 0.5, 0.2, 0.3]
    bns = ["none", "after", "before", "after"]
    return [{"trial": str(i), "status": "COMPLETED", "score": s,
             "hyperparameters": {"head_bn": b, "dropout": d}}
            for i, (s, d, b) in enumerate(zip(scores, dropouts, bns))]


def test_trial_positions_have_no_jitter():
    assert trial_reports.hp_positions([0.2, 0.5, 0.2, 0.3]) == [0.2, 0.5, 0.2, 0.3]
    cats = ["before", "after", "none"]
    assert trial_reports.hp_positions(["none", "after", "after"], categories=cats) == [2, 1, 1]
    two = [trial_reports.hp_positions(["after"], 2, j, cats)[0] for j in range(2)]
    assert two[0] < 1 < two[1] and two[1] - 1 == pytest.approx(1 - two[0])  # side by side, the same each run


def test_trials_figure_marks_the_best_trial(tmp_path):
    rows = trial_rows()
    assert trial_reports.best_trial(rows)["trial"] == "1"
    assert trial_reports.best_trial(rows, "val_loss")["trial"] == "2"
    fig = trial_reports.trials_figure(rows)
    fig.canvas.draw()
    per_trial, by_bn, by_dropout = fig.axes[:3]
    points = [line for line in by_dropout.lines if line.get_label() == "dropout"][0]
    assert list(points.get_xdata()) == [0.2, 0.5, 0.2, 0.3]  # exact values
    for ax, x in ((per_trial, 2), (by_bn, 1), (by_dropout, 0.5)):
        stars = [line for line in ax.lines if line.get_marker() == "*"]
        assert len(stars) == 1
        assert list(stars[0].get_xdata()) == [x] and list(stars[0].get_ydata()) == [0.86]
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 < ax.get_window_extent().y0  # below the panel: it hides no point
    assert any("best: trial 1" in t.get_text() for t in per_trial.texts)
    path = trial_reports.plot_trials(rows, tmp_path / "trials.png")
    assert file_mode(path) == expected_mode()


def test_advice_figure(tmp_path):
    from types import SimpleNamespace

    from tlkit.advise import plot

    stages = [{"name": f"stage{i}", "linear_probe_accuracy": 0.5 + i / 10,
               "knn_accuracy": 0.4 + i / 10, "logme": -1.3861 + i * 1e-4} for i in range(3)]
    advice = SimpleNamespace(backbones=[{"backbone": "zoo:simple_cnn", "stages": stages}],
                             choice={"backbone": "zoo:simple_cnn", "strategy": "small-similar",
                                     "unfreeze": 1})
    fig = plot.advice_figure(advice)
    fig.canvas.draw()
    assert len(fig.axes) == 3 and "--unfreeze 1" in fig._suptitle.get_text()
    assert not fig.axes[2].yaxis.get_major_formatter().get_offset()  # LogME: no "+1.386"
    path = plot.save_scores(advice, tmp_path / "advice.png")
    assert file_mode(path) == expected_mode()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["stage0", "stage1",
                                                                     "stage2"]
    # two backbones of 2 and 3 stages: both last stages at depth 1, not "stage1" under both
    advice.backbones.append({"backbone": "zoo:lenet5", "stages": stages[:2]})
    fig = plot.advice_figure(advice)
    fig.canvas.draw()
    lines = fig.axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[0, 0.5, 1], [0, 1]]
    assert "relative depth" in fig.axes[0].get_xlabel()
