"""Calibrated probabilities and "unknown" (issue 24): ECE/NLL before and after temperature
scaling, unknown detection, selective risk, and the time calibration adds to a run.

Known classes: Fashion-MNIST 2,3,6,7,9 (`common.TARGET_CLASSES`), 1,000 training images per
class ("large"), 200 per class in val and 500 in test, through `tlkit.finetune` on the cached
source model (`common.source_model`, trained on 0,1,4,5,8) with `large-similar` and with
`small-similar` (head only), each seed its own draw. Unknowns: the test images of the five
held-out classes 0,1,4,5,8 (near), and scikit-learn's digits at 28 px (far).

Scores compared (higher = more unknown). `tlkit`: the score the run's model carries in every
artifact (its default, `mahalanobis` fitted on at most `calibrate.run.FIT_IMAGES` training
images: `tlkit.deploy.feature_score`); the targets are checked on it. From the probabilities
and T alone: `msp` (1 - max calibrated probability), `energy` (on the log-probabilities at
the fitted T) and `entropy` (of the calibrated probabilities; the default for models without
a feature layer). From the head's input features: `knn` (k=10 distance,
L2-normalised, 2,000 training images as the bank), `maha` (the smallest Mahalanobis
distance to a class mean, shared Ledoit-Wolf covariance, all training images; Lee et al.
2018), `maha_pooled` (the same with the plain pooled covariance), `rel_maha` (`maha` less the
distance under one Ledoit-Wolf Gaussian of all training features; Ren et al. 2021), and from
the head's logits (the softmax Dense's input times its kernel, before softmax):
`maxlogit` (minus the largest logit; Hendrycks et al. 2022) and `energy_logits` (minus
logsumexp of the logits; Liu et al. 2020).

Cost: the seconds inside `tlkit.calibrate.calibrate_model` (val forward pass, fit, figure)
over the seconds of the whole `tlkit.finetune` call, with the figure's and the fit's share
(`calibration_parts`), and the other processes' CPU while the run ran (`other_cpu_cores`).

Targets: ECE after <= 1.5% and at least halved where >= 2% before; NLL never worse; AUROC
>= 0.90 far and >= 0.80 held-out; error at 90% coverage <= 0.6x full; cost <= 5%.

Run: `.venv/bin/python bench/bench_calibration.py` (`--quick`: one seed, small draws).
"""

import common  # noqa: I001  (sets TF log level before TensorFlow loads)

import statistics
import tempfile
import time

NAME = "calibration"
SEEDS = (0, 1, 2)
KNOWN, HELD_OUT = common.TARGET_CLASSES, common.SOURCE_CLASSES
SITUATIONS = (("large-similar", 1000), ("small-similar", 1000))


def unknown_images(fashion, n, seed):
    import numpy as np

    from tlkit import data as data_lib

    near = common.subset(fashion, HELD_OUT, 1, 1, n // len(HELD_OUT), seed)
    digits = data_lib.load("digits", image_size=(28, 28), channels=1, seed=seed)
    far = np.concatenate([digits.x_train, digits.x_val, digits.x_test])[:n]
    return np.asarray(near.x_test, "float32"), np.asarray(far, "float32")


PROBABILITY_SCORES = ("msp", "energy", "entropy")
FEATURE_SCORES = ("knn", "maha", "maha_pooled", "rel_maha")
LOGIT_SCORES = ("maxlogit", "energy_logits")


def scores_of(model, cal, ds, x_near, x_far):
    import numpy as np
    from scipy.special import logsumexp

    from tlkit import data as data_lib
    from tlkit.calibrate import metrics, temperature, unknown
    from tlkit.training.frozen import feature_extractor

    t = cal["temperature"]
    sets = (("known", np.asarray(ds.x_test, "float32")), ("near", x_near), ("far", x_far))
    probs = {k: model.predict(x, batch_size=256, verbose=0) for k, x in sets}
    extractor = feature_extractor(model)
    feats = {k: extractor.predict(x, batch_size=256, verbose=0) for k, x in sets}
    train, y_train = data_lib.predict_labelled(extractor, ds.x_train, ds.y_train,
                                               batch_size=256)
    dense = model.get_layer("predictions")  # after the features: dropout, then this Dense
    kernel, bias = (np.asarray(w, "float64") for w in dense.get_weights())
    logit = {k: np.asarray(f, "float64") @ kernel + bias for k, f in feats.items()}
    fits = {}
    t0 = time.perf_counter()
    gauss = unknown.fit_gaussians(train, y_train)
    fits["maha_fit_seconds"] = round(time.perf_counter() - t0, 3)
    pooled = unknown.fit_gaussians(train, y_train, covariance="pooled")
    score_fns = {
        "msp": lambda k: unknown.scores(probs[k], "msp", t),
        "energy": lambda k: unknown.scores(probs[k], "energy", t),
        "entropy": lambda k: unknown.scores(probs[k], "entropy", t),
        "knn": lambda k: unknown.knn_scores(feats[k], train[:2000]),
        "maha": lambda k: unknown.mahalanobis_scores(feats[k], gauss),
        "maha_pooled": lambda k: unknown.mahalanobis_scores(feats[k], pooled),
        "rel_maha": lambda k: unknown.mahalanobis_scores(feats[k], gauss, relative=True),
        "maxlogit": lambda k: -logit[k].max(axis=1),
        "energy_logits": lambda k: -logsumexp(logit[k], axis=1)}
    calibrated = {k: temperature.apply(p, t) for k, p in probs.items()}
    # the margin between the two most probable classes (a ranking for selective risk)
    score_fns["margin"] = lambda k: -np.diff(np.sort(calibrated[k], axis=1)[:, -2:],
                                             axis=1)[:, 0]
    shipped = cal["unknown"].get("params")  # what the model's artifacts carry and compute
    if shipped is not None:
        score_fns["tlkit"] = lambda k: shipped.scores(feats[k])
    out = {}
    for score in PROBABILITY_SCORES + ("margin",) + FEATURE_SCORES + LOGIT_SCORES + (
            ("tlkit",) if shipped is not None else ()):
        s = {k: score_fns[score](k) for k, _ in sets}
        out[score] = {f"{w}_auroc": metrics.auroc(s["known"], s[w]) for w in ("near", "far")}
        out[score].update({f"{w}_fpr95": metrics.fpr_at_tpr(s["known"], s[w])
                           for w in ("near", "far")})
        correct = probs["known"].argmax(1) == np.asarray(ds.y_test)
        out[score]["error_at_90"] = metrics.error_at_coverage(-s["known"], correct, 0.90)
    return out, {"feature_dim": int(train.shape[1]), "bank_images": int(len(train)), **fits,
                 "ece_floor": ece_floor(temperature.apply(probs["known"], t))}


def ece_floor(probabilities, draws=200, seed=0):
    """The ECE a perfectly calibrated model with these confidences would measure on this
    many images: labels drawn right with probability = confidence (mean of `draws`)."""
    import numpy as np

    from tlkit.calibrate import metrics

    p = np.asarray(probabilities, "float64")
    top = p.argmax(axis=1)
    other = (top + 1) % p.shape[1]  # any class but the predicted one: a wrong answer
    rng = np.random.default_rng(seed)
    return float(np.mean([metrics.ece(p, np.where(rng.uniform(size=len(p)) < p.max(axis=1),
                                                  top, other)) for _ in range(draws)]))


def one_run(fashion, source, strategy, per_class, seed, x_near, x_far):
    import tlkit
    from tlkit.calibrate import run as calibrate_run

    ds = common.subset(fashion, KNOWN, per_class, 200, 500, seed)
    record, parts = [], {"reliability": [], "fit": []}
    with tempfile.TemporaryDirectory() as tmp, \
            common.timed_calls(calibrate_run, "calibrate_model", record), \
            common.timed_calls(calibrate_run.plots, "plot_reliability", parts["reliability"]), \
            common.timed_calls(calibrate_run, "calibrate_probs", parts["fit"]):
        watch = common.CpuWatch().start()
        t0 = time.perf_counter()
        res = tlkit.finetune(data=ds, backbone=str(source), strategy=strategy, weights=None,
                             augment=False, autotune=False, seed=seed, verbose=0,
                             report_dir=tmp)
        total = time.perf_counter() - t0
        others = watch.stop()["other_cpu_cores"]
    cal = res.report["calibration"]
    scores, feature_info = scores_of(res.model, cal, ds, x_near, x_far)
    row = {"strategy": strategy, "per_class": per_class, "seed": seed,
           "accuracy": float(res.report["accuracy"]), "seconds": round(total, 2),
           "precision": res.report.get("precision"),
           "other_cpu_cores": others, "calibration_seconds": round(sum(record), 3),
           "calibration_parts": {k: round(sum(v), 3) for k, v in parts.items()},
           "cost_ratio": sum(record) / total, **{k: cal[k] for k in (
               "temperature", "ece_before", "ece_after", "nll_before", "nll_after",
               "brier_before", "brier_after", "error_full", "error_at_90", "error_at_95")},
           "unknown": {k: (v.to_json() if k == "params" else v)
                       for k, v in cal["unknown"].items()},
           "features": feature_info, "scores": scores}
    del res
    common.free()
    return row


def main():
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    seeds = (0,) if args.quick else SEEDS
    situations = tuple((s, 100) for s, _ in SITUATIONS) if args.quick else SITUATIONS
    quiet = common.wait_for_quiet(args)
    fashion = common.fashion()
    source, info = common.source_model(fashion, common.source_config(args))
    rows = []
    for seed in seeds:
        x_near, x_far = unknown_images(fashion, 1500, seed)
        for strategy, per_class in situations:
            r = one_run(fashion, source, strategy, per_class, seed, x_near, x_far)
            rows.append(r)
            print(f"{strategy} seed {seed}: acc {r['accuracy']:.3f} T {r['temperature']:.2f} "
                  f"ECE {r['ece_before']:.2%}->{r['ece_after']:.2%} (floor "
                  f"{r['features']['ece_floor']:.2%}) NLL {r['nll_before']:.3f}->"
                  f"{r['nll_after']:.3f} err {r['error_full']:.3f} @90 {r['error_at_90']:.3f}"
                  f" cost {r['cost_ratio']:.1%} (others {r['other_cpu_cores']} cores) " +
                  " ".join(f"{s}:{v['near_auroc']:.3f}/{v['far_auroc']:.3f}"
                           for s, v in r["scores"].items()), flush=True)
    # the score the runs' artifacts carry: "tlkit" (its fitted mahalanobis) when they have one
    default = "tlkit" if "tlkit" in rows[0]["scores"] else rows[0]["unknown"]["score"]

    mean = lambda xs: statistics.mean(xs)  # noqa: E731
    checks, summary = [], {}
    for strategy, _ in situations:
        rs = [r for r in rows if r["strategy"] == strategy]
        m = {k: mean([r[k] for r in rs]) for k in ("ece_before", "ece_after", "nll_before",
                                                   "nll_after", "error_full", "error_at_90",
                                                   "cost_ratio", "accuracy", "temperature")}
        m["scores"] = {s: {k: mean([r["scores"][s][k] for r in rs])
                           for k in rs[0]["scores"][s]} for s in rs[0]["scores"]}
        m["calibration_parts"] = {k: mean([r["calibration_parts"][k] for r in rs])
                                  for k in rs[0]["calibration_parts"]}
        m["ece_floor"] = mean([r["features"]["ece_floor"] for r in rs])
        summary[strategy] = m
        halved = all(r["ece_after"] <= r["ece_before"] / 2 for r in rs if r["ece_before"] >= .02)
        checks += [
            common.row(NAME, f"{strategy}: ECE after (mean of seeds)", None, "<= 1.5%",
                       m["ece_after"] <= 0.015, note=f"{m['ece_before']:.2%} -> "
                                                     f"{m['ece_after']:.2%} (a perfectly "
                                                     f"calibrated model: {m['ece_floor']:.2%})"),
            common.row(NAME, f"{strategy}: ECE halved where >= 2% before (every seed)", None,
                       ">= 2x", halved, note=", ".join(f"{r['ece_before']:.2%}->"
                                                       f"{r['ece_after']:.2%}" for r in rs)),
            common.row(NAME, f"{strategy}: NLL after <= before (every seed)", None, "<= 1x",
                       all(r["nll_after"] <= r["nll_before"] + 1e-9 for r in rs),
                       note=f"{m['nll_before']:.4f} -> {m['nll_after']:.4f}"),
            common.row(NAME, f"{strategy}: AUROC far (digits), {default}", None, ">= 0.90",
                       m["scores"][default]["far_auroc"] >= 0.90,
                       note=f"{m['scores'][default]['far_auroc']:.3f}"),
            common.row(NAME, f"{strategy}: AUROC held-out classes, {default}", None, ">= 0.80",
                       m["scores"][default]["near_auroc"] >= 0.80,
                       note=f"{m['scores'][default]['near_auroc']:.3f}"),
            common.row(NAME, f"{strategy}: error at 90% coverage / full", m["error_at_90"] /
                       max(m["error_full"], 1e-9), "<= 0.6", m["error_at_90"] <= 0.6 *
                       m["error_full"], note=f"{m['error_at_90']:.3f} / {m['error_full']:.3f}"),
            common.row(NAME, f"{strategy}: calibration time / run time", m["cost_ratio"],
                       "<= 5%", m["cost_ratio"] <= 0.05, note=f"{m['cost_ratio']:.1%}")]
    for c in checks:
        print(f"  {c['comparison']}: {c['note']} (target {c['target']}: "
              f"{'met' if c['met'] else 'NOT met'})")
    print("score: AUROC near / far, FPR@95 near / far, error at 90% (mean of seeds)")
    for strategy, m in summary.items():
        for score, v in m["scores"].items():
            print(f"  {strategy:14s} {score:14s} {v['near_auroc']:.3f} / {v['far_auroc']:.3f}"
                  f"  {v['near_fpr95']:.3f} / {v['far_fpr95']:.3f}  {v['error_at_90']:.3f}")
    path = common.write(NAME, {"source": info, "seeds": list(seeds), "known": list(KNOWN),
                               "held_out": list(HELD_OUT), "default_score": default,
                               "quiet": quiet, "rows": rows, "summary": summary,
                               "checks": checks}, args)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
