"""A model card (Markdown) beside every trained model, built from what `finetune` writes.

`write(model_path)` reads the model's tlkit metadata, the run's `report.json` (and
`settings.yaml` when there is one) from the report folder and writes `model_card.md` into
that folder: `saved_models/photos.h5` -> `saved_models/photos/model_card.md`, beside
`report.json` and `confusion_matrix.png` (linked relatively, so the folder can move with the
model). The card has:

- a summary line (strategy, backbone, weights, classes, test accuracy);
- Data: source, image shape, split counts, training images per class, skipped files;
- Training plan: the phases (epochs, learning rate, trained stages), the head and the
  training options (schedule, label smoothing, class weights, mixup...), the best epoch;
  for a model `tlkit tune` chose, the search and the best hyperparameters instead;
- Metrics: accuracy, top-k, macro F1 and the per-class table, the confusion matrix image;
- Limitations: the run's warnings (random base weights, chance-level accuracy), the size of
  the test split (a 95% interval of the accuracy), the input contract;
- How to load it in plain Keras (runnable code, no tlkit needed);
- the run settings.

Example:
    >>> from tlkit.evaluation import model_card
    >>> path = model_card.write("saved_models/photos.h5")   # doctest: +SKIP
    >>> path.name                                          # doctest: +SKIP
    'model_card.md'
"""

import json
import math
import os
import pathlib

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.deploy import saving

FILENAME = "model_card.md"


def default_path(model_path):
    """Where the card of `model_path` goes: `<report folder>/model_card.md`."""
    return pathlib.Path(model_path).with_suffix("") / FILENAME


def write(model_path, report=None, *, settings=None, metadata=None, out=None):
    """Write the model card of a saved model; returns its path.

    Args:
        model_path: the saved `.h5` or `.keras` model.
        report: the report folder or the report dict (default: the folder beside the model,
            `saved_models/photos.h5` -> `saved_models/photos/`, and its `report.json`).
        settings: the run settings to list (default: the folder's `settings.yaml`, if any).
        metadata: the model's tlkit metadata (default: read from `model_path`).
        out: the card's path (default: `model_card.md` in the report folder).
    """
    model_path = pathlib.Path(model_path)
    folder = model_path.with_suffix("")
    if isinstance(report, (str, os.PathLike)):
        folder = pathlib.Path(report)
        report = None
    if report is None:
        report = _read_json(folder / "report.json")
    meta = saving.read_metadata(model_path) if metadata is None else metadata
    if settings is None and (folder / "settings.yaml").is_file():
        import yaml

        settings = yaml.safe_load((folder / "settings.yaml").read_text(encoding="utf-8"))
    out = pathlib.Path(out) if out is not None else folder / FILENAME
    # as JSON would give them back (tuples as lists...): a card from the report dict in memory
    # is the card from report.json
    report, meta, settings = (json.loads(json.dumps(x, default=fileio.json_default))
                              for x in (report, meta, settings))
    text = render(model_path, report, meta, settings, out.parent)
    with fileio.atomic_path(out, suffix=".md") as tmp:
        pathlib.Path(tmp).write_text(text, encoding="utf-8")
    return out


def render(model_path, report, metadata, settings=None, card_dir="."):
    """The card's Markdown text (see the module doc); links are relative to `card_dir`."""
    model_path = pathlib.Path(model_path)
    rel = pathlib.Path(os.path.relpath(model_path, card_dir)).as_posix()
    meta, rep = metadata or {}, report or {}
    plan = rep.get("plan") or meta.get("plan") or {}
    data = rep.get("data") or meta.get("data") or {}
    names = rep.get("class_names") or meta.get("class_names") or []
    sections = [
        f"# Model card: {model_path.name}",
        _summary(meta, rep, plan, names),
        f"Model file: [`{rel}`]({rel}). Trained with tlkit {meta.get('tlkit_version', '?')} "
        f"(Keras {meta.get('keras_version', '?')}) on {meta.get('saved_at', '?')[:10]}.",
        "## Data\n\n" + _data(data),
        "## Training plan\n\n" + (_plan(plan, rep, meta) if plan or not meta.get("tuning")
                                    else _tuning(meta)),
        "## Metrics\n\n" + _metrics(rep, card_dir),
        "## Calibration and unknown images\n\n" + _calibration(
            rep.get("calibration") or meta.get("calibration"), card_dir),
        "## Limitations\n\n" + _limitations(meta, rep, names),
        "## How to load it in plain Keras\n\n" + _usage(model_path, rel, meta, names),
    ]
    if settings:
        sections.append("## Run settings\n\n" + "\n".join(
            f"- `{k}`: `{v}`" for k, v in sorted(settings.items()) if v not in (None, "", [])))
    return "\n\n".join(sections) + "\n"


def _summary(meta, rep, plan, names):
    acc = rep.get("accuracy")
    strategy = meta.get("strategy") or plan.get("strategy", "?")
    backbone = meta.get("backbone") or plan.get("backbone", "?")
    shown = ", ".join(map(str, names[:12])) + (", ..." if len(names) > 12 else "")
    return (f"An image classifier of {len(names)} classes ({shown}): strategy **{strategy}** on "
            f"the backbone **{backbone}** (base weights: {meta.get('weights', '?')})"
            + (f"; test accuracy **{acc:.4f}** (n={rep.get('n')})." if acc is not None else "."))


def _data(data):
    if not data:
        return "No data summary was recorded."
    counts = data.get("counts", {})
    lines = [f"- Source: `{data.get('source', '?')}`",
             f"- Image shape (H, W, C): {tuple(data.get('image_shape', ()))}",
             "- Split: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
             f"- Skipped unreadable files: {data.get('skipped', 0)}"]
    changed = data.get("overrides") or {}
    if changed.get("exclude"):
        lines.append(f"- Left out: {changed.get('excluded', 0)} file(s) listed in "
                     f"`{changed['exclude']}` (`--exclude`)")
    if changed.get("relabel"):
        lines.append(f"- Relabelled: {changed.get('relabelled', 0)} file(s) by "
                     f"`{changed['relabel']}` (`--relabel`)")
    per_class = data.get("train_per_class") or {}
    if per_class:
        lines += ["", "| class | training images |", "|---|---:|"]
        lines += [f"| {_cell(c)} | {n} |" for c, n in per_class.items()]
    return "\n".join(lines)


def _plan(plan, rep, meta):
    head = plan.get("head") or {}
    lines = [f"- Strategy: `{plan.get('strategy', meta.get('strategy', '?'))}`, backbone "
             f"`{plan.get('backbone', meta.get('backbone', '?'))}`, cut stage "
             f"{plan.get('cut_stage')}, BN in training mode: {plan.get('bn_training')}",
             "- Head: " + ", ".join(f"{k} {v}" for k, v in head.items())]
    options = {k: rep.get(k, meta.get(k)) for k in ("schedule", "warmup", "lr_decay_per_stage",
                                                    "label_smoothing", "class_weight", "mixup",
                                                    "cutmix")}
    shown = {k: v for k, v in options.items() if v is not None}
    if shown:
        lines.append("- Training options: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    best = rep.get("best") or meta.get("best")
    if best:
        lines.append(f"- Kept weights: phase `{best.get('phase')}`, epoch {best.get('epoch')} "
                     f"(val_loss {best.get('val_loss', float('nan')):.4f})")
    phases = plan.get("phases") or []
    if phases:
        lines += ["", "| phase | epochs | learning rate | trained stages |", "|---|---:|---:|---|"]
        for ph in phases:
            stages = ph.get("train_stages") or []
            lines.append(f"| {ph.get('name')} | {ph.get('epochs')} | {ph.get('learning_rate')} "
                         f"| {', '.join(map(str, stages)) or 'head only'} |")
    return "\n".join(lines)


def _tuning(meta):
    """The plan of a model that `tlkit tune` chose: the search and the best hyperparameters."""
    info = meta.get("tuning") or {}
    lines = [f"- Chosen by `tlkit tune`: tuner `{info.get('tuner')}`, objective "
             f"`{info.get('objective')}` = {info.get('score')}, best of {info.get('trials')} "
             f"trials (trial {info.get('trial')}, {info.get('epochs')} epochs each; the "
             f"saved model: {info.get('best_model')})"]
    values = meta.get("hyperparameters") or {}
    if values:
        lines += ["", "| hyperparameter | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in values.items()]
    return "\n".join(lines)


def _metrics(rep, card_dir):
    if "accuracy" not in rep:
        return "No evaluation report was found."
    topk = next((k for k in rep if k.startswith("top_") and k.endswith("_accuracy")), None)
    lines = [f"On the held-out test split (n={rep['n']}): accuracy **{rep['accuracy']:.4f}**"
             + (f", {topk.replace('_', '-')} {rep[topk]:.4f}" if topk else "")
             + f", macro F1 {rep['macro_f1']:.4f}.", "",
             "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for row in rep.get("per_class", []):
        lines.append(f"| {_cell(row['class'])} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {row['support']} |")
    if (pathlib.Path(card_dir) / "confusion_matrix.png").is_file():
        lines += ["", "![Confusion matrix (rows: true class, columns: predicted)]"
                      "(confusion_matrix.png)"]
    if (pathlib.Path(card_dir) / "curves.png").is_file():
        lines += ["", "![Training curves](curves.png)"]
    return "\n".join(lines)


def _calibration(cal, card_dir):
    if not cal:
        return ("Not calibrated: the probabilities are the softmax outputs as trained, and "
                "there is no unknown threshold (`tlkit calibrate MODEL --data ...` adds both).")
    unk = cal.get("unknown") or {}
    lines = [f"Temperature scaling (one T fitted on the {cal.get('n_val', '?')} validation "
             f"images by NLL): **T = {cal['temperature']:.3f}**; tlkit applies it at "
             f"prediction time, p = softmax(log p_model / T); the predicted classes are "
             f"unchanged.", "",
             "| on the test split | before | after |", "|---|---:|---:|",
             f"| ECE (15 bins) | {cal['ece_before']:.2%} | {cal['ece_after']:.2%} |",
             f"| NLL | {cal['nll_before']:.4f} | {cal['nll_after']:.4f} |",
             f"| Brier | {cal['brier_before']:.4f} | {cal['brier_after']:.4f} |", ""]
    if unk:
        lines.append(f"Unknown images: score `{unk.get('score')}` (higher = more likely "
                     f"unknown), rejected above **{unk.get('threshold'):.4g}**, the threshold "
                     f"that keeps {unk.get('coverage', 0):.0%} of the validation images "
                     f"(`tlkit predict --reject`).")
        if unk.get("score") == "mahalanobis":
            params = unk.get("params") or {}
            layer = params.get("layer") if isinstance(params, dict) else params.layer
            lines += ["", f"The score is the squared Mahalanobis distance of the image's "
                          f"features (the output of `{layer}`) to the nearest class mean, "
                          f"with one shared covariance, fitted on {unk.get('fit_images', '?')} "
                          f"{unk.get('fit_on', 'images')}. The `.h5`/`.keras` file stores "
                          f"the means and the whitening matrix; SavedModel, TFLite (float) and "
                          f"ONNX exports compute the score in their graph, as a second output "
                          f"`unknown_score`."]
        lines.append("")
    if cal.get("error_at_90") is not None:
        lines.append(f"Error on the test split: {cal.get('error_full', float('nan')):.2%} at "
                     f"full coverage, {cal['error_at_90']:.2%} on the 90% most confident, "
                     f"{cal.get('error_at_95', float('nan')):.2%} on the 95%.")
    if (pathlib.Path(card_dir) / "reliability.png").is_file():
        lines += ["", "![Reliability before and after temperature scaling](reliability.png)"]
    return "\n".join(lines)


def _limitations(meta, rep, names):
    notes = list(dict.fromkeys(list(rep.get("warnings") or []) + list(meta.get("warnings") or [])))
    lines = [f"- **Warning:** {w}" for w in notes]
    if str(meta.get("weights", "")).startswith("none"):
        lines.append("- The base started from random weights (no pretrained features).")
    n, acc = rep.get("n"), rep.get("accuracy")
    if n and acc is not None:
        half = 1.96 * math.sqrt(max(acc * (1 - acc), 1e-12) / n)
        lines.append(f"- The test split has {n} images: the accuracy is known to about "
                     f"±{half:.3f} (95% normal interval)." + (" Small: treat it as a rough "
                                                              "estimate." if n < 100 else ""))
    lines.append(f"- It knows only these {len(names)} classes and scores every input as one of "
                 "them; it was evaluated on images from the same source as its training data "
                 "only.")
    contract = meta.get("input") or {}
    shape = contract.get("shape") or meta.get("input_shape")
    lines.append(f"- Input: raw pixels 0..255 ({contract.get('dtype', 'float32')}, NHWC) of "
                 f"shape {tuple(shape or ())}; preprocessing is inside the model. Image files "
                 f"are fitted to it by resize `{contract.get('resize', 'squash')}`, "
                 f"{contract.get('interpolation', 'bilinear')}, antialias "
                 f"{contract.get('antialias', False)} (see the code below).")
    return "\n".join(lines)


_FIT = {"squash": "stretched to the input, the aspect ratio ignored",
        "crop": "the largest centred crop of the input's aspect ratio, then resized",
        "pad": "resized to fit inside the input, aspect ratio kept, black bars around"}


def _usage(model_path, rel, meta, names):
    shape = meta.get("input_shape") or (meta.get("input") or {}).get("shape") or [224, 224, 3]
    mode = (meta.get("input") or {}).get("resize", "squash")  # files before it: squash
    if model_path.suffix == ".keras":
        read = (f'with zipfile.ZipFile("{rel}") as zf:  # tlkit\'s metadata entry in the zip\n'
                f'    meta = json.loads(zf.read("tlkit_metadata.json"))')
        imports = "import json\nimport zipfile\n\nimport keras\nimport numpy as np"
    else:
        read = (f'with h5py.File("{rel}", "r") as f:  # tlkit\'s metadata attribute\n'
                f'    meta = json.loads(f.attrs["tlkit_metadata"])')
        imports = "import json\n\nimport h5py\nimport keras\nimport numpy as np"
    lines = [imports, "",
             f'model = keras.models.load_model("{rel}")  # safe_mode stays on', read,
             f'class_names = meta["class_names"]  # {json.dumps(names[:5])[:-1]}'
             f'{", ..." if len(names) > 5 else ""}]',
             f"H, W = {shape[0]}, {shape[1]}  # the input; meta[\"input\"]: resize \"{mode}\", "
             f"bilinear, no antialias",
             f"# {mode}: {_FIT.get(mode, mode)}",
             'image = keras.utils.load_img("photo.jpg")  # any size (target_size= would '
             'resize with PIL)',
             "x = keras.utils.img_to_array(image)  # (h, w, 3), raw pixels 0..255"]
    if shape[-1] == 1:
        lines.append("x = np.round(x @ np.float32([0.2989, 0.5870, 0.1140]))[..., None]  "
                     "# gray: ITU-R 601 luma")
    if mode == "pad":
        lines += ["h, w = (np.float32(d) for d in x.shape[:2])  # tf.image.resize_with_pad's "
                  "float32 sizes",
                  "r = max(w / np.float32(W), h / np.float32(H))",
                  "top, left = int((np.float32(H) - h / r) / 2), int((np.float32(W) - w / r) / 2)",
                  'x = keras.ops.image.resize(x, (int(h / r), int(w / r)), '
                  'interpolation="bilinear",\n                           antialias=False)',
                  "x = keras.ops.convert_to_numpy(x)",
                  "x = np.pad(x, ((top, H - len(x) - top), (left, W - x.shape[1] - left), "
                  "(0, 0)))"]
    else:
        crop = ",\n                           crop_to_aspect_ratio=True" if mode == "crop" else ""
        lines.append(f'x = keras.ops.image.resize(x, (H, W), interpolation="bilinear", '
                     f'antialias=False{crop})')
    lines += ["x = np.floor(keras.ops.convert_to_numpy(x) + 0.5)[None]  # whole pixel values, "
              "as tlkit's",
              "probs = model.predict(x, verbose=0)[0]"]
    if float((meta.get("calibration") or {}).get("temperature") or 1.0) != 1.0:
        lines += ['z = np.log(np.clip(probs, 1e-12, 1.0)) / meta["calibration"]["temperature"]'
                  "  # calibrated",
                  "probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()"]
    lines.append("print(class_names[int(np.argmax(probs))], float(probs.max()))")
    return ("The path is relative to this card's folder. No tlkit needed; this gives the "
            "probabilities `tlkit predict` gives (on JPEGs up to small decoder differences: "
            "tlkit decodes them with TensorFlow's fast integer DCT, Pillow with its accurate "
            "one):\n\n```python\n" + "\n".join(lines) + "\n```")


def _cell(text):
    return str(text).replace("|", "\\|")


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TlkitError(f"No report for the model card: {path} does not exist (pass "
                         f"report=).") from None
    except (OSError, ValueError) as e:
        raise TlkitError(f"Cannot read {path}: {e}") from None
