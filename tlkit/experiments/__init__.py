"""Experiments built on the library, apart from its core.

Layer: above the workflows, not among the tools under them: every run of an
experiment is a `tlkit.finetune` or `tlkit.curve` call (`tlkit.workflows`); only the CLI
sits above.

- `demo`: `tlkit demo`, the size-versus-similarity matrix reproduced on Fashion-MNIST and
  scikit-learn's digits, offline (`run_demo`). Its parts: `config` (settings, names and
  defaults), `classes` (the class split and argument checks), `situations` (the four target
  data sets), `networks` (the source net and the `fashion_cnn` baseline), `table` (the
  printed and Markdown tables) and `matrix_plot` (the heatmap).

Every training run of an experiment goes through `tlkit.workflows.finetune.finetune`, so through the
same phase runner as `tlkit finetune`.
"""
