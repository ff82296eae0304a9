"""Subcommand finetune: train a classifier with one of the strategies."""

import argparse
import pathlib
import re
import sys

from tlkit.choices import BN_PLACEMENTS, POOLINGS, STRATEGY_CHOICES
from tlkit.cli import subcommand
from tlkit.cli.args import add_data_flags, csv_ints, weights_arg
from tlkit.errors import TlkitError

SCHEDULE_CHOICES = ("constant", "cosine", "onecycle")  # tlkit.schedules.SCHEDULES
DEFAULT_SCHEDULE = "constant"  # tlkit.schedules.DEFAULT (kept here: --help imports no TF)
DEFAULT_WARMUP = 0.1
MODELS_DIR = pathlib.Path("saved_models")


def learning_rate_arg(text):
    """`--lr`: a positive number or `auto` (the learning-rate finder picks it)."""
    if str(text).lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def unit_interval(flag, low_open=False):
    """An argparse type for a number in [0, 1) (or (0, 1] with `low_open`).

    argparse names the flag (`--flag`) in front of the message."""
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
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return v


non_negative.__name__ = "number"


def add_model_flags(g):
    """Backbone, weights, strategy and head flags (finetune and lr-find)."""
    g.add_argument("--backbone", default="mobilenet_v2",
                   help="backbone name (tlkit plan --list), zoo:NAME, or a saved .h5 "
                        "classifier (default: mobilenet_v2)")
    g.add_argument("--weights", type=weights_arg, default="imagenet",
                   help="imagenet, none, or a local weights file (default: imagenet)")
    g.add_argument("--strategy", default="small-similar", choices=STRATEGY_CHOICES,
                   help="the strategy; auto measures with advise, then trains what it "
                        "recommends (default: small-similar)")
    g.add_argument("--unfreeze", type=int,
                   help="stages to unfreeze in the fine-tuning phase (default: a quarter of "
                        "the stages for large-similar, half for small-dissimilar)")
    g.add_argument("--cut-stage", type=int,
                   help="small-dissimilar: cut the base after this stage (default: no cut)")
    g.add_argument("--dropout", type=float,
                   help="head dropout (default: 0.2; 0.5 for small-dissimilar)")
    g.add_argument("--dense", type=csv_ints, default=(),
                   help="hidden head widths, e.g. 256,128 (default: none)")
    g.add_argument("--head-bn", default="none", choices=BN_PLACEMENTS,
                   help="BatchNormalization in the head's hidden layers (default: none)")
    g.add_argument("--pooling", default="avg", choices=POOLINGS,
                   help="how the head reads the base's feature map (default: avg)")


def add_recipe_flags(g):
    """The training-recipe flags of issue 16 (schedule, per-stage rates, regularisation)."""
    g.add_argument("--schedule", default=DEFAULT_SCHEDULE, choices=SCHEDULE_CHOICES,
                   help="learning-rate schedule of every phase: constant, cosine (linear "
                        "warm-up in fine-tuning phases, then cosine decay to 0) or onecycle "
                        f"(fastai's) (default: {DEFAULT_SCHEDULE})")
    g.add_argument("--warmup", type=unit_interval("--warmup"), default=DEFAULT_WARMUP,
                   help="share of a fine-tuning phase's steps that cosine warms up over "
                        f"(default: {DEFAULT_WARMUP})")
    g.add_argument("--lr-decay-per-stage", type=unit_interval("--lr-decay-per-stage", True),
                   default=1.0,
                   help="F in (0, 1]: in fine-tuning phases the k-th stage below the top "
                        "trains at LR x F^k (default: 1, the same rate for all)")
    g.add_argument("--label-smoothing", type=unit_interval("--label-smoothing"), default=0.0,
                   help="S in [0, 1): training targets (1-S) one-hot + S/classes "
                        "(default: 0, off)")
    g.add_argument("--class-weight",
                   help="balanced, or a mapping like cat=2,dog=1 (classes not named weigh 1) "
                        "(default: none, every class weighs 1)")
    g.add_argument("--mixup", type=non_negative, default=0.0,
                   help="mixup Beta(A, A) parameter, e.g. 0.2, training batches only "
                        "(default: 0, off)")
    g.add_argument("--cutmix", type=non_negative, default=0.0,
                   help="cutmix Beta(A, A) parameter, e.g. 1.0, training batches only; "
                        "phases then train on images, not cached features (default: 0, off)")


def _configure_finetune(p):
    g = p.add_argument_group("data")
    add_data_flags(g)
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no RandomFlip/RandomRotation/RandomZoom on training images "
                        "(default: augment)")
    add_model_flags(p.add_argument_group("model and strategy"))
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10, help="total epochs (default: 10)")
    g.add_argument("--head-epochs", type=int,
                   help="epochs of the head phase of two-phase strategies (default: half of "
                        "--epochs, rounded up)")
    g.add_argument("--lr", dest="learning_rate", type=learning_rate_arg, default=1e-3,
                   help="learning rate of the first phase, or auto: the learning-rate finder "
                        "(tlkit lr-find) picks it (default: 0.001)")
    g.add_argument("--fine-tune-lr", type=float,
                   help="learning rate of the fine-tuning phase (default: lr/10 for "
                        "large-similar, lr/20 for small-dissimilar)")
    add_recipe_flags(g)
    g.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    g.add_argument("--patience", type=int, default=5,
                   help="EarlyStopping patience on val_loss, in epochs (default: 5)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the split, the initialisation and the shuffling (default: 0)")
    g.add_argument("--no-cache", dest="cache_features", action="store_false",
                   help="do not cache the frozen base's features (default: cache them)")
    g.add_argument("--augment-passes", type=int, default=1,
                   help="cached passes over the training images, the first un-augmented "
                        "(default: 1)")
    g.add_argument("--autotune", dest="autotune", action="store_true", default=None,
                   help="tf.data autotuning (default: on with 5 or more CPU cores; on 2 cores "
                        "it stalls between epochs)")
    g.add_argument("--no-autotune", dest="autotune", action="store_false",
                   help="tf.data without autotune, a fixed prefetch (default: see --autotune)")
    g.add_argument("--tensorboard", action="store_true",
                   help="TensorBoard logs in the report folder (default: off)")
    g.add_argument("--image-cache", action="store_true",
                   help="cache decoded, resized training images on disk (report folder) for "
                        "phases that train on image files (default: decode every epoch)")
    g.add_argument("--cache-dir", help="keep cached features here and reuse them by content "
                   "key, so later runs on the same data and backbone skip the forward pass "
                   "(default: none, features live for this run only)")
    g.add_argument("--distribute", choices=("mirrored", "multiworker"),
                   help="tf.distribute: all GPUs here (mirrored) or the machines in TF_CONFIG "
                   "(multiworker) (default: none)")
    g.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: the same --seed gives the same weights on "
                        "GPUs too (slower there; CPU runs are deterministic already) "
                        "(default: off)")
    g.add_argument("--jit-compile", action="store_true",
                   help="XLA-compile the train step (default: off, slower on small CPUs)")
    g.add_argument("--mixed-precision", action="store_true",
                   help="mixed_float16 policy (default: off; helps on recent GPUs only)")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="model file, e.g. saved_models/photos.h5 (default: "
                                 "saved_models/<data>-<strategy>.h5, a name not yet taken)")
    g.add_argument("--report-dir", help="report folder (default: next to --out, named after "
                                        "it)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress output (default: progress bars on a terminal, one line "
                        "per epoch otherwise)")
    g.add_argument("--restart", action="store_true",
                   help="discard the saved state of an interrupted run in the report folder "
                        "and start over (default: the same command continues it)")
    p.add_argument("--recipe", help="YAML recipe that fills these flags; flags win "
                                    "(default: none)")


def data_name(data):
    """A file-name stem for a data source: `photos/` -> photos, `tfds:beans:train` -> beans."""
    text = str(data).rstrip("/\\")
    if text.startswith("tfds:"):
        text = text.split(":")[1]
    elif ":" in text and text.split(":", 1)[0] in ("npz",):
        text = pathlib.Path(text.split(":", 1)[1]).stem
    else:
        text = pathlib.Path(text).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "data"


def default_out(data, strategy, folder=MODELS_DIR):
    """`saved_models/<data>-<strategy>.h5`, or `-2`, `-3`, ... when that model exists.

    A report folder left by an interrupted run (its `state/`) is taken again, so that the
    same command continues that run.
    """
    stem = f"{data_name(data)}-{strategy}"
    for n in range(1, 10_000):
        path = pathlib.Path(folder) / (f"{stem}.h5" if n == 1 else f"{stem}-{n}.h5")
        report = path.with_suffix("")
        if path.exists():
            continue
        if not report.exists() or (report / "state").is_dir():
            return path
    raise TlkitError(f"--out: no free name {stem}-N.h5 in {folder}; give --out.")


def _discard_unused(folder, remove_parent=False):
    """Remove a default report folder that a failed run left with nothing to resume."""
    import shutil

    left = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    if left <= {".tlkit.lock", "state/settings.json"}:
        shutil.rmtree(folder, ignore_errors=True)
        if remove_parent:  # saved_models/ itself, when this run made it
            try:
                folder.parent.rmdir()
            except OSError:
                pass


def console_verbosity(quiet, stream=None):
    """0 when quiet, 1 (progress bars) on a terminal, 2 (one line per epoch) otherwise."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    return 1 if getattr(stream, "isatty", lambda: False)() else 2


@subcommand("finetune", "train a classifier with one of the four strategies")
def cmd_finetune(args):
    from tlkit import recipes
    from tlkit.transfer import finetune

    if not args.data:
        raise TlkitError("--data is required (a folder, tfds:NAME, npz:PATH, fashion_mnist or "
                         "digits), on the command line or in --recipe.")
    chosen = None
    if args.out is None:
        args.out = str(default_out(args.data, args.strategy))
        chosen = pathlib.Path(args.out).with_suffix("")
        existed = chosen.exists(), chosen.parent.exists()
        print(f"tlkit: no --out given: the model goes to {args.out}")
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "recipe", "quiet")}
    try:
        result = finetune(**settings, verbose=console_verbosity(args.quiet))
    except TlkitError:
        if chosen is not None and not existed[0] and args.report_dir is None:
            _discard_unused(chosen, remove_parent=not existed[1])
        raise
    folder = result.path.with_suffix("") if result.path else (args.report_dir and pathlib.Path(args.report_dir))
    if folder:
        # A recipe of this run (--lr auto stays auto: the rate found is in report.json).
        recipes.dump(vars(args), pathlib.Path(folder) / "settings.yaml")
    if args.strategy == "auto" and args.quiet:  # the choice is printed even when quiet
        print(f"tlkit: --strategy auto chose {result.plan.strategy}: "
              + "; ".join(result.report.get("reasons", [])))
    if "lr_find" in result.report:
        print(f"--lr auto: {result.report['lr_find']['suggested_lr']:.3g} (lr_find.png in "
              f"{folder or 'no report folder'})")
    if result.path:
        print(f"model: {result.path}")
    print(f"test accuracy: {result.report['accuracy']:.4f}")  # the last line, for scripts
    return 0


cmd_finetune.configure = _configure_finetune
