"""The training recipe of a run: schedule, per-stage rates, label smoothing, class weights,
mixup and cutmix, checked together and recorded under the names the CLI uses (snake_case).

Example:
    >>> s = TrainSettings(schedule="onecycle", label_smoothing=0.1)
    >>> s.to_dict()["schedule"], s.to_dict()["label_smoothing"]
    ('onecycle', 0.1)
    >>> TrainSettings(lr_decay_per_stage=0)
    Traceback (most recent call last):
    ...
    tlkit.core.errors.TlkitError: --lr-decay-per-stage must be a number in (0, 1], e.g. 0.5 (1: the same rate for every stage). Received: 0.
"""

import dataclasses

from tlkit.config.settings import HEAD_SOLVER_CHOICES, RECIPE, RecipeSettings
from tlkit.core.errors import check_choice
from tlkit.training import class_weights as class_weights_lib
from tlkit.training import mixing, optimizers, schedules

DEFAULT_LR_DECAY_PER_STAGE = RECIPE.lr_decay_per_stage
DEFAULT_LABEL_SMOOTHING = RECIPE.label_smoothing


@dataclasses.dataclass
class TrainSettings(RecipeSettings):
    """How each phase trains, beyond its learning rate and epochs (see `tlkit.training.train.fit`).

    The fields, their defaults and their flags are `tlkit.config.settings.RecipeSettings`'s; this
    class checks them together and resolves them for a run.

    Attributes:
        schedule: `constant`, `cosine` or `onecycle` (`tlkit.training.schedules`).
        warmup: share of a fine-tuning phase's steps that `cosine` warms up over.
        lr_decay_per_stage: F in (0, 1]: the k-th stage below the top trains at LR x F**k
            (`tlkit.training.optimizers`).
        label_smoothing: S in [0, 1) for the training targets (`tlkit.training.mixing`).
        class_weight: None, `"balanced"` or {class name: weight} (`tlkit.training.class_weights`).
        mixup, cutmix: Beta(A, A) parameters (0: off) (`tlkit.training.mixing`).
        head_solver: `auto`, `closed-form` or `adam` (`tlkit.training.phases.head_solver_choice`).
    """

    def __post_init__(self):
        schedules.check(self.schedule, self.warmup)
        optimizers.check_decay(self.lr_decay_per_stage)
        mixing.check(self.label_smoothing, self.mixup, self.cutmix)
        check_choice("head_solver", self.head_solver, HEAD_SOLVER_CHOICES)
        self.class_weight = class_weights_lib.parse(self.class_weight)

    def targets(self, num_classes, seed=0):
        """The training-target map (`mixing.Targets`), or None when labels stay integers."""
        t = mixing.Targets(num_classes, self.label_smoothing, self.mixup, self.cutmix, seed)
        return t if t.active else None

    def class_weights(self, dataset):
        """{class index: weight} for `fit`, or None."""
        return class_weights_lib.resolve(self.class_weight, dataset.class_names,
                                         dataset.y_train)

    def to_dict(self):
        """The settings as recorded in report.json and the model's metadata."""
        return dataclasses.asdict(self)


