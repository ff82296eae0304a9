"""The strategy matrix of `tlkit plan`: for one backbone, each strategy's phases with the
stages that train, their epochs, learning rates and parameter counts, as rows and as text.

Example:
    >>> from tlkit.models import backbones
    >>> bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    >>> rows = matrix(bb, num_classes=5, epochs=4)
    >>> [r["phase"] for r in rows if r["strategy"] == "large-similar"]
    ['1:head', '2:fine-tune']
"""

import keras

from tlkit.training import strategies


def matrix(backbone, num_classes=10, epochs=strategies.DEFAULT_EPOCHS, **options):
    """Rows for `tlkit plan`: per strategy and phase, the stages that train and the counts."""
    rows = []
    for strategy in strategies.STRATEGIES:
        p = strategies.plan(strategy, backbone, epochs=epochs, **options)
        for i, ph in enumerate(p.phases):
            trainable, frozen = p.counts(ph, num_classes)
            stages = [backbone.stages[s].name for s in ph.train_stages]
            rows.append({"strategy": strategy, "phase": f"{i + 1}:{ph.name}",
                         "epochs": ph.epochs, "learning_rate": ph.learning_rate,
                         "train_stages": stages, "trainable_params": trainable,
                         "frozen_params": frozen, "bn_training": p.bn_training})
        keras.backend.clear_session()
    return rows


def format_matrix(backbone, rows):
    """The size-versus-similarity matrix and the per-strategy table, as printable text."""
    n = len(backbone.stages)
    out = [f"Backbone {backbone.name}: {n} stages "
           f"({', '.join(f'{s.name} {s.resolution[0]}x{s.resolution[1]}' for s in backbone.stages)})",
           "",
           "                 similar data              dissimilar data",
           "  small data     small-similar             small-dissimilar",
           "  large data     large-similar             large-dissimilar",
           "",
           f"{'strategy':<17} {'phase':<12} {'epochs':>6} {'lr':>8}  {'trainable':>12} "
           f"{'non-trainable':>13}  stages that train"]
    for r in rows:
        stages = ", ".join(r["train_stages"]) if r["train_stages"] else "head only"
        if r["bn_training"]:
            stages += " (BN statistics update)"
        out.append(f"{r['strategy']:<17} {r['phase']:<12} {r['epochs']:>6} "
                   f"{r['learning_rate']:>8.0e}  {r['trainable_params']:>12,} "
                   f"{r['frozen_params']:>13,}  {stages}")
    return "\n".join(out)
