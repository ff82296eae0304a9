"""Subcommand audit: wrong labels, duplicates, split leakage, outliers and image problems."""

from tlkit.cli import subcommand
from tlkit.config import settings

# the library's defaults, written here without importing it (tlkit --help imports no TF):
# tests/audit/test_audit.py checks that they equal tlkit.audit.run.audit's
DEFAULTS = {"folds": 5, "outlier_share": 0.01, "near_threshold": 0.95, "neighbours": 10,
            "label_score": "self_confidence", "min_side": 32}
LABEL_SCORES = ("self_confidence", "normalized_margin")  # tlkit.audit.labels.SCORES


def _configure_audit(p):
    data = settings.DataSettings
    settings.add_fields(p, data, ("data",), data={
        "required": True,
        "help": "image folder, tfds:NAME[:SPLIT], npz:PATH, fashion_mnist, digits"})
    g = p.add_argument_group("features")
    settings.add_fields(g, settings.ModelSettings, ("backbone", "weights"), backbone={
        "help": "backbone whose pooled features the checks use (ignored with --model)"})
    g.add_argument("--model", help="a trained tlkit .h5/.keras classifier: use its features "
                                   "instead of --backbone's (default: none)")
    settings.add_fields(g, data, ("image_size",), image_size={
        "help": "input size N (NxN) instead of the backbone's default"})
    settings.add_fields(g, settings.RunSettings, ("batch_size", "cache_dir"))
    g = p.add_argument_group("checks")
    g.add_argument("--folds", type=int, default=DEFAULTS["folds"],
                   help="K of the out-of-fold linear probe; every class needs K images")
    g.add_argument("--label-score", choices=LABEL_SCORES, default=DEFAULTS["label_score"],
                   help="label quality of label_scores.csv and the ranking")
    g.add_argument("--max-issues", type=int, default=None,
                   help="report at most N issues of each kind (default: all)")
    g.add_argument("--near-threshold", type=float, default=DEFAULTS["near_threshold"],
                   help="pixel similarity (1 - the difference of the aligned, brightness-"
                        "matched images / 255) from which two images are near duplicates")
    g.add_argument("--neighbours", type=int, default=DEFAULTS["neighbours"],
                   help="k of the feature nearest-neighbour search (outliers)")
    g.add_argument("--outlier-share", type=float, default=DEFAULTS["outlier_share"],
                   help="share of the images flagged as outliers")
    g.add_argument("--min-side", type=int, default=DEFAULTS["min_side"],
                   help="images with a shorter side below N px are small")
    g = p.add_argument_group("data splits")
    settings.add_fields(g, settings.RunSettings, ("seed",),
                        seed={"help": "split and fold seed, as for finetune"})
    settings.add_fields(g, data, ("val_fraction", "test_fraction", "on_bad_image"))
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="folder for audit.json, audit.csv, "
                   "label_scores.csv, summary.md and galleries/")
    g.add_argument("--fix-splits", action="store_true",
                   help="also write OUT/index.json with every duplicate group in one split "
                        "(tlkit finetune --index trains on it)")
    g.add_argument("--quiet", action="store_true", help="no progress, summary only")


@subcommand("audit", "find wrong labels, duplicates, split leakage and outliers before you "
                     "train")
def cmd_audit(args):
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.audit import audit
    from tlkit.cli.finetune import console_verbosity

    result = audit(args.data, args.backbone, model=args.model, weights=args.weights,
                   image_size=args.image_size, out=args.out, folds=args.folds,
                   max_issues=args.max_issues, outlier_share=args.outlier_share,
                   near_threshold=args.near_threshold, neighbours=args.neighbours,
                   label_score=args.label_score, min_side=args.min_side,
                   fix_splits=args.fix_splits, batch_size=args.batch_size, seed=args.seed,
                   val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                   on_bad_image=args.on_bad_image, cache_dir=args.cache_dir,
                   verbose=console_verbosity(args.quiet))
    if args.quiet:
        print(result.table())
    print(f"audit in {args.out}/ (audit.json, audit.csv, label_scores.csv, summary.md, "
          f"galleries/)")
    return 0


cmd_audit.configure = _configure_audit
