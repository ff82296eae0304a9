"""Subcommand predict: top-k classes for images, with any deployable artifact."""

from tlkit.cli import subcommand
from tlkit.core.errors import TlkitError


def _configure_predict(p):
    p.add_argument("model", help="a .h5 or .keras model, a SavedModel folder, a .tflite file "
                   "(with NAME.labels.txt beside it) or a .onnx file")
    p.add_argument("inputs", help="an image file or a folder of images")
    p.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="classes shown per image, by name (default: 3)")
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="output format (default: table)")
    p.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip them (listed on stderr at the end) or "
                        "stop at the first (default: skip)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    p.add_argument("--reject", action="store_true",
                   help="print unknown (with its score) for images above the model's unknown "
                        "threshold (tlkit calibrate sets one); the CSV gets rejected and "
                        "unknown_score columns")
    p.add_argument("--out", help="write the CSV to this file (with a progress bar) instead of "
                                 "the table to stdout (default: the table on stdout)")


@subcommand("predict", "top-k classes for an image or a folder of images")
def cmd_predict(args):
    import contextlib
    import csv
    import sys

    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.core import fileio
    from tlkit.evaluation import predict

    if args.batch_size < 1:
        raise TlkitError(f"--batch-size must be an integer >= 1. Received: {args.batch_size}.")
    if args.out:
        from tlkit.deploy import saving

        saving.check_writable(args.out, suffixes=(".csv",), what="--out")
    skipped = []
    with contextlib.ExitStack() as stack:
        if args.out:  # written as it goes into a temporary file, renamed when complete
            tmp = stack.enter_context(fileio.atomic_path(args.out, suffix=".csv"))
            sink = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
            fmt = "csv"
        else:
            sink, fmt = sys.stdout, args.format
        rows = predict.iter_predictions(args.model, args.inputs, top_k=args.top_k,
                                        batch_size=args.batch_size,
                                        on_bad_image=args.on_bad_image, skipped=skipped,
                                        progress=_predict_progress(bool(args.out)),
                                        reject=args.reject)
        writer = csv.writer(sink, lineterminator="\n") if fmt == "csv" else None
        for n, r in enumerate(rows):  # written as they come: memory stays flat for any folder
            if writer is not None:
                if n == 0:
                    k = len(r["top"])
                    writer.writerow(["path"] + [f"{w}{i}" for i in range(1, k + 1)
                                                for w in ("class", "prob")]
                                    + (["rejected", "unknown_score"] if args.reject else []))
                writer.writerow([fileio.printable_path(r["path"])] + [v for c, p in r["top"]
                                               for v in (c, f"{p:.6f}")]
                                + ([str(r["rejected"]).lower(), f"{r['unknown_score']:.6f}"]
                                   if args.reject else []))
            else:
                head = (f"unknown (score {r['unknown_score']:.3f})  "
                        if args.reject and r["rejected"] else "")
                print(fileio.printable_path(r["path"]) + "  " + head
                      + "  ".join(f"{c} {p:.3f}" for c, p in r["top"]), file=sink)
    if args.out:
        print(f"wrote {args.out}")
    if skipped:
        from tlkit.data.listing import skipped_message

        print(f"tlkit: {skipped_message(skipped)}", file=sys.stderr)
    return 0


def _predict_progress(to_file):
    """Keras's progress bar while the rows go to a file; a counter on a terminal's stderr
    while they go to stdout; nothing otherwise (a pipe or a log gets the rows only)."""
    import sys

    state = {}

    def bar(done, total):
        if "bar" not in state:
            import keras

            # off a terminal (a log, a pipe) Keras's verbose=2: one line when done
            state["bar"] = keras.utils.Progbar(total, unit_name="image",
                                               verbose=1 if sys.stdout.isatty() else 2)
        state["bar"].update(done)

    def counter(done, total):
        sys.stderr.write(f"\r{done:,}/{total:,} images")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    if to_file:
        return bar
    return counter if sys.stderr.isatty() else None


cmd_predict.configure = _configure_predict
