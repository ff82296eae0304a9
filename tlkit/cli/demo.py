"""Subcommand demo: the size-versus-similarity matrix on real data, offline."""

import pathlib

from tlkit.cli import subcommand


def _configure_demo(p):
    from tlkit.demo import DEFAULT_OUT, FASHION_CLASSES, resolve_classes

    def names(ids):
        return ",".join(FASHION_CLASSES[i] for i in ids) + ", i.e. " + ",".join(map(str, ids))

    src, tgt = resolve_classes()  # the defaults

    g = p.add_argument_group("class split (Fashion-MNIST names or ids 0-9, comma-separated)")
    g.add_argument("--source-classes", metavar="CLASSES",
                   help=f"classes the source net is pretrained on (default: {names(src)}; "
                        f"or the classes --target-classes leaves out)")
    g.add_argument("--target-classes", metavar="CLASSES",
                   help=f"classes of the similar situations (default: {names(tgt)}; or the "
                        f"classes --source-classes leaves out)")
    g = p.add_argument_group("run")
    g.add_argument("--quick", action="store_true",
                   help="reduced sizes and epochs (under 3 minutes on 2 cores; the full demo "
                        "takes under 20)")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the subsets, initialisations and shuffling (default 0)")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT})")
    g.add_argument("--quiet", action="store_true", help="no progress lines or table")
    p.add_argument("--recipe", help="YAML recipe that fills these flags (flags win)")


@subcommand("demo", "reproduce the size-versus-similarity matrix on real data, offline")
def cmd_demo(args):
    from tlkit import recipes
    from tlkit.demo import run_demo

    result = run_demo(args.out, args.source_classes, args.target_classes, quick=args.quick,
                      seed=args.seed, verbose=0 if args.quiet else 1)
    recipes.dump(vars(args), pathlib.Path(result.out_dir) / "settings.yaml")
    return 0


cmd_demo.configure = _configure_demo
