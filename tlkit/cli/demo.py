"""Subcommand demo: the size-versus-similarity matrix on real data, offline."""

import pathlib

from tlkit.cli import subcommand

# tlkit.experiments.demo's defaults, spelled out here because importing tlkit.experiments.demo imports TensorFlow and
# `tlkit demo --help` must not (tests/cli/test_conventions.py checks them against tlkit.experiments.demo).
DEFAULT_OUT = "saved_models/demo"
DEFAULT_SOURCE = "T-shirt/top,Trouser,Coat,Sandal,Bag, i.e. 0,1,4,5,8"
DEFAULT_TARGET = "Pullover,Dress,Shirt,Sneaker,Ankle boot, i.e. 2,3,6,7,9"


def _configure_demo(p):
    g = p.add_argument_group("class split (Fashion-MNIST names or ids 0-9, comma-separated)")
    g.add_argument("--source-classes", metavar="CLASSES",
                   help=f"classes the source net is pretrained on (default: {DEFAULT_SOURCE}; "
                        f"or the classes --target-classes leaves out)")
    g.add_argument("--target-classes", metavar="CLASSES",
                   help=f"classes of the similar situations (default: {DEFAULT_TARGET}; or the "
                        f"classes --source-classes leaves out)")
    g = p.add_argument_group("run")
    g.add_argument("--quick", action="store_true",
                   help="reduced sizes and epochs (under 3 minutes on 2 cores; the full demo "
                        "takes under 20)")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the subsets, initialisations and shuffling")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="output folder")
    g.add_argument("--quiet", action="store_true", help="no progress lines or table")
    p.add_argument("--recipe", help="YAML recipe that fills these flags (flags win)")


@subcommand("demo", "reproduce the size-versus-similarity matrix on real data, offline")
def cmd_demo(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.config import recipes
    from tlkit.experiments.demo import run_demo

    result = run_demo(args.out, args.source_classes, args.target_classes, quick=args.quick,
                      seed=args.seed, verbose=0 if args.quiet else 1)
    recipes.dump(vars(args), pathlib.Path(result.out_dir) / "settings.yaml")
    return 0


cmd_demo.configure = _configure_demo
