"""Subcommand curve: how many images do I need? Accuracy against training images per class."""

from tlkit.cli import subcommand
from tlkit.config import settings


def _configure(p):
    g = p.add_argument_group("data")
    data = settings.DataSettings
    settings.add_fields(g, data, ("data",), data={
        "required": True,
        "help": "image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits"})
    settings.add_fields(g, data, [n for n in settings.names(data) if n != "data"])
    g = p.add_argument_group("model")
    settings.add_fields(g, settings.ModelSettings, ("backbone", "weights"), weights={
        "help": "weights of the transfer strategies' base: imagenet, none, or a local weights "
                "file (scratch always starts from random weights)"})
    g = p.add_argument_group("curve")
    settings.add_fields(g, settings.CurveSettings)
    g = p.add_argument_group("training (every run)")
    settings.add_fields(g, settings.RunSettings, (
        "epochs", "head_epochs", "learning_rate", "fine_tune_lr", "batch_size", "patience",
        "augment", "autotune", "seed"), seed={
            "metavar": "N", "help": "the first seed (the runs use N, N+1, ...) and the seed "
                                    "of the data's split"})
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True,
                   help="folder for curve.json, curve.png and curve.md (created; required)")
    g.add_argument("--quiet", action="store_true",
                   help="print only the table (default: one line per run, then the table)")


@subcommand("curve", "how many images do I need? accuracy against training images per class")
def cmd_curve(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.workflows.curve import curve

    result = curve(args.data, args.backbone, sizes=args.sizes, strategies=args.strategies,
                   seeds=args.seeds, out=args.out, weights=args.weights,
                   image_size=args.image_size, seed=args.seed, epochs=args.epochs,
                   batch_size=args.batch_size, learning_rate=args.learning_rate,
                   augment=args.augment, patience=args.patience,
                   val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                   on_bad_image=args.on_bad_image, download=args.download,
                   resize=args.resize, head_epochs=args.head_epochs,
                   fine_tune_lr=args.fine_tune_lr, autotune=args.autotune,
                   verbose=0 if args.quiet else 1)
    if args.quiet:
        print(result.table())
    return 0


cmd_curve.configure = _configure
