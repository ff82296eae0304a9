"""The end of a training workflow: the test report, calibration, the model file and its card.

`tlkit.finetune` and `tlkit.tune` both finish here, so that their report.json, the metadata
inside the saved model and the model card are built one way: `evaluate_and_calibrate` writes
the test report (and reliability.png) and attaches the calibration to it (the caller rewrites
report.json once with `write_report` after adding to it), `metadata` adds the
calibration and the test metrics to what the workflow knows of its run, and `save` writes the
model and, given a report folder, its model card.
"""

import pathlib

from tlkit.calibrate import run as calibrate_lib
from tlkit.deploy import feature_score, saving
from tlkit.evaluation import model_card
from tlkit.evaluation import report as report_lib

METRIC_KEYS = ("accuracy", "macro_f1", "n")  # and every `top_k`


def test_metrics(rep):
    """The test metrics a model's metadata keeps from its report.

    Example:
        >>> test_metrics({"accuracy": 0.9, "top_5": 1.0, "per_class": {}, "n": 10})
        {'accuracy': 0.9, 'top_5': 1.0, 'n': 10}
    """
    return {k: v for k, v in rep.items() if k in METRIC_KEYS or k.startswith("top_")}


def evaluate_and_calibrate(model, dataset, report_dir, *, batch_size, calibration, history=None,
                           extra=None, val_probs=None, features=None):
    """The test report of `model` (report.json and PNGs in `report_dir`), calibrated.

    `calibration` is (method, coverage): `"temperature"` fits T on the validation split and
    sets the unknown threshold, reusing the report's test predictions
    (`tlkit.calibrate.calibrate_model`); its dict goes into the report's `calibration` and its
    files into the report's `files` (report.json on disk does not have them yet: the caller
    writes it once, with whatever else it adds). `"none"` skips it. `val_probs`: the model's
    `(probabilities, labels)` on the validation split when training has them already
    (`tlkit.training.train.FitResult.val_probabilities`), so they are not predicted again;
    `features` the feature cache's rows (`FitResult.features`) the unknown score is fitted on.
    Returns (report, calibration dict or None).
    """
    method, coverage = calibration
    # the features the unknown score measures its test coverage on, from the same pass
    test_features = ([] if method != "none" and
                     calibrate_lib.default_score(model) == feature_score.KIND else None)
    test_probs = []
    rep = report_lib.evaluate(model, dataset.x_test, dataset.y_test, dataset.class_names,
                              out_dir=report_dir, history=history, batch_size=batch_size,
                              extra=extra, predictions=test_probs, features=test_features)
    if method == "none":
        return rep, None
    cal = calibrate_lib.calibrate_model(model, dataset, out_dir=report_dir, coverage=coverage,
                                        method=method, batch_size=batch_size,
                                        test_probs=test_probs[0] if test_probs else None,
                                        val_probs=val_probs, features=features,
                                        test_features=test_features[0]
                                        if test_features else None)
    files = cal.pop("files", {})
    rep["calibration"] = cal
    if report_dir is not None and "files" in rep:
        rep["files"].update(files)
    return rep, cal


def write_report(rep, report_dir):
    """(Re)write `report_dir`/report.json from `rep`."""
    report_lib.write_json(rep, pathlib.Path(report_dir) / "report.json")


def metadata(known, rep):
    """The saved model's metadata: what the workflow `known`s, its calibration, test metrics."""
    cal = rep.get("calibration")
    return {**known, **({"calibration": cal} if cal else {}), "metrics": test_metrics(rep)}


def save(model, path, rep, known, *, card=None, settings=None):
    """Save `model` at `path` with `metadata(known, rep)`; write its model card at `card`.

    Returns (the saved path, the card's path or None).
    """
    meta = metadata(known, rep)
    saved = saving.save(model, path, meta)
    card_path = None
    if card is not None:
        card_path = model_card.write(saved, rep, settings=settings, out=card)  # reads the file
    return saved, card_path
