"""Subcommand calibrate: fit the temperature and the unknown threshold of a saved model."""

from tlkit.cli import subcommand
from tlkit.core.errors import TlkitError


def _configure_calibrate(p):
    p.add_argument("model", help="a .h5 or .keras tlkit model (its metadata is rewritten)")
    p.add_argument("--data", required=True, help="the data it was trained on, as for finetune "
                   "(required, no default)")
    p.add_argument("--coverage", type=float, default=0.95,
                   help="share of known (validation) images the unknown threshold keeps, in "
                        "(0, 1]")
    p.add_argument("--index", metavar="FILE", help="the run's index.json (default: the one in "
                   "the model's report folder, when written for this --data folder)")
    p.add_argument("--seed", type=int, default=0, help="the split seed used in training, "
                   "when there is no index of the run")


@subcommand("calibrate", "fit calibrated probabilities and the unknown threshold of a model")
def cmd_calibrate(args):
    if not 0 < args.coverage <= 1:  # before TensorFlow is imported
        raise TlkitError(f"--coverage must be a number in (0, 1], e.g. 0.95. "
                         f"Received: {args.coverage}.")
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.calibrate import recalibrate

    cal = recalibrate.recalibrate(args.model, args.data, coverage=args.coverage,
                                  index=args.index, seed=args.seed)
    print(f"tlkit: {args.model}: T = {cal['temperature']:.4f}; test ECE "
          f"{cal['ece_before']:.2%} -> {cal['ece_after']:.2%}, NLL {cal['nll_before']:.4f} -> "
          f"{cal['nll_after']:.4f}; unknown above {cal['unknown']['threshold']:.4g} "
          f"({cal['unknown']['score']}, {cal['unknown']['coverage']:.0%} of validation kept)")
    return 0


cmd_calibrate.configure = _configure_calibrate
