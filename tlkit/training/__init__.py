"""Training: a Plan and a Dataset in, trained weights out.

Contract: `strategies` turns a strategy name and a backbone into a Plan (phases, stages,
learning rates); `train.fit` runs its phases (`phases`, on cached features through `frozen`,
`feature_cache` and `head_solver`, or on images), with `callbacks`, `bn`, `schedules`,
`optimizers`, `mixing`, `class_weights`, `train_settings`, `distribute` and the run folder
(`runs`: lock, backup, resume); `lr_sweep` is the learning-rate sweep of the LR finder.
Training never reads a data-source string (it gets a `Dataset`) and never writes a
deployable file (that is `tlkit.deploy`). Imports `core`, `config`, `data` and `models`.
"""
