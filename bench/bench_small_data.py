"""Small data that converges: tlkit's defaults at k images per class against the same strategy
trained to convergence, scikit-learn's LogisticRegression on the same features, and scratch.

The source model is the benchmarks' `demo_vgg` trained on five Fashion-MNIST classes
(`common.source_model`, cached); the target is the other five classes, k images per class in
train and in val (seeded draws), 200 per class in test, the same for every run of a seed.

Runs per (k, seed), all `tlkit.finetune` on `backbone=source.h5` unless said:
- `small-similar`: the defaults (what a user gets: the head solved in closed form,
  `tlkit.training.head_solver`);
- `small-similar adam`: the same with `head_solver="adam"` (the head by Adam steps under the
  default step budget, the default before the closed form);
- `small-similar converged`: `epochs=400, patience=400` (the head trained far past
  convergence, best val_loss restored): the reference of "trained to convergence";
- `logreg`: scikit-learn `LogisticRegression` on the head's input features (the frozen base's
  globally pooled output), C picked on the val split's log loss from a grid;
- `large-similar`, `large-dissimilar`: the defaults;
- `scratch`: the same network from random weights (`source_init.h5`), `large-dissimilar`,
  defaults.

Targets (issue 22): default small-similar within 3 pp of converged and within 5 pp of logreg
at k=5 and k=20; at k=5 it beats scratch by 15 pp and large-similar beats scratch by 10 pp.
Accuracies are means over the seeds (sd beside them); seconds are medians, reported in the
JSON only.

Run: `.venv/bin/python bench/bench_small_data.py` (`--quick`: one seed, k=5 only;
`--split issue`: issue 22's split, source classes 0,2,4,6,8 and target 1,3,5,7,9, results in
small-data-issue-split.json).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import statistics
import time

NAME = "small-data"
SPLITS = {"demo": (common.SOURCE_CLASSES, common.TARGET_CLASSES),
          "issue": ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))}
SIZES = (5, 20)
SEEDS = (0, 1, 2)
TEST_PER_CLASS = 200
CONVERGED = dict(epochs=400, patience=400)


def logreg_accuracy(model, ds):
    """LogisticRegression on the head's input features of `model`; C picked on val log loss."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from tlkit import data as data_lib
    from tlkit.training.frozen import feature_extractor

    extractor = feature_extractor(model)

    def feats(x, y):
        f, _ = data_lib.predict_labelled(extractor, x, y, batch_size=128)
        return np.asarray(f, dtype=np.float64)

    f_tr, f_va, f_te = (feats(*ds.split(s)) for s in ("train", "val", "test"))
    best = None
    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(f_tr, ds.y_train)
        loss = log_loss(ds.y_val, clf.predict_proba(f_va), labels=clf.classes_)
        if best is None or loss < best[0]:
            best = (loss, c, clf)
    return float((best[2].predict(f_te) == ds.y_test).mean()), best[1]


def one_run(ds, backbone, strategy, seed, **kw):
    import tlkit

    t0 = time.perf_counter()
    res = tlkit.finetune(data=ds, backbone=str(backbone), strategy=strategy, weights=None,
                         augment=False, autotune=False, seed=seed, verbose=0, **kw)
    secs = time.perf_counter() - t0
    steps = [p.get("steps") for p in res.report["fit"]["phases"]]
    return res, {"accuracy": float(res.report["accuracy"]), "seconds": round(secs, 2),
                 "epochs_run": len(res.history.get("loss", [])), "steps": steps}


def main():
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--split", choices=tuple(SPLITS), default="demo",
                   help="source/target classes: the benchmarks' (demo) or issue 22's")
    args = p.parse_args()
    source_classes, target_classes = SPLITS[args.split]
    name = NAME if args.split == "demo" else f"{NAME}-{args.split}-split"
    sizes, seeds = ((5,), (0,)) if args.quick else (SIZES, SEEDS)
    fashion = common.fashion()
    cfg = common.source_config(args)
    source, info = common.source_model(fashion, cfg, classes=source_classes)
    init = source.with_name(source.name.replace("source-demo_vgg", "source-init"))
    rows = []
    for k in sizes:
        for seed in seeds:
            ds = common.subset(fashion, target_classes, k, k, TEST_PER_CLASS, seed)
            runs = {}
            res, runs["small-similar"] = one_run(ds, source, "small-similar", seed)
            acc, c = logreg_accuracy(res.model, ds)
            runs["logreg"] = {"accuracy": acc, "C": c}
            del res
            common.free()
            for run_name, backbone, strategy, kw in (
                    ("small-similar converged", source, "small-similar", CONVERGED),
                    ("small-similar adam", source, "small-similar", {"head_solver": "adam"}),
                    ("large-similar", source, "large-similar", {}),
                    ("large-dissimilar", source, "large-dissimilar", {}),
                    ("scratch", init, "large-dissimilar", {})):
                res, runs[run_name] = one_run(ds, backbone, strategy, seed, **kw)
                del res
                common.free()
            for run_name, r in runs.items():
                rows.append({"k": k, "seed": seed, "run": run_name, **r})
            print(f"k={k} seed {seed}: " + ", ".join(f"{n} {r['accuracy']:.3f}"
                                                     for n, r in runs.items()), flush=True)
    table, checks = {}, []
    for k in sizes:
        for run_name in dict.fromkeys(r["run"] for r in rows):
            accs = [r["accuracy"] for r in rows if r["k"] == k and r["run"] == run_name]
            table[(k, run_name)] = (statistics.mean(accs), statistics.pstdev(accs))

        def gap(a, b):
            return 100 * (table[(k, a)][0] - table[(k, b)][0])

        checks.append(common.row(name, f"k={k}: default small-similar minus converged (pp)",
                                 None, ">= -3", gap("small-similar", "small-similar converged")
                                 >= -3, note=f"{gap('small-similar', 'small-similar converged'):+.1f} pp"))
        checks.append(common.row(name, f"k={k}: default small-similar minus logreg (pp)", None,
                                 ">= -5", gap("small-similar", "logreg") >= -5,
                                 note=f"{gap('small-similar', 'logreg'):+.1f} pp"))
        if k == 5:
            checks.append(common.row(name, "k=5: small-similar minus scratch (pp)", None,
                                     ">= 15", gap("small-similar", "scratch") >= 15,
                                     note=f"{gap('small-similar', 'scratch'):+.1f} pp"))
            checks.append(common.row(name, "k=5: large-similar minus scratch (pp)", None,
                                     ">= 10", gap("large-similar", "scratch") >= 10,
                                     note=f"{gap('large-similar', 'scratch'):+.1f} pp"))
    print(f"\n{'run':<26}" + "".join(f"{'k=' + str(k):>16}" for k in sizes))
    for run_name in dict.fromkeys(r["run"] for r in rows):
        print(f"{run_name:<26}" + "".join(f"{table[(k, run_name)][0]:>10.3f} "
                                          f"±{table[(k, run_name)][1]:.3f}"
                                      for k in sizes))
    for c in checks:
        print(f"  {c['comparison']}: {c['note']} (target {c['target']}: "
              f"{'met' if c['met'] else 'NOT met'})")
    path = common.write(name, {"source": info, "target_classes": list(target_classes), "sizes": list(sizes), "seeds": list(seeds),
                               "test_per_class": TEST_PER_CLASS, "rows": rows,
                               "means": {f"k={k} {n}": {"mean": round(m, 4), "sd": round(s, 4)}
                                         for (k, n), (m, s) in table.items()},
                               "checks": checks}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
