"""Measure how well a backbone's features transfer to the user's data (`tlkit advise`).

Layer: a tool on the layers below (data, models, training's frozen-feature cache, deploy),
under the workflows: `tlkit.finetune --strategy auto` calls `advise`, so advise imports
no workflow.

`advise(data, backbones)` runs each frozen base once over the training and validation
images, tapping every stage (`taps`), scores each stage (`scores`: LogME, the evidence of a
Bayesian linear head; the accuracy of a cosine kNN vote and of a linear (ridge) probe
on the validation split) and turns the scores and the data's facts into a strategy, an
unfreeze depth and learning rates with the reasons (`recommend`). `--strategy auto` in
`tlkit finetune` runs it and trains what it recommends.
"""

from tlkit.advise.core import Advice, advise, data_facts
from tlkit.advise.recommend import recommend
from tlkit.advise.scores import knn_accuracy, linear_probe_accuracy, logme, stage_scores

__all__ = ["Advice", "advise", "data_facts", "recommend", "knn_accuracy",
           "linear_probe_accuracy", "logme", "stage_scores"]
