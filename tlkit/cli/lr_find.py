"""Subcommand lr-find: the learning-rate finder (an exponential sweep, a plot, a suggestion)."""

import pathlib

from tlkit.cli import subcommand
from tlkit.cli.args import add_data_flags
from tlkit.cli.finetune import add_model_flags, console_verbosity, data_name
from tlkit.config import settings
from tlkit.core import choices
from tlkit.core.errors import TlkitError

DEFAULT_STEPS = 200  # tlkit.training.lr_sweep.DEFAULT_STEPS (kept here: --help imports no TF)


def _configure(p):
    add_data_flags(p.add_argument_group("data"))
    add_model_flags(p.add_argument_group("model and strategy"), strategy={
        "choices": choices.STRATEGIES,
        "help": "the strategy whose phase is swept (auto is not: tlkit advise recommends one)"})
    g = p.add_argument_group("sweep")
    g.add_argument("--phase", type=int, default=1,
                   help="the phase of the strategy to sweep, 1-based; a later phase is swept "
                        "from the untrained model (default: 1, whose rate is finetune --lr)")
    g.add_argument("--min-lr", type=float, default=1e-7,
                   help="first learning rate of the sweep (default: 1e-07)")
    g.add_argument("--max-lr", type=float, default=10.0,
                   help="last learning rate of the sweep (default: 10)")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="optimizer steps of the sweep; it stops early when the loss diverges "
                        f"(default: {DEFAULT_STEPS})")
    settings.add_fields(g, settings.RunSettings, ("batch_size", "seed"), seed={"help": "seed"})
    g = p.add_argument_group("output")
    g.add_argument("--out", help="folder for lr_find.png and lr_find.json (default: "
                                 "saved_models/lr-find/<data>-<strategy>/)")
    g.add_argument("--quiet", action="store_true",
                   help="print only the suggestion (default: progress lines)")


@subcommand("lr-find", "sweep the learning rate and suggest one (fastai's lr_find)")
def cmd_lr_find(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.workflows.lr_find import lr_find

    if not args.data:
        raise TlkitError("--data is required (a folder, tfds:NAME, npz:PATH, fashion_mnist or "
                         "digits).")
    out = pathlib.Path(args.out) if args.out else (
        pathlib.Path("saved_models") / "lr-find" / f"{data_name(args.data)}-{args.strategy}")
    result = lr_find(args.data, args.backbone, args.strategy, weights=args.weights,
                     image_size=args.image_size, out_dir=out, phase=args.phase - 1,
                     min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps,
                     batch_size=args.batch_size, seed=args.seed,
                     val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                     on_bad_image=args.on_bad_image, download=args.download,
                     resize=args.resize, dropout=args.dropout, dense=args.dense,
                     head_bn=args.head_bn, pooling=args.pooling, unfreeze=args.unfreeze,
                     cut_stage=args.cut_stage, verbose=console_verbosity(args.quiet))
    print(f"suggested learning rate: {result.suggested_lr:.3g} ({result.rule})")
    print(f"wrote {result.png} and {result.json}")
    return 0


cmd_lr_find.configure = _configure
