"""From measured scores to a strategy: the rules `advise` applies, in plain words.

Inputs: per stage of one backbone, the validation accuracy of a linear probe and of cosine
kNN on that stage's pooled features, and LogME; and facts of the data (images per class,
classes, input size against the backbone's native one, whether the weights are random).

The rules, in order:
1. Random base weights: frozen features are random, so the whole network trains
   (`large-dissimilar`), whatever the size.
2. Size: "small" when the median class has fewer than `SMALL_PER_CLASS` training images.
3. Similarity from the probes: the data is "similar" when the last stage probes within
   `PROBE_MARGIN` of the best stage and well above chance (`SIMILAR_SKILL` of the way from
   chance to perfect); otherwise "dissimilar" (an earlier stage probes better, or nothing
   probes well: the top features do not fit this task).
4. The quadrant gives the strategy. For the fine-tuning strategies the unfreeze depth starts
   at the earliest stage that probes within `PROBE_MARGIN` of the best one: the stages above
   it are the task-specific ones. Learning rates are the strategy's own defaults.

Example:
    >>> rec = recommend([{"probe": 0.5, "knn": 0.4, "logme": -0.9},
    ...                  {"probe": 0.9, "knn": 0.85, "logme": -0.5}],
    ...                 {"per_class_median": 500, "num_classes": 10, "random_weights": False})
    >>> rec["strategy"], rec["unfreeze"]
    ('large-similar', 1)
"""

SMALL_PER_CLASS = 100   # training images in the median class below which data is "small"
PROBE_MARGIN = 0.02     # probe accuracies this close count as "as good"
SIMILAR_SKILL = 0.5     # the last stage's probe must be this far from chance to perfect


def recommend(stages, facts, stage_names=None, strategy_defaults=None):
    """The recommendation for one backbone: strategy, unfreeze, learning rates, reasons.

    Args:
        stages: per stage, a dict with `probe` and `knn` (accuracies) and `logme`.
        facts: `per_class_median`, `num_classes`, `random_weights` (bool), optionally
            `resolution_ratio` (input size / native size).
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
    size = "small" if facts["per_class_median"] < SMALL_PER_CLASS else "large"
    reasons.append(f"{facts['per_class_median']:.0f} training images in the median class: "
                   f"{size} data (small below {SMALL_PER_CLASS})")
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
    strategy = f"{size}-{similarity}"
    unfreeze = None
    if strategy in ("large-similar", "small-dissimilar"):
        unfreeze = max(1, n - 1 - earliest) if earliest < n - 1 else 1
        if earliest < n - 1:
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
