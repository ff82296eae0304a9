"""Subcommand export: SavedModel / TFLite / .keras, checked against Keras."""

from tlkit.cli import subcommand


SAMPLE_LIMIT = 256  # images of --sample compared against Keras


def _configure_export(p):
    p.add_argument("model", help="a saved .h5 (or .keras) model")
    p.add_argument("--format", required=True, help="savedmodel | tflite | keras")
    p.add_argument("--out", required=True,
                   help="a folder (savedmodel), a .tflite file or a .keras file")
    p.add_argument("--quantize", default="none", help="none | dynamic | float16 (tflite only)")
    p.add_argument("--sample", help="image file or folder to compare the export on "
                   "(at most 256 of its images; default: 8 seeded random images; real images "
                   "are better for quantized)")


@subcommand("export", "export to SavedModel / TFLite / .keras and check it against Keras")
def cmd_export(args):
    import numpy as np

    from tlkit import explain, export, saving

    sample = None
    if args.sample:
        model, _ = saving.load(args.model)
        shape = tuple(model.input_shape[1:])
        files = explain.image_files(args.sample)[:SAMPLE_LIMIT]  # a sample, not a data set
        sample = np.stack([explain.load_image(p, shape) for p in files])
    r = export.export(args.model, args.format, args.out, quantize=args.quantize, sample=sample)
    print(f"exported {r.path}")
    print(f"size: {r.size_bytes:,} bytes ({r.size_bytes / 2**20:.2f} MiB)")
    print(f"largest output difference vs Keras: {r.max_abs_diff:.3g} (tolerance {r.tolerance:g})")
    print(f"top-1 agreement: {r.top1_agreement:.1%}")
    return 0


cmd_export.configure = _configure_export
