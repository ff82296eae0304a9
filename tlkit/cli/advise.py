"""Subcommand advise: measure how well backbones transfer to the data, and recommend a plan."""

from tlkit.cli import subcommand
from tlkit.config import settings
from tlkit.core.errors import TlkitError


def _configure_advise(p):
    data = settings.DataSettings
    settings.add_fields(p, data, ("data",), data={
        "required": True,
        "help": "image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits"})
    p.add_argument("--backbone", default=settings.MODEL.backbone,
                   help="backbone name or a comma-separated list to rank, e.g. "
                        "mobilenet_v2,resnet50")
    settings.add_fields(p, settings.ModelSettings, ("weights",))
    settings.add_fields(p, data, ("image_size",), image_size={
        "help": "input size N (NxN) instead of each backbone's default"})
    p.add_argument("--out", help="folder for advice.json, advice.png and the cached features "
                   "(features/: pass it to finetune as --cache-dir to reuse the pass)")
    settings.add_fields(p, settings.RunSettings, ("batch_size", "seed"),
                        batch_size={"metavar": "N", "help": "images per batch"},
                        seed={"metavar": "N", "help": "split seed, as for finetune"})
    settings.add_fields(p, data, ("val_fraction", "test_fraction", "on_bad_image"),
                        on_bad_image={"help": "unreadable image files: skip them, or stop"})
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@subcommand("advise", "measure how well backbones transfer to the data; recommend a strategy")
def cmd_advise(args):
    import pathlib

    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit import advise

    if args.batch_size < 1:
        raise TlkitError(f"--batch-size must be an integer >= 1. Received: {args.batch_size}.")
    out = pathlib.Path(args.out) if args.out else None
    a = advise.advise(args.data, args.backbone, weights=args.weights,
                      image_size=args.image_size, batch_size=args.batch_size, seed=args.seed,
                      val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                      on_bad_image=args.on_bad_image, out=out,
                      cache_dir=out / "features" if out else None, verbose=0 if args.quiet
                      else 1)
    if args.quiet:
        print(a.table())
    if out:
        print(f"advice in {out}/ (advice.json, advice.png); reuse the features with "
              f"tlkit finetune ... --cache-dir {out / 'features'}")
    return 0


cmd_advise.configure = _configure_advise
