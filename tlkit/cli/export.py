"""Subcommand export: SavedModel / TFLite / .keras / ONNX, checked against Keras."""

from tlkit.cli import subcommand

SAMPLE_LIMIT = 256  # images of --sample compared against Keras
# Kept here (not imported from tlkit.deploy.export) so that `tlkit export --help` needs no TensorFlow;
# tests/cli/test_export_cli.py checks they equal tlkit.deploy.export.FORMATS / QUANTIZATIONS.
FORMATS = ("savedmodel", "tflite", "keras", "onnx")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


def _configure_export(p):
    p.add_argument("model", help="a saved .h5 or .keras model")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="savedmodel: a folder (serving_default returns probabilities and class "
                        "names); tflite: a .tflite file with NAME.labels.txt and NAME.tlkit.json "
                        "beside it; keras: a .keras file; onnx: a .onnx file (needs pip install "
                        "'tlkit[onnx]') (required, no default)")
    p.add_argument("--out", required=True,
                   help="a folder (savedmodel), a .tflite, .keras or .onnx file "
                        "(required, no default)")
    p.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                   help="tflite only: dynamic (int8 weights), float16 (float16 weights) or int8 "
                        "(full-integer: uint8 input pixels and output, calibrated on --sample "
                        "or the model's recorded training images) (default: none)")
    p.add_argument("--sample", help="image file or folder to compare the export on, and to "
                   f"calibrate int8 on (at most {SAMPLE_LIMIT} of its images) (default: up to "
                   "256 test images of the run, from the index.json in the model's report "
                   "folder, else 8 seeded random images; int8 calibrates on up to 128 of its "
                   "training images)")


@subcommand("export", "export to SavedModel / TFLite / .keras / ONNX and check it against Keras")
def cmd_export(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.deploy import calibration, export

    sample = None
    if args.sample:
        shape, resize = _input_contract(args.model)
        sample = calibration.folder_images(args.sample, shape, limit=SAMPLE_LIMIT,
                                           resize=resize)
    r = export.export(args.model, args.format, args.out, quantize=args.quantize, sample=sample)
    print(f"exported {r.path}")
    for extra in r.files[1:]:
        print(f"wrote {extra}")
    print(f"size: {r.size_bytes:,} bytes ({r.size_bytes / 2**20:.2f} MiB)")
    print(f"largest output difference vs Keras: {r.max_abs_diff:.3g} (tolerance {r.tolerance:g})")
    print(f"top-1 agreement: {r.top1_agreement:.1%} ({r.n_compared} images: {r.compared_on})")
    if r.score_diff is not None:
        print(f"unknown_score output (mahalanobis): largest difference vs Keras "
              f"{r.score_diff:.3g} of its scale")
    if r.note:
        print(f"note: {r.note.replace('sample= (--sample DIR)', '--sample DIR')}")
    return 0


def _input_contract(model_path):
    """The model's (H, W, C) and the resize mode it records (None: none): from its tlkit
    metadata, else by loading it."""
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.deploy import saving
    from tlkit.data import decode

    meta = saving.read_metadata(model_path) if str(model_path).endswith(
        saving.SUFFIXES) else {}
    resize = decode.recorded_resize(meta, str(model_path))
    if meta.get("input_shape"):
        return tuple(meta["input_shape"]), resize
    model, _ = saving.load(model_path)
    return tuple(model.input_shape[1:]), resize


cmd_export.configure = _configure_export
cmd_export.cli_names = {"fmt": "--format"}  # export.export(model, fmt, ...) is --format
