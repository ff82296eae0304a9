"""The workflows: the only place that composes load -> build -> fit -> report -> save.

Contract: `finetune` (`tlkit.finetune`: data, backbone, plan, fit, report, model card,
`.h5`/`.keras` in one call), `lr_find` (`tlkit.lr_find`: load and build as finetune would,
then `tlkit.training.lr_sweep.sweep`) and `curve` (`tlkit.curve`: accuracy against training
images per class, every run through `finetune`). Everything below a workflow is reachable
on its own; the tools that run whole trainings (`tuning`, `experiments`) and the CLI sit
above, and call these.
"""
