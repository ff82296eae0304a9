"""Subcommand explain: feature maps, Grad-CAM and first-layer filters."""

from tlkit.cli import subcommand


def _configure_explain(p):
    p.add_argument("model", help="a saved .h5 (or .keras) model")
    p.add_argument("inputs", nargs="?", help="an image file or a folder of images "
                   "(not needed for --method filters)")
    p.add_argument("--method", default="gradcam", help="gradcam | feature-maps | filters")
    p.add_argument("--layer", help="a conv layer name (default: found automatically); "
                   "--list-layers shows them")
    p.add_argument("--class", dest="class_name",
                   help="Grad-CAM class: a name from the model's metadata or an index "
                   "(default: the predicted class)")
    p.add_argument("--out", help="output folder (default: <model>_explain beside the model)")
    p.add_argument("--alpha", type=float, default=0.4, help="Grad-CAM overlay weight")
    p.add_argument("--list-layers", action="store_true", help="print the usable conv layers")


@subcommand("explain", "feature maps, Grad-CAM and first-layer filters as PNGs")
def cmd_explain(args):
    from tlkit import explain, saving

    if args.list_layers:
        model, _ = saving.load(args.model)
        for name in explain.conv_layers(model):
            print(name)
        return 0
    paths = explain.explain_path(args.model, args.inputs, method=args.method, layer=args.layer,
                                 class_name=args.class_name, out_dir=args.out, alpha=args.alpha)
    for path in paths:
        print(path)
    print(f"{len(paths)} PNG file(s) written")
    return 0


cmd_explain.configure = _configure_explain
