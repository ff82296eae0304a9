"""Subcommand finetune: train a classifier with one of the strategies."""

import pathlib

from tlkit.cli import subcommand
from tlkit.cli.args import add_data_flags, csv_ints, weights_arg
from tlkit.errors import TlkitError


def _configure_finetune(p):
    g = p.add_argument_group("data")
    add_data_flags(g)
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no RandomFlip/RandomRotation/RandomZoom on training images")
    g = p.add_argument_group("model and strategy")
    g.add_argument("--backbone", default="mobilenet_v2",
                   help="backbone name (tlkit plan --list), zoo:NAME, or a saved .h5 classifier")
    g.add_argument("--weights", type=weights_arg, default="imagenet",
                   help="imagenet, none, or a local weights file")
    g.add_argument("--strategy", default="small-similar",
                   help="small-similar | small-dissimilar | large-similar | large-dissimilar | "
                        "auto (measure with advise, then train what it recommends)")
    g.add_argument("--unfreeze", type=int, help="stages to unfreeze in the fine-tuning phase")
    g.add_argument("--cut-stage", type=int, help="small-dissimilar: cut the base after this stage")
    g.add_argument("--dropout", type=float, help="head dropout")
    g.add_argument("--dense", type=csv_ints, default=(), help="hidden head widths, e.g. 256,128")
    g.add_argument("--head-bn", default="none", help="before | after | none")
    g.add_argument("--pooling", default="avg", help="avg | max | flatten")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    g.add_argument("--head-epochs", type=int, help="epochs of the head phase (two-phase strategies)")
    g.add_argument("--lr", dest="learning_rate", type=float, default=1e-3)
    g.add_argument("--fine-tune-lr", type=float, help="default: lr/10 (large-similar), lr/20 (small-dissimilar)")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--patience", type=int, default=5, help="EarlyStopping patience")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-cache", dest="cache_features", action="store_false",
                   help="do not cache the frozen base's features")
    g.add_argument("--augment-passes", type=int, default=1,
                   help="cached passes over the training images (first un-augmented)")
    g.add_argument("--autotune", dest="autotune", action="store_true", default=None,
                   help="tf.data autotuning (default: on with 5 or more CPU cores; on 2 cores "
                        "it stalls between epochs)")
    g.add_argument("--no-autotune", dest="autotune", action="store_false",
                   help="tf.data without autotune (fixed prefetch)")
    g.add_argument("--tensorboard", action="store_true")
    g.add_argument("--image-cache", action="store_true",
                   help="cache decoded, resized training images on disk (report folder) for "
                        "phases that train on image files (default: decode every epoch)")
    g.add_argument("--cache-dir", help="keep cached features here and reuse them by content "
                   "key (later runs on the same data and backbone skip the forward pass)")
    g.add_argument("--distribute", choices=("mirrored", "multiworker"),
                   help="tf.distribute: all GPUs here (mirrored) or the machines in TF_CONFIG "
                   "(multiworker)")
    g.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: the same --seed gives the same weights on "
                        "GPUs too (slower there; CPU runs are deterministic already)")
    g.add_argument("--jit-compile", action="store_true",
                   help="XLA-compile the train step (off by default: slower on small CPUs)")
    g.add_argument("--mixed-precision", action="store_true",
                   help="mixed_float16 policy (off by default: helps on recent GPUs only)")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="model file, e.g. saved_models/photos.h5")
    g.add_argument("--report-dir", help="default: next to --out, named after it")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--restart", action="store_true",
                   help="discard the saved state of an interrupted run in the report folder "
                        "and start over (default: the same command continues it)")
    p.add_argument("--recipe", help="YAML recipe that fills these flags (flags win)")


@subcommand("finetune", "train a classifier with one of the four strategies")
def cmd_finetune(args):
    from tlkit import recipes
    from tlkit.transfer import finetune

    if not args.data:
        raise TlkitError("--data is required (a folder, tfds:NAME, npz:PATH, fashion_mnist or "
                         "digits), on the command line or in --recipe.")
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "recipe", "quiet")}
    result = finetune(**settings, verbose=0 if args.quiet else 1)
    folder = result.path.with_suffix("") if result.path else (args.report_dir and pathlib.Path(args.report_dir))
    if folder:
        recipes.dump(vars(args), pathlib.Path(folder) / "settings.yaml")
    if args.strategy == "auto" and args.quiet:  # the choice is printed even when quiet
        print(f"tlkit: --strategy auto chose {result.plan.strategy}: "
              + "; ".join(result.report.get("reasons", [])))
    print(f"test accuracy: {result.report['accuracy']:.4f}")
    return 0


cmd_finetune.configure = _configure_finetune
