"""Subcommand plan: the strategy matrix of a backbone."""

from tlkit.cli import subcommand
from tlkit.cli.args import weights_arg


def _configure_plan(p):
    p.add_argument("--backbone", default="mobilenet_v2",
                   help="backbone name (--list shows them)")
    p.add_argument("--weights", type=weights_arg, default=None,
                   help="imagenet, none, or a local weights file (default: none: the counts "
                        "do not need weights)")
    p.add_argument("--image-size", type=int, metavar="N",
                   help="input size N (NxN) instead of the backbone's default")
    p.add_argument("--num-classes", type=int, default=10, metavar="N",
                   help="classes of the new head")
    p.add_argument("--epochs", type=int, default=10, metavar="N",
                   help="total epochs, split between the phases as finetune splits them")
    p.add_argument("--list", action="store_true", help="list the backbones and exit")
    p.add_argument("--recipe", help="YAML recipe that fills these flags (flags win)")


@subcommand("plan", "print the strategy matrix for a backbone: stages, trainable/frozen counts")
def cmd_plan(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.models import backbones
    from tlkit.training import matrix
    from tlkit.models.backbones.builders import resolve_input_shape

    if args.list:
        for name in backbones.names():
            s = backbones.spec(name)
            print(f"{name:<20} {s.default_size:>4}px  min {s.min_size:>3}  {s.description}")
        return 0
    bb = backbones.build(args.backbone, resolve_input_shape(args.backbone, args.image_size),
                         weights=args.weights)
    rows = matrix.matrix(bb, num_classes=args.num_classes, epochs=args.epochs)
    print(matrix.format_matrix(bb, rows))
    return 0


cmd_plan.configure = _configure_plan
