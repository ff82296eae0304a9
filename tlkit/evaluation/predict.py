"""Using a saved model: top-k predictions for image files, and evaluation on a data set.

Both take any deployable artifact (`tlkit.deploy.artifacts`: `.h5`, `.keras`, a SavedModel folder,
`.tflite`, `.onnx`) and name classes by the names the artifact carries. `evaluate_file`
can average test-time augmentation variants (`tta=N`, see `tlkit.evaluation.tta`).

Both stream: images are decoded in tf.data as the model reads them, so a folder of 100,000
images needs the memory of a few batches. `iter_predictions` yields rows batch by batch
(the CLI writes its CSV as they come); files that cannot be read are skipped and counted, or
stop the run with `on_bad_image="error"`.

Example:
    >>> from tlkit.evaluation import predict
    >>> rows = predict.predict_files("saved_models/photos.h5", "photos/cats", top_k=2)  # doctest: +SKIP
    >>> rows[0]["top"][0]  # doctest: +SKIP
    ('cats', 0.97)
"""

import os
import pathlib

import numpy as np

from tlkit import calibrate as calibrate_lib
from tlkit import data as data_lib
from tlkit.calibrate import metrics, plots, unknown
from tlkit.core.errors import TlkitError, check_choice
from tlkit.data import decode, listing
from tlkit.data import index as index_lib
from tlkit.data.listing import image_files
from tlkit.deploy import artifacts, saving
from tlkit.evaluation import report as report_lib
from tlkit.evaluation import tta as tta_lib


def image_paths(path):
    """The image files at `path`: the file itself, or the images in a folder (recursively).

    See `tlkit.data.listing.image_files`, the one home of image listing.
    """
    return image_files(path)


def iter_predictions(model_path, inputs, *, top_k=3, batch_size=32, on_bad_image="skip",
                     resize=None, skipped=None, progress=None, reject=False):
    """Yield `{"path", "top": [(class, probability), ...], "unknown_score", "rejected"}` per
    image, batch by batch.

    The probabilities are calibrated when the artifact's metadata has a temperature
    (`tlkit.calibrate`: softmax(log p / T)); `unknown_score` is higher for images more
    likely of no known class, and `rejected` says whether it is above the threshold the
    metadata holds (False without one).

    Args:
        model_path: a saved tlkit (or any Keras) classifier, or any artifact of
            `tlkit.deploy.artifacts` (SavedModel folder, `.tflite`, `.onnx`).
        inputs: an image file or a folder of images (searched recursively).
        top_k: classes per image.
        batch_size: images per model call.
        on_bad_image: `"skip"`: unreadable files are left out (appended to `skipped` as
            (path, reason)); `"error"`: the first one raises `TlkitError` naming it.
        resize: how images are fitted to the model's input (see `tlkit.data.load`); default
            the mode the artifact's metadata records (`input`, `tlkit.data.decode.
            recorded_resize`), squash for artifacts that record none.
        skipped: a list that receives the skipped files.
        progress: called as `progress(done, total)` after each batch (e.g. a progress bar).
        reject: require the artifact's unknown threshold (`TlkitError` without one, saying
            how to add it with `tlkit calibrate`).
    """
    check_choice("on_bad_image", on_bad_image, data_lib.BAD_IMAGE_POLICIES)
    if top_k < 1:
        raise TlkitError(f"--top-k must be >= 1. Received: {top_k}.")
    model = artifacts.load(model_path)
    check_reject(model, model_path, reject)
    names = model.class_names
    skipped = [] if skipped is None else skipped
    readable = listing.readable_images(inputs, on_bad_image, skipped)
    good, use_pil = [p for p, _ in readable], [pr.decoder == "pil" for _, pr in readable]
    shape = model.input_shape
    listing.warn_small_images(readable, shape[:2])
    resize = resize or model_resize(model) or data_lib.DEFAULT_RESIZE
    files = data_lib.ImageFiles(good, tuple(shape[:2]), shape[2], resize, use_pil)
    ds = files.as_dataset(with_ids=True, parallel=os.cpu_count() or 1, batch_size=batch_size)
    k = min(top_k, max(2, model.output_shape[-1]))
    done = 0
    for images, ids in ds.prefetch(2):
        raw, feature_scores = model.predict_scored(np.asarray(images, "float32"),
                                                   batch_size=len(images))
        done += len(raw)
        if progress is not None:
            progress(done, len(good))
        probs, scores, rejected = calibrate_lib.apply_metadata(raw, model.metadata,
                                                               feature_scores)
        for i, pr, sc, rj in zip(ids.numpy(), probs, scores, rejected):
            idx = np.argsort(-pr)[:k]
            yield {"path": good[i], "top": [(names[j], float(pr[j])) for j in idx],
                   "unknown_score": float(sc), "rejected": bool(rj)}
    for path in files.failed():
        if on_bad_image == "error":
            raise TlkitError(f"Cannot decode image {path} (changed or corrupt). Pass "
                             f"--on-bad-image skip to skip such files.")
        skipped.append((path, "could not be decoded"))


def model_resize(model):
    """The resize mode an `artifacts.Artifact` records (None: none recorded)."""
    return decode.recorded_resize(model.metadata, model.path)


def check_reject(model, model_path, reject):
    """Refuse `--reject` for an artifact whose metadata holds no unknown threshold, or whose
    graph does not compute its (feature) unknown score."""
    unk = (model.metadata.get("calibration") or {}).get("unknown") or {}
    if reject and not unk.get("threshold") is not None:
        raise TlkitError(f"--reject: {model_path} has no unknown threshold; add one with "
                         f"tlkit calibrate {model_path} --data SRC (the data it was trained "
                         f"on; its run's index is used).")
    if reject and unk.get("score") == "mahalanobis" and not model.has_feature_score:
        raise TlkitError(f"--reject: {model_path} does not compute its unknown score "
                         f"(mahalanobis, on the model's features; int8 TFLite exports leave "
                         f"it out): predict with the .h5/.keras model or a float export.")


def predict_files(model_path, inputs, top_k=3, batch_size=32, on_bad_image="skip",
                  resize=None):
    """Top-k class names and probabilities for an image file or a folder of images.

    Returns:
        A list of `{"path": str, "top": [(class_name, probability), ...]}`, one per readable
        image (see `iter_predictions` for streaming and skipped files).
    """
    return list(iter_predictions(model_path, inputs, top_k=top_k, batch_size=batch_size,
                                 on_bad_image=on_bad_image, resize=resize))


def find_index(model_path, source, metadata=None):
    """The index of the run that trained `model_path`, when it was written for `source`.

    tlkit finetune writes `index.json` into the report folder beside the model
    (`saved_models/photos.h5` -> `saved_models/photos/index.json`); an exported artifact
    records that file in its metadata (`index`), so it is found from anywhere.
    """
    import json

    kind, arg, _ = data_lib.parse_source(source)
    if kind != "folder":
        return None
    candidates = [pathlib.Path(model_path).with_suffix("") / index_lib.FILENAME]
    if (metadata or {}).get("index"):
        candidates.append(pathlib.Path(metadata["index"]))
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            with open(candidate, encoding="utf-8") as f:
                root = json.load(f).get("root")
        except (OSError, ValueError):
            continue
        if root and os.path.isdir(arg) and os.path.realpath(root) == os.path.realpath(arg):
            return candidate
    return None


def evaluate_file(model_path, data=None, *, split="test", out_dir=None, seed=0,
                  val_fraction=0.1, test_fraction=0.1, on_bad_image="skip", download=False,
                  batch_size=64, index=None, resize=None, tta=1, source=None):
    """Evaluate a saved model on a data source; the data is converted to the model's input.

    Args:
        model_path: a `.h5`/`.keras` model, or any artifact of `tlkit.deploy.artifacts`.
        data: any `tlkit.data.load` source, named as in `tlkit.finetune(data=...)`.
        source: the old name of `data` (deprecated: a DeprecationWarning).
        split: `"test"` (the same split `finetune` held out), `"val"`, `"train"` or `"all"`.
        out_dir: where report.json and confusion_matrix.png go (None: nothing written).
        index: the run's `index.json`; by default the one in the model's report folder when
            it was written for this folder. With it, exactly that run's split is scored and
            only its files are opened; without one, the folder is split again by `seed`.
        tta: average the probabilities over this many test-time augmentation variants
            (1: none; see `tlkit.evaluation.tta`); recorded as `tta` in the report.
        resize: how files are fitted to the model's input; default the mode the artifact
            records (see `iter_predictions`), else the index's, else squash.

    Returns:
        The report dict of `tlkit.evaluation.report.evaluate`.
    """
    source = _data_argument(data, source)
    if split not in ("test", "val", "train", "all"):
        raise TlkitError(f"--split {split!r} is not valid: use test, val, train or all.")
    tta_lib.check(tta)
    if out_dir is not None:
        saving.check_folder_writable(out_dir, "--out")
    model = artifacts.load(model_path)
    ds, index = load_run_data(model, model_path, source, index=index, seed=seed,
                              val_fraction=val_fraction, test_fraction=test_fraction,
                              on_bad_image=on_bad_image, download=download, resize=resize)
    parts = [ds.split(s) for s in (("train", "val", "test") if split == "all" else (split,))]
    x = data_lib.concat([p for p, _ in parts])
    y = np.concatenate([q for _, q in parts])
    model_names = model.class_names if model.has_class_names else None
    if model_names and list(model_names) != list(ds.class_names):
        missing = sorted(set(ds.class_names) - set(model_names))
        if missing:
            raise TlkitError(f"Data {source} has classes the model {model_path} does not know: "
                             f"{', '.join(missing[:10])}. The model's classes: "
                             f"{', '.join(model_names)}.")
        remap = np.array([model_names.index(c) for c in ds.class_names])
        y = remap[y]
    names = list(model_names) if model_names else list(ds.class_names)
    if len(x) == 0:
        raise TlkitError(f"The {split} split of {source} is empty.")
    predictions = []
    rep = report_lib.evaluate(tta_lib.wrap(model, tta), x, y, names, out_dir=out_dir,
                              batch_size=batch_size, predictions=predictions,
                              extra={"model": str(model_path), "model_kind": model.kind,
                                     "data": str(source), "split": split, "tta": tta,
                                     "index": str(index) if index is not None else None})
    rep["selective"] = selective_report(predictions[0][0], predictions[0][1], model.metadata,
                                        out_dir)
    if out_dir is not None:
        rep["files"]["risk_coverage"] = rep["selective"].pop("file")
        report_lib.write_json(rep, pathlib.Path(out_dir) / "report.json")
    return rep


def _data_argument(data, source):
    """`data`, or the deprecated `source=` of old callers (not both)."""
    if source is None:
        if data is None:
            raise TlkitError("evaluate_file needs data=: a data source (an image folder, "
                             "tfds:NAME, npz:PATH, fashion_mnist, digits).")
        return data
    import warnings

    if data is not None:
        raise TlkitError("evaluate_file: give data= only (source= is its old name).")
    warnings.warn("evaluate_file(source=...) is deprecated: use data=..., as in "
                  "tlkit.finetune(data=...).", DeprecationWarning, stacklevel=3)
    return source


def selective_report(raw_probs, y, metadata, out_dir=None):
    """The error at full, 90% and 95% coverage (the most confident kept: ranked by the
    calibrated maximum probability, as `tlkit.calibrate.run` ranks them), the calibrated ECE,
    and risk_coverage.png in `out_dir`; for a probability unknown score, the share of these
    images its threshold keeps."""
    t, unk = calibrate_lib.from_metadata(metadata)
    kind = (unk or {}).get("score", unknown.DEFAULT_SCORE)
    probs = calibrate_lib.apply(raw_probs, t)
    correct = probs.argmax(1) == np.asarray(y)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    out = {"score": kind, "ranked_by": "confidence", "temperature": t,
           "error_full": float(1 - correct.mean()) if len(correct) else float("nan"),
           "error_at_90": metrics.error_at_coverage(confidence, correct, 0.90),
           "error_at_95": metrics.error_at_coverage(confidence, correct, 0.95),
           "ece": metrics.ece(probs, y), "nll": metrics.nll(probs, y)}
    if unk and unk.get("threshold") is not None and kind in unknown.PROBABILITY_SCORES:
        scores = unknown.scores(raw_probs, kind, t)
        out["coverage_at_threshold"] = float(np.mean(scores <= unk["threshold"]))
    if out_dir is not None:
        out["file"] = str(plots.plot_risk_coverage(
            confidence, correct, pathlib.Path(out_dir) / "risk_coverage.png"))
    return out


def load_run_data(model, model_path, source, *, index=None, seed=0, val_fraction=0.1,
                  test_fraction=0.1, on_bad_image="skip", download=False, resize=None):
    """`(dataset, index)`: `source` at the artifact's input, split as its run split it (the
    run's index when there is one, see `find_index`; else a new split by `seed`)."""
    shape = model.input_shape
    resize = resize or model_resize(model)
    index = index or find_index(model_path, source, model.metadata)
    if index is not None:
        kind, arg, _ = data_lib.parse_source(source)
        ds = index_lib.load(index, root=arg if kind == "folder" else None,
                            image_size=shape[:2], channels=shape[2], resize=resize)
    else:
        ds = data_lib.load(source, image_size=shape[:2], channels=shape[2], seed=seed,
                           val_fraction=val_fraction, test_fraction=test_fraction,
                           on_bad_image=on_bad_image, download=download,
                           resize=resize or data_lib.DEFAULT_RESIZE)
    return ds, index
