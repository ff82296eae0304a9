"""Subcommand tune: KerasTuner search over dropout, BN placement, learning rate, unfreeze depth."""

import contextlib
import pathlib
import warnings

from tlkit.cli import subcommand
from tlkit.cli.args import add_data_flags
from tlkit.config import settings
from tlkit.core import choices
from tlkit.core.errors import TlkitError


def _configure_tune(p):
    g = p.add_argument_group("data")
    add_data_flags(g, image_size_help="input size N (NxN) instead of the model's default")
    g = p.add_argument_group("what to tune (one of --model or --backbone)")
    g.add_argument("--model", help="zoo:NAME, a from-scratch model (tlkit zoo): BN placement and "
                                   "dropout per block, blocks, filters, lr, optimizer")
    g.add_argument("--backbone", help="pretrained base (tlkit plan --list), zoo:NAME or a .h5 "
                                      "classifier: head dropout/width/BN, lrs, unfreeze depth")
    settings.add_fields(g, settings.ModelSettings, ("weights",), weights={
        "help": "backbone weights: imagenet, none, or a local weights file"})
    g.add_argument("--strategy", choices=choices.STRATEGY_CHOICES,
                   help="with --backbone: the strategy whose plan is tuned; auto: tlkit advise "
                        "chooses, and narrows unfreeze (default: small-similar)")
    settings.add_fields(g, settings.ModelSettings, ("pooling",),
                        pooling={"help": "head pooling"})
    g = p.add_argument_group("search")
    g.add_argument("--tuner", choices=choices.TUNERS, default="random",
                   help="KerasTuner's search algorithm")
    g.add_argument("--max-trials", type=int, default=10, metavar="N",
                   help="trials to run (hyperband: its budget decides)")
    g.add_argument("--epochs", type=int, default=3, metavar="N",
                   help="epochs per trial (hyperband: the most)")
    g.add_argument("--objective", choices=choices.OBJECTIVES, default="val_accuracy",
                   help="the metric that ranks the trials")
    g.add_argument("--fix", action="append", metavar="NAME=VALUE",
                   help="fix a hyperparameter, e.g. --fix dropout=0.3 (repeatable; bn=... "
                        "fixes every BN placement)")
    g.add_argument("--space", action="append", metavar="NAME=V1,V2|LO:HI",
                   help="narrow a hyperparameter, e.g. --space bn=before,after or "
                        "--space learning_rate=1e-4:1e-3 (repeatable)")
    g.add_argument("--list-space", action="store_true",
                   help="print the hyperparameters of --model/--backbone and exit")
    settings.add_fields(g, settings.RunSettings, ("batch_size", "seed", "precision"),
                        batch_size={"metavar": "N", "help": "images per batch"},
                        seed={"metavar": "N",
                              "help": "seed of the split, the search and the initial weights"})
    g.add_argument("--no-cache", dest="cache_features", action="store_false",
                   help="train every trial on images instead of the frozen base's shared features")
    g.add_argument("--factor", type=int, default=3, metavar="N",
                   help="hyperband's reduction factor")
    g.add_argument("--autotune", action="store_true",
                   help="tf.data autotuning (off by default: it stalls on 2-core machines)")
    settings.add_fields(p.add_argument_group("calibration"), settings.CalibrationSettings)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run folder, e.g. saved_models/run1/ (settings, tuner state, "
                                 "trials.json/csv/png, best.h5)")
    g.add_argument("--overwrite", action="store_true",
                   help="delete the search already in --out and start over (workers ignore it)")
    g.add_argument("--retrain", action="store_true",
                   help="train the best hyperparameters again instead of keeping the best trial")
    g.add_argument("--quiet", action="store_true", help="no per-trial lines")
    g.add_argument("--verbose", action="store_true", help="also Keras' per-epoch lines")
    g = p.add_argument_group("distributed (KerasTuner chief and workers over gRPC)")
    g.add_argument("--distributed", action="store_true",
                   help="take part in a distributed search; role and address from --tuner-id "
                        "and --oracle, or KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, "
                        "KERASTUNER_ORACLE_PORT")
    g.add_argument("--tuner-id", metavar="ID",
                   help="chief (serves the search) or a worker id: tuner0, tuner1, ...")
    g.add_argument("--oracle", metavar="HOST:PORT", help="the chief's address")
    g.add_argument("--connect-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds a worker waits for the chief")
    p.add_argument("--recipe", help="YAML recipe that fills these flags (flags win)")


_NOT_SETTINGS = ("command", "recipe", "quiet", "verbose", "list_space")


@subcommand("tune", "KerasTuner search over dropout, BN placement, learning rate, unfreeze depth")
def cmd_tune(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.config import recipes
    from tlkit import tuning

    if args.list_space:
        hm = tuning.make_hypermodel(model=args.model, backbone=args.backbone,
                                    strategy=args.strategy, weights=args.weights,
                                    image_size=args.image_size, pooling=args.pooling,
                                    fix=args.fix, space=args.space, epochs=args.epochs)
        what = args.model or f"{args.backbone} under {args.strategy or 'small-similar'}"
        print(f"Hyperparameters of {what}:")
        print("\n".join(hm.describe_space()))
        return 0
    if not args.data:
        raise TlkitError("--data is required (a folder, tfds:NAME, npz:PATH, fashion_mnist or "
                         "digits), on the command line or in --recipe.")
    if not args.out:
        raise TlkitError("--out is required: the run folder, e.g. --out saved_models/run1/.")
    settings = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    verbose = 0 if args.quiet else (2 if args.verbose else 1)
    with _quiet_search_notes():
        result = tuning.tune(**settings, verbose=verbose)
    if result.role != "worker":
        recipes.dump(vars(args), pathlib.Path(args.out) / "settings.yaml")
        print(f"trials: {result.paths['trials_json']}, {result.paths['trials_csv']}, "
              f"{result.paths['plot']}")
    return 0


@contextlib.contextmanager
def _quiet_search_notes():
    """Keep off the console what Keras and TensorFlow say about a search by design.

    Every trial builds and traces a new model ("N out of the last M calls ... triggered
    tf.function retracing", TensorFlow's logger: `tlkit.core.logs`), and KerasTuner can reload
    trial weights into a model whose optimizer is not built ("Skipping variable loading for
    optimizer", a Keras UserWarning). tlkit's own warnings and errors still show.
    """
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.core.logs import quiet_tf_logs

    with quiet_tf_logs(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


cmd_tune.configure = _configure_tune
