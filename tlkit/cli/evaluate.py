"""Subcommand evaluate: score a saved model (any deployable artifact) on a data set."""

from tlkit.cli import subcommand
from tlkit.core.errors import TlkitError

SPLITS = ("test", "val", "train", "all")
MAX_TTA = 12  # tlkit.evaluation.tta.MAX_TTA, kept here so that --help needs no TensorFlow (tested)


def _configure_evaluate(p):
    p.add_argument("model", help="a .h5 or .keras model, a SavedModel folder, a .tflite file "
                   "(with NAME.labels.txt beside it) or a .onnx file")
    p.add_argument("--data", required=True, help="data source, as for finetune "
                   "(required, no default)")
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="which split to score; all: train, val and test (default: test)")
    p.add_argument("--seed", type=int, default=0, help="the split seed used in training, "
                   "when there is no index of the run (default: 0)")
    p.add_argument("--index", help="the run's index.json (default: the one in the model's "
                   "report folder, when written for this --data folder)")
    p.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip and count them, or stop (default: skip)")
    p.add_argument("--tta", type=int, default=1, metavar="N",
                   help=f"test-time augmentation: average the probabilities over N variants "
                        f"(the image, its horizontal flip, then 90%% crops, centre first, "
                        f"each also flipped; 1 to {MAX_TTA}; 1: none) (default: 1)")
    p.add_argument("--out", help="folder for report.json, confusion_matrix.png and "
                   "risk_coverage.png "
                   "(default: nothing written)")


@subcommand("evaluate", "evaluate a saved model on a data set")
def cmd_evaluate(args):
    if not 1 <= args.tta <= MAX_TTA:  # before TensorFlow is imported; shown as "--tta must"
        raise TlkitError(f"tta must be an integer from 1 (none) to {MAX_TTA}. "
                         f"Received: {args.tta}.")
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.evaluation import predict, report

    rep = predict.evaluate_file(args.model, args.data, split=args.split, out_dir=args.out,
                                seed=args.seed, index=args.index,
                                on_bad_image=args.on_bad_image, tta=args.tta)
    print(f"tlkit: {args.model} ({rep['model_kind']}), classes: "
          f"{', '.join(rep['class_names'])}" + (f"; TTA over {args.tta} variants"
                                                if args.tta > 1 else ""))
    if rep.get("index"):
        which = "all splits" if args.split == "all" else f"the {args.split} split"
        print(f"tlkit: {which} of the run's index {rep['index']}")
    if rep.get("failed_files"):
        print(f"tlkit: {len(rep['failed_files'])} file(s) could not be decoded and were not "
              f"scored, e.g. {rep['failed_files'][0]}")
    print(report.format_report(rep))
    sel = rep.get("selective") or {}
    if sel:
        print(f"selective: error {sel['error_full']:.2%} on all, {sel['error_at_90']:.2%} on the "
              f"90% most confident, {sel['error_at_95']:.2%} on the 95% (by calibrated "
              f"confidence); ECE {sel['ece']:.2%}" + (f" (T = {sel['temperature']:.3f})"
                                                      if sel["temperature"] != 1.0 else "")
              + (f"; unknown above the threshold: {1 - sel['coverage_at_threshold']:.1%} "
                 f"({sel['score']})" if "coverage_at_threshold" in sel else ""))
    if args.out:
        print(f"report in {args.out}/")
    return 0


cmd_evaluate.configure = _configure_evaluate
