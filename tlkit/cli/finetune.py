"""Subcommand finetune: train a classifier with one of the strategies.

Its flags are the fields of `tlkit.config.settings.FINETUNE` (data, model, run, recipe, output),
and the settings.yaml it writes is those dataclasses, resolved.
"""

import pathlib
import re
import sys

from tlkit.cli import subcommand
from tlkit.cli.args import add_data_flags
from tlkit.config import settings
from tlkit.core.errors import TlkitError

SCHEDULE_CHOICES = settings.SCHEDULE_CHOICES  # tlkit.training.schedules.SCHEDULES
DEFAULT_SCHEDULE = settings.RECIPE.schedule  # tlkit.training.schedules.DEFAULT (--help imports no TF)
DEFAULT_WARMUP = settings.RECIPE.warmup  # tlkit.training.schedules.DEFAULT_WARMUP
MODELS_DIR = pathlib.Path("saved_models")


def add_model_flags(g, **overrides):
    """Backbone, weights, strategy and head flags (finetune and lr-find); `overrides` as in
    `settings.add_fields` (lr-find's --strategy has no auto)."""
    return settings.add_fields(g, settings.ModelSettings, **overrides)


def add_recipe_flags(g):
    """The training-recipe flags of issue 16 (schedule, per-stage rates, regularisation)."""
    return settings.add_fields(g, settings.RecipeSettings)


def _configure_finetune(p):
    g = p.add_argument_group("data")
    add_data_flags(g)
    settings.add_fields(g, settings.RunSettings, ("augment",))
    add_model_flags(p.add_argument_group("model and strategy"))
    g = p.add_argument_group("training")
    run = settings.names(settings.RunSettings)
    first = ("epochs", "head_epochs", "learning_rate", "fine_tune_lr")
    settings.add_fields(g, settings.RunSettings, first)
    add_recipe_flags(g)
    settings.add_fields(g, settings.RunSettings,
                        [n for n in run if n not in first and n != "augment"])
    settings.add_fields(p.add_argument_group("calibration"), settings.CalibrationSettings)
    settings.add_fields(p.add_argument_group("output"), settings.OutputSettings)
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
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.config import recipes
    from tlkit.workflows.finetune import run_finetune

    if not args.data:
        raise TlkitError("--data is required (a folder, tfds:NAME, npz:PATH, fashion_mnist or "
                         "digits), on the command line or in --recipe.")
    chosen = None
    if args.out is None:
        args.out = str(default_out(args.data, args.strategy))
        chosen = pathlib.Path(args.out).with_suffix("")
        existed = chosen.exists(), chosen.parent.exists()
        print(f"tlkit: no --out given: the model goes to {args.out}")
    # the run's settings, resolved: the dataclasses of every flag (tlkit.config.settings.FINETUNE)
    typed = [settings.resolve(args, cls) for cls in settings.FINETUNE]
    resolved = settings.as_dict(*typed)
    try:
        result = run_finetune(*typed, verbose=console_verbosity(args.quiet))
    except TlkitError:
        if chosen is not None and not existed[0] and args.report_dir is None:
            _discard_unused(chosen, remove_parent=not existed[1])
        raise
    folder = result.path.with_suffix("") if result.path else (args.report_dir and pathlib.Path(args.report_dir))
    if folder:
        # A recipe of this run (--lr auto stays auto: the rate found is in report.json).
        recipes.dump(resolved, pathlib.Path(folder) / "settings.yaml")
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
