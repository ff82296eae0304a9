"""Subcommand explain: Grad-CAM, feature maps and first-layer filters as labelled PNGs."""

import argparse

from tlkit.cli import subcommand

# tlkit.explain.METHODS, written out so that `--help` does not import TensorFlow;
# tests/cli/test_explain_cli.py checks that the two agree.
METHODS = ("gradcam", "feature-maps", "filters")


def _alpha(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _configure_explain(p):
    p.add_argument("model", help="a saved .h5 (or .keras) model")
    p.add_argument("inputs", nargs="?", help="an image file or a folder of images "
                   "(not needed for --method filters)")
    p.add_argument("--method", default="gradcam", choices=METHODS,
                   help="gradcam: the original beside the heatmap overlay, with the class, its "
                   "probability and a colorbar; feature-maps: one grid per layer, channels "
                   "numbered; filters: the first convolution's kernels (default: gradcam)")
    p.add_argument("--layer", help="a conv layer name; --list-layers shows them (default: the "
                   "last conv output for gradcam, one layer per stage for feature-maps)")
    p.add_argument("--class", dest="class_name",
                   help="Grad-CAM class: a name from the model's metadata or an index "
                   "(default: the predicted class of each image)")
    p.add_argument("--out", help="output folder (default: <model>_explain beside the model)")
    p.add_argument("--alpha", type=_alpha, default=0.4,
                   help="weight of the heatmap colour in the Grad-CAM overlay, 0..1 "
                   "(default: 0.4)")
    p.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip them (counted on stderr at the end) or "
                        "stop at the first (default: skip)")
    p.add_argument("--list-layers", action="store_true",
                   help="print the usable conv layers and exit (default: off)")


@subcommand("explain", "Grad-CAM, feature maps and first-layer filters as labelled PNGs")
def cmd_explain(args):
    import sys

    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit import explain
    from tlkit.deploy import saving
    from tlkit.data.listing import skipped_message

    if args.list_layers:
        model, _ = saving.load(args.model)
        for name in explain.conv_layers(model):
            print(name)
        return 0
    skipped = []
    paths = explain.explain_path(args.model, args.inputs, method=args.method, layer=args.layer,
                                 class_name=args.class_name, out_dir=args.out, alpha=args.alpha,
                                 on_bad_image=args.on_bad_image, skipped=skipped)
    for path in paths:
        print(path)
    print(f"{len(paths)} PNG file(s) written")
    if skipped:
        print(f"tlkit: {skipped_message(skipped)}", file=sys.stderr)
    return 0


cmd_explain.configure = _configure_explain
