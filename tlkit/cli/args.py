"""Argument types and flag groups shared by several subcommands."""

import argparse


def csv_ints(text):
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")


def weights_arg(text):
    return None if str(text).lower() in ("none", "random", "null") else text


def add_data_flags(g, image_size_help="input size N (NxN) instead of the backbone's default"):
    """The data flags of finetune and tune, on the argument group `g`."""
    g.add_argument("--data", help="image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits")
    g.add_argument("--image-size", type=int, help=image_size_help)
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="validation share when the data has no val split (default: 0.1)")
    g.add_argument("--test-fraction", type=float, default=0.1,
                   help="test share when the data has no test split (default: 0.1)")
    g.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip them with one warning, or stop "
                        "(default: skip)")
    g.add_argument("--resize", choices=("squash", "crop", "pad"), default="squash",
                   help="fit images to the input size: squash (stretch), crop (centre crop to "
                        "the aspect ratio) or pad (keep it, black bars) (default: squash)")
    g.add_argument("--download", action="store_true", help="let tfds download the data set (default: offline, local data only)")
