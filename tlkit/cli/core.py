"""Subcommands zoo, finetune, plan, evaluate and predict."""

import argparse
import pathlib

from tlkit.cli import subcommand
from tlkit.errors import TlkitError


def _configure_zoo(p):
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="output format (default: table)")


@subcommand("zoo", "list the from-scratch models: name, default input, parameter count")
def cmd_zoo(args):
    from tlkit import zoo

    rows = zoo.table()
    if args.format == "csv":
        print("name,input_shape,num_classes,params,description")
        for r in rows:
            shape = "x".join(map(str, r["input_shape"]))
            print(f"{r['name']},{shape},{r['num_classes']},{r['params']},\"{r['description']}\"")
        return 0
    print(f"{'model':<14} {'input':<12} {'classes':>7} {'params':>13}  description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['name']:<14} {shape:<12} {r['num_classes']:>7} {r['params']:>13,}  "
              f"{r['description']}")
    return 0


cmd_zoo.configure = _configure_zoo

def _csv_ints(text):
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")


def _weights(text):
    return None if str(text).lower() in ("none", "random", "null") else text


def _configure_finetune(p):
    g = p.add_argument_group("data")
    g.add_argument("--data", help="image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits")
    g.add_argument("--image-size", type=int, help="input size N (NxN) instead of the backbone's default")
    g.add_argument("--val-fraction", type=float, default=0.1)
    g.add_argument("--test-fraction", type=float, default=0.1)
    g.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip them with one warning, or stop "
                        "(default: skip)")
    g.add_argument("--resize", choices=("squash", "crop", "pad"), default="squash",
                   help="fit images to the input size: squash (stretch), crop (centre crop to "
                        "the aspect ratio) or pad (keep it, black bars) (default: squash)")
    g.add_argument("--download", action="store_true", help="let tfds download the data set")
    g.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no RandomFlip/RandomRotation/RandomZoom on training images")
    g = p.add_argument_group("model and strategy")
    g.add_argument("--backbone", default="mobilenet_v2",
                   help="backbone name (tlkit plan --list), zoo:NAME, or a saved .h5 classifier")
    g.add_argument("--weights", type=_weights, default="imagenet",
                   help="imagenet, none, or a local weights file")
    g.add_argument("--strategy", default="small-similar",
                   help="small-similar | small-dissimilar | large-similar | large-dissimilar | "
                        "auto (measure with advise, then train what it recommends)")
    g.add_argument("--unfreeze", type=int, help="stages to unfreeze in the fine-tuning phase")
    g.add_argument("--cut-stage", type=int, help="small-dissimilar: cut the base after this stage")
    g.add_argument("--dropout", type=float, help="head dropout")
    g.add_argument("--dense", type=_csv_ints, default=(), help="hidden head widths, e.g. 256,128")
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


def _configure_plan(p):
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--weights", type=_weights, default=None,
                   help="weights to build with (default none: counts do not need them)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--list", action="store_true", help="list the backbones and exit")
    p.add_argument("--recipe", help="YAML recipe that fills these flags")


@subcommand("plan", "print the strategy matrix for a backbone: stages, trainable/frozen counts")
def cmd_plan(args):
    from tlkit import backbones, strategies
    from tlkit.transfer import resolve_input_shape

    if args.list:
        for name in backbones.names():
            s = backbones.spec(name)
            print(f"{name:<20} {s.default_size:>4}px  min {s.min_size:>3}  {s.description}")
        return 0
    bb = backbones.build(args.backbone, resolve_input_shape(args.backbone, args.image_size),
                         weights=args.weights)
    rows = strategies.matrix(bb, num_classes=args.num_classes, epochs=args.epochs)
    print(strategies.format_matrix(bb, rows))
    return 0


cmd_plan.configure = _configure_plan


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


def _configure_predict(p):
    p.add_argument("model", help="a saved .h5 model")
    p.add_argument("inputs", help="an image file or a folder of images")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="output format (default: table)")
    p.add_argument("--on-bad-image", choices=("skip", "error"), default="skip",
                   help="unreadable image files: skip them (listed on stderr at the end) or "
                        "stop at the first (default: skip)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--out", help="write the CSV to this file (with a progress bar) instead of "
                                 "the table to stdout")


@subcommand("predict", "top-k classes for an image or a folder of images")
def cmd_predict(args):
    import contextlib
    import csv
    import sys

    from tlkit import fileio, predict

    if args.batch_size < 1:
        raise TlkitError(f"--batch-size must be an integer >= 1. Received: {args.batch_size}.")
    if args.out:
        from tlkit import saving

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
                                        progress=_predict_progress(bool(args.out)))
        writer = csv.writer(sink, lineterminator="\n") if fmt == "csv" else None
        for n, r in enumerate(rows):  # written as they come: memory stays flat for any folder
            if writer is not None:
                if n == 0:
                    k = len(r["top"])
                    writer.writerow(["path"] + [f"{w}{i}" for i in range(1, k + 1)
                                                for w in ("class", "prob")])
                writer.writerow([r["path"]] + [v for c, p in r["top"]
                                               for v in (c, f"{p:.6f}")])
            else:
                print(r["path"] + "  " + "  ".join(f"{c} {p:.3f}" for c, p in r["top"]),
                      file=sink)
    if args.out:
        print(f"wrote {args.out}")
    if skipped:
        shown = ", ".join(p for p, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        print(f"tlkit: skipped {len(skipped)} unreadable file(s): {shown}", file=sys.stderr)
    return 0


def _predict_progress(to_file):
    """Keras's progress bar while the rows go to a file; a counter on a terminal's stderr
    while they go to stdout; nothing otherwise (a pipe or a log gets the rows only)."""
    import sys

    state = {}

    def bar(done, total):
        if "bar" not in state:
            import keras

            state["bar"] = keras.utils.Progbar(total, unit_name="image")
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

