"""Argument types and flag groups shared by several subcommands.

Help texts state no default that argparse knows: `tlkit.cli.document_default` appends
"(default: X)" from the flag's own `default=`, so a default is written once.
"""

import argparse

from tlkit import choices


def csv_ints(text):
    """`"256,128"` -> `(256, 128)`, for flags such as `--dense`."""
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")


def weights_arg(text):
    """`none`, `random` or `null` -> None (random weights); anything else as given."""
    return None if str(text).lower() in ("none", "random", "null") else text


def add_data_flags(g, image_size_help="input size N (NxN) instead of the backbone's default"):
    """The data flags of finetune and tune, on the argument group `g`."""
    g.add_argument("--data", help="image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, "
                                  "digits (required, here or in --recipe)")
    g.add_argument("--image-size", type=int, metavar="N", help=image_size_help)
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="validation share when the data has no val split")
    g.add_argument("--test-fraction", type=float, default=0.1,
                   help="test share when the data has no test split")
    g.add_argument("--on-bad-image", choices=choices.BAD_IMAGE_POLICIES, default="skip",
                   help="unreadable image files: skip them with one warning, or stop")
    g.add_argument("--resize", choices=choices.RESIZE_MODES, default="squash",
                   help="fit images to the input size: squash (stretch), crop (centre crop to "
                        "the aspect ratio) or pad (keep it, black bars)")
    g.add_argument("--download", action="store_true",
                   help="let tfds download the data set (default: offline, local data only)")
