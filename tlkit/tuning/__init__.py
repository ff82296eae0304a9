"""KerasTuner search over dropout, BatchNormalization placement, learning rate and unfreeze depth.

Layer: above the workflows, not among the tools under them: every trial's data, the
channel note and the final model's report, card and calibration are those of
`tlkit.finetune` (`tlkit.workflows.finetune`), so tuning builds on it; only the CLI sits
above.

Two hypermodels, both `keras_tuner.HyperModel` subclasses that declare their tunables inline
with defaults:

- `ZooHyperModel`: a from-scratch `tlkit.models.zoo` model. For the models built from VGG / conv
  blocks (`vgg16`, `vgg19`, `fashion_cnn`) it tunes BN placement and dropout per block
  (`block1_bn`, `block1_dropout`, ...), the head dropout (`dropout`), the number of blocks
  (`blocks`), the first block's filters (`filters`, later blocks keep the published ratios),
  the learning rate (log scale) and the optimizer. The other zoo models tune the options
  their builder exposes (`bn`, `dropout`, `width`, `blocks_per_stage`) with the same
  learning rate and optimizer.
- `BackboneHyperModel`: a pretrained backbone under a strategy (`tlkit.training.strategies`): head
  dropout, head width, head BN placement, the learning rate of each phase and, for the
  fine-tuning strategies, the number of stages to unfreeze. Under `small-similar` the base is
  frozen, so its features are computed once per search and every trial trains only a head on
  them; the best head is then put on the base as one deployable model.

Any hyperparameter can be fixed (`parse_fix(["dropout=0.3"], hm)`) or narrowed
(`parse_space(["bn=before,after", "learning_rate=1e-4:1e-3"], hm)`); `bn` names every BN
placement and `block_dropout` every per-block dropout. `tune(...)` runs the search (random,
hyperband or bayesian) into an output folder, resumes it when run again with the same
settings, refuses a folder that holds a different search, writes the trials as JSON, CSV
and PNG, and saves the best model as a deployable `.h5` (`tlkit.deploy.saving.save`) with the
chosen hyperparameters in its metadata.

Distributed search is KerasTuner's own: a chief process serves the oracle over gRPC and
workers run trials. The role and address come from `KERASTUNER_TUNER_ID` ("chief" or a
worker id such as "tuner0"), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`, or from
`tune(tuner_id=..., oracle="HOST:PORT")`.

Between trials tlkit calls `keras.backend.clear_session()` and also drops the gradient
functions TensorFlow registers globally for every traced training step (graph-mode
`tf.custom_gradient` entries in its gradient registry); without that each trial pins its
whole traced graph and memory grows by tens of MB per trial.

Example:
    >>> from tlkit import data, tuning
    >>> ds = data.load("digits", image_size=16, channels=1).select(per_class=10)
    >>> hm = tuning.ZooHyperModel("fashion_cnn", (16, 16, 1), fix=["filters=8"])
    >>> sorted(hm.tunables())[:3]
    ['block1_bn', 'block1_dropout', 'block2_bn']
    >>> result = tuning.tune(ds, model="zoo:fashion_cnn", image_size=16, max_trials=2,
    ...                      epochs=1, fix=["filters=8"], out="/tmp/tlkit_tune_doc",
    ...                      overwrite=True, verbose=0)
    >>> len(result.trials), "block1_bn" in result.best_hyperparameters
    (2, True)

The package's modules: `space` (tunables, fixing and narrowing them), `hypermodel` (the base),
`zoo_hypermodel`, `backbone_hypermodel`, `search`
(tuners, freeing memory between trials), `distributed` (chief and workers), `run` (`tune()`),
`reports` (the trials as a table, JSON, CSV, PNG) and `constants`.
"""

from tlkit.tuning.constants import (
    DROPOUTS, FINE_TUNE_LEARNING_RATES, HEAD_WIDTHS, LEARNING_RATES, OBJECTIVES, OPTIMIZERS,
    TUNERS,
)
from tlkit.tuning.backbone_hypermodel import BackboneHyperModel
from tlkit.tuning.distributed import distributed_role, serve_oracle, wait_for_chief
from tlkit.tuning.hypermodel import TlkitHyperModel, make_optimizer
from tlkit.tuning.reports import format_table, plot_trials, trials_table, write_reports
from tlkit.tuning.run import TuneResult, make_hypermodel, tune
from tlkit.tuning.search import make_tuner, oracle_seed, release_trial_memory, tuner_metrics
from tlkit.tuning.space import Tunable, parse_fix, parse_space
from tlkit.tuning.zoo_hypermodel import BLOCK_MODELS, BlockLayout, ZooHyperModel, block_layout

__all__ = ["Tunable", "TlkitHyperModel", "ZooHyperModel", "BackboneHyperModel", "BlockLayout",
           "BLOCK_MODELS", "block_layout", "TuneResult", "tune", "make_hypermodel", "parse_fix", "parse_space",
           "make_tuner", "make_optimizer", "oracle_seed", "release_trial_memory",
           "tuner_metrics", "distributed_role", "wait_for_chief", "serve_oracle",
           "trials_table", "format_table", "write_reports", "plot_trials", "TUNERS",
           "OBJECTIVES", "OPTIMIZERS", "DROPOUTS", "LEARNING_RATES", "FINE_TUNE_LEARNING_RATES",
           "HEAD_WIDTHS"]
