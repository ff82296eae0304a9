"""Measure how well a backbone's features transfer to the user's data (`tlkit advise`).

`scores` rates one stage's pooled features with three numbers: LogME (the evidence of a
Bayesian linear head; no held-out data), the accuracy of a cosine kNN vote and that of a
logistic-regression probe on a validation split. `stage_scores` returns all three.
"""

from tlkit.advise.scores import knn_accuracy, linear_probe_accuracy, logme, stage_scores

__all__ = ["knn_accuracy", "linear_probe_accuracy", "logme", "stage_scores"]
