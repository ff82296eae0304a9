"""Run settings as dataclasses: each default, flag, help text and vocabulary written once.

Each field carries its CLI form in `metadata` (`flag`, `help`, `choices`, `type`, `metavar`);
`add_fields` turns a dataclass's fields into argparse flags, so the CLI's defaults *are* the
dataclass defaults, and `tlkit.finetune` / `tlkit.data.load` take their signature defaults
from the same instances (`DATA`, `MODEL`, `RUN`, `RECIPE`, `OUTPUT`). `resolve` reads a
parsed namespace back into the dataclasses; settings.yaml is written from them
(`tlkit.config.recipes.dump`).

Kept free of TensorFlow, Keras and NumPy: `tlkit --help` builds its parsers from here.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> _ = add_fields(p, DataSettings, ("val_fraction", "resize"))
    >>> ns = p.parse_args(["--resize", "crop"])
    >>> ns.val_fraction == DATA.val_fraction, ns.resize
    (True, 'crop')
    >>> resolve(ns, DataSettings).resize
    'crop'
"""

import argparse
import dataclasses

from tlkit.core import choices

SCHEDULE_CHOICES = ("constant", "cosine", "onecycle")  # tlkit.training.schedules.SCHEDULES
HEAD_SOLVER_CHOICES = ("auto", "closed-form", "adam")  # tlkit.training.phases.head_solver_choice
_CLI_KEYS = ("help", "choices", "type", "metavar", "required")


# -- argument types (argparse names the flag in front of their messages) --------------------


def csv_ints(text):
    """`"256,128"` -> `(256, 128)`, for flags such as `--dense`."""
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")


def weights_arg(text):
    """`none`, `random` or `null` -> None (random weights); anything else as given."""
    return None if str(text).lower() in ("none", "random", "null") else text


def learning_rate_arg(text):
    """`--lr`: a positive number or `auto` (the learning-rate finder picks it)."""
    if str(text).lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def unit_interval(flag, low_open=False):
    """An argparse type for a number in [0, 1) (or (0, 1] with `low_open`) for `flag`."""
    def convert(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = 0 < v <= 1 if low_open else 0 <= v < 1
        if not ok:
            span = "(0, 1]" if low_open else "[0, 1)"
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text}")
        return v

    convert.__name__ = "number"
    return convert


def non_negative(text):
    """A finite number >= 0 (`--mixup`, `--cutmix`)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


non_negative.__name__ = "number"


def setting(default, help, **cli):
    """A dataclass field with its CLI form: `help`, and optionally `flag` (default `--name`),
    `choices`, `type`, `metavar`; `off_flag`/`off_help` add a `--no-X` switch to a None
    default (on, off, or unset). A True default is a `--no-X` switch (`flag`), False a switch."""
    return dataclasses.field(default=default, metadata=dict(cli, help=help))


# -- the settings -----------------------------------------------------------------------------


@dataclasses.dataclass
class DataSettings:
    """Where the images come from and how they are split (`tlkit.data.load`)."""

    data: object = setting(None, "image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, "
                                 "digits (required, here or in --recipe)")
    image_size: object = setting(None, "input size N (NxN) instead of the backbone's default",
                                 type=int, metavar="N")
    val_fraction: float = setting(0.1, "validation share when the data has no val split",
                                  type=float)
    test_fraction: float = setting(0.1, "test share when the data has no test split",
                                   type=float)
    on_bad_image: str = setting("skip", "unreadable image files: skip them with one warning, "
                                        "or stop", choices=choices.BAD_IMAGE_POLICIES)
    resize: str = setting("squash", "fit images to the input size: squash (stretch), crop "
                                    "(centre crop to the aspect ratio) or pad (keep it, black "
                                    "bars)", choices=choices.RESIZE_MODES)
    download: bool = setting(False, "let tfds download the data set (default: offline, local "
                                    "data only)")
    index: object = setting(None, "an index.json (a run's, or tlkit audit --fix-splits') that "
                                  "fixes which file of the --data folder is in which split "
                                  "(default: a new seeded split)", metavar="FILE")
    exclude: object = setting(None, "leave out the files an audit.csv (tlkit audit) or a file "
                                    "of paths, one a line, lists (default: none)",
                              metavar="FILE")
    relabel: object = setting(None, "a path,label CSV whose labels replace the folders' "
                                    "(default: none)", metavar="FILE.csv")


@dataclasses.dataclass
class ModelSettings:
    """The backbone, its weights, the strategy and the head (`tlkit.training.strategies.plan`)."""

    backbone: str = setting("mobilenet_v2", "backbone name (tlkit plan --list), zoo:NAME, or a "
                                            "saved .h5 classifier")
    weights: object = setting("imagenet", "imagenet, none, or a local weights file",
                              type=weights_arg)
    strategy: str = setting("small-similar", "the strategy; auto measures with advise, then "
                                             "trains what it recommends",
                            choices=choices.STRATEGY_CHOICES)
    unfreeze: object = setting(None, "stages to unfreeze in the fine-tuning phase (default: a "
                                     "quarter of the stages for large-similar, half for "
                                     "small-dissimilar)", type=int)
    cut_stage: object = setting(None, "small-dissimilar: cut the base after this stage "
                                      "(default: no cut)", type=int)
    dropout: object = setting(None, "head dropout (default: 0.2; 0.5 for small-dissimilar)",
                              type=float)
    dense: tuple = setting((), "hidden head widths, e.g. 256,128 (default: none)",
                           type=csv_ints)
    head_bn: str = setting("none", "BatchNormalization in the head's hidden layers",
                           choices=choices.BN_PLACEMENTS)
    pooling: str = setting("avg", "how the head reads the base's feature map",
                           choices=choices.POOLINGS)


@dataclasses.dataclass
class RecipeSettings:
    """The training recipe of issue 16; `tlkit.training.train_settings.TrainSettings` checks it."""

    schedule: str = setting("constant", "learning-rate schedule of every phase: constant, "
                                        "cosine (linear warm-up in fine-tuning phases, then "
                                        "cosine decay to 0) or onecycle (fastai's)",
                            choices=SCHEDULE_CHOICES)
    warmup: float = setting(0.1, "share of a fine-tuning phase's steps that cosine warms up "
                                 "over", type=unit_interval("--warmup"))
    lr_decay_per_stage: float = setting(
        1.0, "F in (0, 1]: in fine-tuning phases the k-th stage below the top trains at LR x "
             "F^k (default: 1, the same rate for all)",
        type=unit_interval("--lr-decay-per-stage", True))
    label_smoothing: float = setting(0.0, "S in [0, 1): training targets (1-S) one-hot + "
                                          "S/classes (default: 0, off)",
                                     type=unit_interval("--label-smoothing"))
    class_weight: object = setting(None, "balanced, or a mapping like cat=2,dog=1 (classes not "
                                         "named weigh 1) (default: none, every class weighs 1)")
    mixup: float = setting(0.0, "mixup Beta(A, A) parameter, e.g. 0.2, training batches only "
                                "(default: 0, off)", type=non_negative)
    cutmix: float = setting(0.0, "cutmix Beta(A, A) parameter, e.g. 1.0, training batches "
                                 "only; phases then train on images, not cached features "
                                 "(default: 0, off)", type=non_negative)
    head_solver: str = setting("auto", "how a head trains on cached features: closed-form "
                                       "(shrinkage LDA, scaled on val; milliseconds), adam "
                                       "(gradient steps) or auto (closed-form under the "
                                       "default budget where it applies, adam with --epochs)",
                               choices=HEAD_SOLVER_CHOICES)


@dataclasses.dataclass
class RunSettings:
    """How finetune trains: epochs, rates, batches, caching and the runtime
    (`tlkit.training.train`)."""

    augment: bool = setting(True, "no RandomFlip/RandomRotation/RandomZoom on training images "
                                  "(default: augment)", flag="--no-augment")
    epochs: object = setting(None, "total epochs (default: budgeted by steps: each phase may "
                                   "run 10 epochs or up to 2,000 optimizer steps for a head "
                                   "on cached features, 600 when base stages train, and "
                                   "stops after 100 steps without a better val_loss; given, "
                                   "every phase runs at most its epochs)", type=int)
    head_epochs: object = setting(None, "epochs of the head phase of two-phase strategies "
                                        "(default: half of --epochs, rounded up)", type=int)
    learning_rate: object = setting(None, "learning rate of the first phase, or auto: the "
                                          "learning-rate finder (tlkit lr-find) picks it "
                                          "(default: 1e-3; 1e-4 for large-dissimilar from "
                                          "pretrained weights)",
                                    flag="--lr", type=learning_rate_arg)
    fine_tune_lr: object = setting(None, "learning rate of the fine-tuning phase (default: "
                                         "lr/10 for large-similar, lr/20 for small-dissimilar)",
                                   type=float)
    batch_size: int = setting(32, "batch size", type=int)
    patience: int = setting(5, "EarlyStopping patience on val_loss, in epochs", type=int)
    seed: int = setting(0, "seed of the split, the initialisation and the shuffling", type=int)
    cache_features: bool = setting(True, "do not cache the frozen base's features (default: "
                                         "cache them)", flag="--no-cache")
    augment_passes: int = setting(1, "cached passes over the training images, the first "
                                     "un-augmented", type=int)
    autotune: object = setting(None, "tf.data autotuning (default: on with 5 or more CPU "
                                     "cores; on 2 cores it stalls between epochs)",
                               off_flag="--no-autotune",
                               off_help="tf.data without autotune, a fixed prefetch (default: "
                                        "see --autotune)")
    tensorboard: bool = setting(False, "TensorBoard logs in the report folder (default: off)")
    image_cache: bool = setting(False, "cache decoded, resized training images on disk (report "
                                       "folder) for phases that train on image files (default: "
                                       "decode every epoch)")
    cache_dir: object = setting(None, "keep cached features here and reuse them by content "
                                      "key, so later runs on the same data and backbone skip "
                                      "the forward pass (default: none, features live for this "
                                      "run only)")
    distribute: object = setting(None, "tf.distribute: all GPUs here (mirrored) or the machines "
                                       "in TF_CONFIG (multiworker) (default: none)",
                                 choices=("mirrored", "multiworker"))
    deterministic: bool = setting(False, "TensorFlow op determinism: the same --seed gives the "
                                         "same weights on GPUs too (slower there; CPU runs are "
                                         "deterministic already) (default: off)")
    jit_compile: bool = setting(False, "XLA-compile the train step (default: off, slower on "
                                       "small CPUs)")
    precision: str = setting("auto", "training precision: float32, mixed_bfloat16 (CPUs with "
                                     "avx512_bf16/AMX, TPUs, recent GPUs), mixed_float16 (GPUs "
                                     "with tensor cores), or auto: mixed_float16 on such GPUs, "
                                     "mixed_bfloat16 where a short probe of this base on this "
                                     "CPU shows it faster (cached), else float32. The saved "
                                     "model is float32 in every case", choices=choices.PRECISIONS)


CALIBRATE_CHOICES = ("none", "temperature")  # tlkit.calibrate.run.METHODS


@dataclasses.dataclass
class CalibrationSettings:
    """Calibrated probabilities and the unknown threshold after training (`tlkit.calibrate`)."""

    calibrate: object = setting(None, "after training, fit one temperature on the validation "
                                      "split (calibrated probabilities and an unknown "
                                      "threshold in the model), or none (default: temperature "
                                      "when the validation split has 20 or more images, else "
                                      "none with a warning)", choices=CALIBRATE_CHOICES)
    coverage: float = setting(0.95, "share of known (validation) images the unknown threshold "
                                    "keeps, in (0, 1]", type=unit_interval("--coverage", True))


@dataclasses.dataclass
class OutputSettings:
    """Where finetune writes the model and its report."""

    out: object = setting(None, "model file, e.g. saved_models/photos.h5 (default: "
                                "saved_models/<data>-<strategy>.h5, a name not yet taken)")
    report_dir: object = setting(None, "report folder (default: next to --out, named after it)")
    quiet: bool = setting(False, "no progress output (default: progress bars on a terminal, "
                                 "one line per epoch otherwise)")
    restart: bool = setting(False, "discard the saved state of an interrupted run in the "
                                   "report folder and start over (default: the same command "
                                   "continues it)")
    overwrite: bool = setting(False, "replace a finished run in --out (its model and report) "
                                     "trained with other settings (default: refuse; the same "
                                     "settings run again)")


@dataclasses.dataclass
class CurveSettings:
    """What `tlkit curve` measures: sizes, strategies and seeds (`tlkit.workflows.curve`)."""

    sizes: object = setting("2,5,10,20", "training images per class at each point of the "
                                         "curve, comma-separated (at least 2 sizes)",
                            metavar="K,K,...")
    strategies: object = setting("small-similar,scratch",
                                 "strategies to compare, comma-separated: the four strategies "
                                 "and scratch (the same network from random weights, trained "
                                 "whole)", metavar="S,S,...")
    seeds: int = setting(3, "seeds per point (at least 2): each seed draws its own images and "
                            "initial weights", type=int, metavar="N")


DATA, MODEL, RECIPE, RUN, OUTPUT = (DataSettings(), ModelSettings(), RecipeSettings(),
                                    RunSettings(), OutputSettings())
CALIBRATION = CalibrationSettings()
CURVE = CurveSettings()
FINETUNE = (DataSettings, ModelSettings, RunSettings, RecipeSettings, CalibrationSettings,
            OutputSettings)


# -- to and from argparse ---------------------------------------------------------------------


def names(cls):
    """The field names of a settings dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def add_fields(group, cls, only=None, **overrides):
    """Add `cls`'s fields (or those named in `only`) as flags to an argparse parser or group.

    `overrides` maps a field name to CLI keywords that differ for one subcommand (e.g.
    `image_size={"help": ...}`); the default always stays the dataclass's. Returns the actions.
    """
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    actions = []
    for name in only or by_name:
        field = by_name[name]
        meta = {**field.metadata, **overrides.get(name, {})}
        kwargs = {k: meta[k] for k in _CLI_KEYS if k in meta}
        flag = meta.get("flag", "--" + name.replace("_", "-"))
        if isinstance(field.default, bool):  # a switch; a True default is switched off
            kwargs["action"] = "store_false" if field.default else "store_true"
        elif "off_flag" in meta:  # on, off, or unset (None: the library decides)
            kwargs["action"] = "store_true"
        actions.append(group.add_argument(flag, dest=name, default=field.default, **kwargs))
        if "off_flag" in meta:
            actions.append(group.add_argument(meta["off_flag"], dest=name,
                                              action="store_false", help=meta.get("off_help")))
    return actions


def resolve(namespace, cls):
    """An instance of `cls` from a parsed namespace (fields it lacks keep their defaults)."""
    values = vars(namespace) if not isinstance(namespace, dict) else namespace
    return cls(**{k: values[k] for k in names(cls) if k in values})


def as_dict(*instances):
    """One {field: value} mapping over settings instances (snake_case, as in settings.yaml)."""
    out = {}
    for instance in instances:
        out.update({f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)})
    return out
