"""Subcommand evaluate: score a saved model on a data set."""

from tlkit.cli import subcommand


def _configure_evaluate(p):
    p.add_argument("model", help="a saved .h5 model")
    p.add_argument("--data", required=True, help="data source, as for finetune")
    p.add_argument("--split", default="test", help="test | val | train | all (default test)")
    p.add_argument("--seed", type=int, default=0, help="the split seed used in training, "
                   "when there is no index of the run (default 0)")
    p.add_argument("--index", help="the run's index.json (default: the one in the model's "
                   "report folder, when written for this --data folder)")
    p.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip and count them, or stop (default: skip)")
    p.add_argument("--out", help="folder for report.json and confusion_matrix.png")


@subcommand("evaluate", "evaluate a saved model on a data set")
def cmd_evaluate(args):
    from tlkit import predict, report

    rep = predict.evaluate_file(args.model, args.data, split=args.split, out_dir=args.out,
                                seed=args.seed, index=args.index,
                                on_bad_image=args.on_bad_image)
    if rep.get("index"):
        print(f"tlkit: the {args.split} split of the run's index {rep['index']}")
    if rep.get("failed_files"):
        print(f"tlkit: {len(rep['failed_files'])} file(s) could not be decoded and were not "
              f"scored, e.g. {rep['failed_files'][0]}")
    print(report.format_report(rep))
    if args.out:
        print(f"report in {args.out}/")
    return 0


cmd_evaluate.configure = _configure_evaluate
