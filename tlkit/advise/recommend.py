"""From measured scores to a strategy: the rules `advise` applies, in plain words.

Inputs: per stage of one backbone, the validation accuracy of a linear probe and of cosine
kNN on that stage's pooled features, and LogME; and facts of the data and the base (training
images, classes, the base's parameters, the input size against the native one, whether the
weights are random).

The rules, in order (the evidence for each is cited; bench/results/small-data.json and the
demo's matrix.json were measured with every phase trained to convergence, issue 22):
1. Random base weights: frozen features are random, so the whole network trains
   (`large-dissimilar`), whatever the size.
2. Size is measured against the base: the data is "small" when the base has more than
   `SMALL_PARAMS_PER_IMAGE` parameters per training image (it could fit the training set
   many times over, so training all of it overfits); else "large". The textbook's "small"
   is about the same question; counting images alone ignores that a 100k-parameter base and
   a 25M one need very different amounts of data. Measured: at 3,700 and 930 parameters
   per image (5 and 20 Fashion-MNIST images per class, the benchmarks' 93k-parameter source
   net) fine-tuning the last stage beat the solved head by 2.5 and 1.6 points; at 622 and
   below (the demo's rows) the solved head won or was within 0.7 points (rule 6), so the
   boundary `SMALL_PARAMS_PER_IMAGE` lies between them.
3. Similarity from the probes: the data is "similar" when the last stage probes within
   `PROBE_MARGIN` of the best stage and well above chance (`SIMILAR_SKILL` of the way from
   chance to perfect); otherwise "dissimilar" (an earlier stage probes better, or nothing
   probes well: the top features do not fit this task).
4. Small and similar: `large-similar`, not the textbook's feature extraction. With the head
   solved on the frozen features first (`tlkit.training.head_solver`) and then the last stage(s)
   fine-tuned at a tenth of the head's rate (LP-FT: Kumar et al., ICLR 2022, "Fine-Tuning can
   Distort Pretrained Features"), and the better phase's weights kept, fine-tuning beat the
   frozen base: 76.7% against 74.2% at 5 images per class, 82.5% against 80.9% at 20 (3 seeds
   each, bench/bench_small_data.py, bench/results/small-data.json; on issue 22's class split
   85.7% against 82.4% and 91.0% against 90.7%).
5. Small and dissimilar: `small-dissimilar`, fine-tuning the stages above the earliest one
   that probes within `PROBE_MARGIN` of the best (the features below it still fit).
6. Large but not plentiful data (`PLENTY_PARAMS_PER_IMAGE` < parameters per image <=
   `SMALL_PARAMS_PER_IMAGE`) whose features fit (similar): `small-similar`. Since the head is
   solved in closed form, feature extraction was the best of the four strategies in the
   demo's three rows at 74, 311 and 622 parameters per image (84.6% against 83.1%, 98.9%
   against 97.2%, 100.0% against 98.6%: the digits count as similar by the probes) and lost
   only in the row at 12 per image (91.9% against 92.6%), at 2-8 s against 9-56 s.
7. Plentiful data, or large data that is dissimilar: the whole network trains
   (`large-dissimilar`), since with enough data adapting every stage is the strongest choice
   (Kornblith et al., CVPR 2019, "Do Better ImageNet Models Transfer Better?": full
   fine-tuning beat fixed features on every data set), unless the last stage already probes
   almost perfectly (`NEAR_PERFECT_SKILL`): then fine-tuning the later stages
   (`large-similar`) gets there for less.
Learning rates are the strategy's own defaults.

Example:
    >>> rec = recommend([{"probe": 0.5, "knn": 0.4, "logme": -0.9},
    ...                  {"probe": 0.9, "knn": 0.85, "logme": -0.5}],
    ...                 {"train": 5000, "base_params": 2_000_000, "num_classes": 10,
    ...                  "random_weights": False})
    >>> rec["strategy"], rec["size"], rec["similarity"]
    ('small-similar', 'large', 'similar')
    >>> recommend([{"probe": 0.9, "knn": 0.85, "logme": -0.5}],
    ...           {"train": 100_000, "base_params": 2_000_000, "num_classes": 10,
    ...            "random_weights": False})["strategy"]
    'large-dissimilar'
"""

from tlkit.training import strategies

# Base parameters per training image above which data is small. Measured (rules 2, 4, 6):
# fine-tuning beat the solved head at 930 per image and above, the solved head won at 622 and
# below; the boundary is set between them (it was 1,000 while the head trained by Adam).
SMALL_PARAMS_PER_IMAGE = 750
PLENTY_PARAMS_PER_IMAGE = 30  # ... at or below which large data is plentiful (rule 6)
PROBE_MARGIN = 0.02     # probe accuracies this close count as "as good"
SIMILAR_SKILL = 0.5     # the last stage's probe must be this far from chance to perfect
NEAR_PERFECT_SKILL = 0.97  # ... and this far for large data to fine-tune only later stages


def recommend(stages, facts, stage_names=None, strategy_defaults=None):
    """The recommendation for one backbone: strategy, unfreeze, learning rates, reasons.

    Args:
        stages: per stage, a dict with `probe` and `knn` (accuracies) and `logme`.
        facts: `train` (training images), `base_params`, `num_classes`, `random_weights`
            (bool), optionally `resolution_ratio` (input size / native size).
        stage_names: names for the reasons (default `stage0`, `stage1`, ...).
        strategy_defaults: optional dict strategy -> {"learning_rate", "fine_tune_lr"}.

    Returns:
        A dict: `strategy`, `unfreeze` (stages, or None), `learning_rate`, `fine_tune_lr`,
        `size`, `similarity`, `reasons` (a list of sentences).
    """
    names = stage_names or [f"stage{i}" for i in range(len(stages))]
    n = len(stages)
    chance = 1.0 / max(2, facts["num_classes"])
    probes = [s["probe"] for s in stages]
    best = max(range(n), key=lambda i: (probes[i], i))
    top = probes[-1]
    reasons = []
    per_image = facts["base_params"] / max(1, facts["train"])
    size = "small" if per_image > SMALL_PARAMS_PER_IMAGE else "large"
    reasons.append(f"{facts['train']:,} training images for a base of "
                   f"{facts['base_params']:,} parameters ({per_image:,.0f} per image): {size} "
                   f"data (small above {SMALL_PARAMS_PER_IMAGE:,} per image)")
    ratio = facts.get("resolution_ratio")
    if ratio is not None and ratio < 0.5:
        reasons.append(f"the input is {ratio:.2f}x the backbone's native resolution: its "
                       f"upper stages see very small feature maps")
    if facts.get("random_weights"):
        reasons.append("the base's weights are random: frozen features carry no knowledge, "
                       "so the whole network trains")
        return _result("large-dissimilar", None, size, "unknown (random weights)", reasons,
                       strategy_defaults)
    skill = (top - chance) / (1 - chance)
    similar = probes[best] - top <= PROBE_MARGIN and skill >= SIMILAR_SKILL
    earliest = min(i for i in range(n) if probes[best] - probes[i] <= PROBE_MARGIN)
    if similar:
        reasons.append(f"the last stage ({names[-1]}) probes at {top:.1%} validation accuracy "
                       f"(chance {chance:.1%}), as well as any stage: the data is similar to "
                       f"what the base learned")
    elif probes[best] - top > PROBE_MARGIN:
        reasons.append(f"{names[best]} probes at {probes[best]:.1%}, better than the last stage "
                       f"({top:.1%}): the last stages are task-specific here; the data is "
                       f"dissimilar")
    else:
        reasons.append(f"the last stage probes at only {top:.1%} (chance {chance:.1%}): the "
                       f"features do not fit this task well; the data is dissimilar")
    similarity = "similar" if similar else "dissimilar"
    if size == "small" and similar:
        strategy = "large-similar"
        reasons.append("with few images for the base and similar data, a converged head and "
                       "then the last stage(s) fine-tuned at a low rate beat feature "
                       "extraction (76.7% against 74.2% at 5 images per class, "
                       "bench/results/small-data.json)")
    elif size == "small":
        strategy = "small-dissimilar"
    elif similar and per_image > PLENTY_PARAMS_PER_IMAGE:
        strategy = "small-similar"
        reasons.append(f"the features fit and the data is not plentiful for the base (plentiful "
                       f"at {PLENTY_PARAMS_PER_IMAGE} parameters per image or fewer): the head "
                       f"solved on the frozen features is as accurate as fine-tuning, for a "
                       f"fraction of the time (the demo's rows at 74-622 per image)")
    elif similar and skill >= NEAR_PERFECT_SKILL:
        strategy = "large-similar"
        reasons.append(f"the last stage's probe is nearly perfect ({top:.1%}): fine-tuning the "
                       f"later stages is enough")
    else:
        strategy = "large-dissimilar"
        reasons.append("with this much data for the base, training every stage adapts the "
                       "features most (full fine-tuning wins on large data)")
    unfreeze = None
    if strategy in strategies.FINE_TUNING:
        unfreeze = max(1, n - 1 - earliest) if earliest < n - 1 else 1
        if earliest < n - 1 and earliest == best:
            reasons.append(f"{names[earliest]} probes best ({probes[earliest]:.1%}): "
                           f"fine-tune the {unfreeze} stage(s) above it")
        elif earliest < n - 1:
            reasons.append(f"{names[earliest]} probes as well as {names[best]} "
                           f"({probes[earliest]:.1%}): fine-tune the {unfreeze} stage(s) "
                           f"above it")
        else:
            reasons.append(f"only the last stage probes best: fine-tune it ({names[-1]})")
    return _result(strategy, unfreeze, size, similarity, reasons, strategy_defaults)


def _result(strategy, unfreeze, size, similarity, reasons, defaults):
    rates = (defaults or {}).get(strategy, {})
    return {"strategy": strategy, "unfreeze": unfreeze, "size": size,
            "similarity": similarity, "learning_rate": rates.get("learning_rate"),
            "fine_tune_lr": rates.get("fine_tune_lr"), "reasons": reasons}
