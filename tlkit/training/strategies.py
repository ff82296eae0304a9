"""The four strategies of the size-versus-similarity matrix: a registry of `Strategy`
objects that own their defaults, made concrete for a backbone as `Plan`s.

|                     | similar to the pretraining data | dissimilar                          |
|---------------------|---------------------------------|-------------------------------------|
| **small data set**  | `small-similar`: freeze the base, train a new classifier (feature extraction) | `small-dissimilar`: head first, then unfreeze a larger share of the base with a low LR and strong regularisation (or cut the base at an earlier stage) |
| **large data set**  | `large-similar`: head first, then fine-tune the last stage(s) at LR / 10 | `large-dissimilar`: train the whole network, BN included |

A `Plan` says which backbone stages train in each phase, with which learning rate and for
how many epochs. `Plan.build_model(num_classes)` assembles `image -> base -> head`; the base is
a nested model called with `training=False` in every strategy but `large-dissimilar`, and
`Plan.apply` keeps every BatchNormalization layer of the base non-trainable in those strategies
(in Keras 3 that is what holds BN in inference mode: an outer `fit` overrides the nested call's
`training=False`), so BN statistics never move while fine-tuning (keras.io's rule).
`Plan.apply(model, phase)` sets `trainable` per stage; compile the model again afterwards
(`tlkit.training.train.fit` does).

Example:
    >>> from tlkit.models import backbones
    >>> from tlkit.training import strategies
    >>> bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    >>> p = strategies.plan("large-similar", bb, epochs=6)
    >>> [(ph.name, ph.epochs) for ph in p.phases]
    [('head', 3), ('fine-tune', 3)]
"""

import dataclasses
import math
import re

import keras

from tlkit.core.errors import TlkitError, check_choice, suggest
from tlkit.models.blocks import classifier_head

# Budgets by optimizer steps, not epochs (bench/bench_small_data.py, results in
# bench/results/small-data.json). An epoch of 25 images is one Adam step: the old default of 10
# epochs gave a head on 5 images per class 10 steps and 42% where the same head trained to
# convergence reaches 71% (Fashion-MNIST target classes, k=5, seed 0). So a phase budgeted by
# steps may run up to `HEAD_MIN_STEPS` (a head on cached features: milliseconds a step) or
# `TRAIN_MIN_STEPS` (base stages training on images) optimizer steps, and early stopping ends
# it once val_loss has not improved for `PATIENCE_MIN_STEPS` steps, restoring the best
# weights. Measured: the k=5 head's best val_loss came after 135 steps (none better up to
# 800); at k=20 a 300-step budget ended still improving. With 3,000 images an epoch is 94
# steps: the head may run 22 epochs and a fine-tuning phase 7 instead of 5, early stopping
# (5 epochs) usually ends them first; from 20,000 images on the 10 epochs rule as before.
DEFAULT_EPOCHS = 10
HEAD_MIN_STEPS = 2000
TRAIN_MIN_STEPS = 600
# A phase budgeted by steps on data of fewer batches repeats it so that an epoch is at least
# this many steps (Keras `steps_per_epoch`): each epoch costs a validation pass, callbacks and
# file writes (50 ms on cached features, 300 ms on images for the demo's net), which made 25
# images' 1-step epochs cost ~10x their steps.
EPOCH_MIN_STEPS = 20
# EarlyStopping's patience is at least this many steps: on a 5-image validation set a few
# steps of val_loss are noise (patience 5 epochs = 5 steps stopped a k=5 head at 42%).
PATIENCE_MIN_STEPS = 100
HEAD_LR = 1e-3  # Adam on a new head, and on a whole network from random weights
# large-dissimilar from pretrained weights: 1e-3 on every pretrained weight wrecked them (k=5:
# the best epoch was the first of 30 and val_loss only rose after it); 1e-4 keeps what the
# features know (issue 22's measurement: 75.7% at k=5 against 30% for the old default).
PRETRAINED_FULL_LR = 1e-4

@dataclasses.dataclass(frozen=True)
class Strategy:
    """One strategy of the matrix and the defaults it owns (`plan` makes it concrete).

    Attributes:
        name: the strategy's name (`--strategy`).
        description: one line for `tlkit plan` and the docs.
        phases: `"head"` (the base stays frozen), `"head+fine-tune"` (head first, then the top
            `unfreeze_share` of the stages at `learning_rate / lr_divisor`) or `"full"`
            (every stage trains from the start).
        unfreeze_share: share of the stages the fine-tuning phase unfreezes (at least one).
        lr_divisor: the fine-tuning phase's learning rate is the head's divided by this.
        dropout: the head's default dropout.
        weight_decay: AdamW's weight decay (0: Adam).
        bn_training: BatchNormalization statistics train (only when every stage trains).
    """

    name: str
    description: str
    phases: str
    unfreeze_share: float = 0.0
    lr_divisor: float = 1.0
    dropout: float = 0.2
    weight_decay: float = 0.0
    bn_training: bool = False

    @property
    def fine_tunes(self):
        """True for the two-phase strategies (head, then fine-tune part of the base)."""
        return self.phases == "head+fine-tune"

    def default_unfreeze(self, n_stages):
        """Stages the fine-tuning phase unfreezes by default, counted from the top."""
        return max(1, math.ceil(n_stages * self.unfreeze_share))


REGISTRY = {s.name: s for s in (
    Strategy("small-similar", "base frozen; only the new classifier trains (feature "
             "extraction)", "head"),
    Strategy("small-dissimilar", "head first, then unfreeze about half of the base at a low LR "
             "with strong regularisation (or cut the base at an earlier stage)",
             "head+fine-tune", unfreeze_share=1 / 2, lr_divisor=20, dropout=0.5,
             weight_decay=1e-4),
    Strategy("large-similar", "head first, then fine-tune the last stage(s) at LR / 10",
             "head+fine-tune", unfreeze_share=1 / 4, lr_divisor=10),
    Strategy("large-dissimilar", "train the whole network, BatchNormalization included",
             "full", bn_training=True),
)}
STRATEGIES = tuple(REGISTRY)
FINE_TUNING = tuple(name for name, s in REGISTRY.items() if s.fine_tunes)
DESCRIPTIONS = {name: s.description for name, s in REGISTRY.items()}


def get(name):
    """The `Strategy` called `name`; an unknown name is a `TlkitError` with close matches.

    Example:
        >>> get("large-similar").lr_divisor
        10
        >>> get("large-simlar")
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: Unknown strategy 'large-simlar'. Did you mean large-similar, large-dissimilar, small-similar? Valid: large-dissimilar, large-similar, small-dissimilar, small-similar.
    """
    if name not in REGISTRY:
        raise suggest(name, STRATEGIES, "strategy")
    return REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class Head:
    """The new classifier on top of the base."""

    dropout: float = 0.2
    dense: tuple = ()
    bn: str = "none"
    pooling: str = "avg"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase: which base stages train (the head always trains)."""

    name: str
    train_stages: tuple
    epochs: int
    learning_rate: float
    min_steps: int = 0  # epochs enough for this many optimizer steps (0: `epochs` as is)

    def budget(self, steps_per_epoch):
        """This phase with the epochs its step floor needs at `steps_per_epoch` steps an epoch.

        Example:
            >>> Phase("head", (), 10, 1e-3, min_steps=2000).budget(1).epochs
            2000
            >>> Phase("head", (), 10, 1e-3, min_steps=2000).budget(1688).epochs
            10
        """
        need = -(-self.min_steps // max(1, steps_per_epoch))
        return dataclasses.replace(self, epochs=max(self.epochs, need))

    def steps_per_epoch(self, batches):
        """Steps an epoch runs over data of `batches` batches: at least `EPOCH_MIN_STEPS`
        when the phase is budgeted by steps (the data repeats), else `batches`.

        Example:
            >>> Phase("head", (), 10, 1e-3, min_steps=2000).steps_per_epoch(1)
            20
            >>> Phase("head", (), 10, 1e-3).steps_per_epoch(1)
            1
        """
        return max(batches, EPOCH_MIN_STEPS) if self.min_steps else batches

    def patience(self, patience, steps_per_epoch):
        """EarlyStopping patience in epochs: `patience`, or `PATIENCE_MIN_STEPS` worth of steps
        when the phase is budgeted by steps."""
        if not self.min_steps:
            return patience
        return max(patience, -(-PATIENCE_MIN_STEPS // max(1, steps_per_epoch)))


@dataclasses.dataclass
class Plan:
    """A strategy made concrete for one backbone."""

    strategy: str
    backbone: object
    phases: list
    head: Head
    bn_training: bool = False
    cut_stage: int = None
    weight_decay: float = 0.0

    @property
    def num_stages(self):
        return len(self.backbone.stages) if self.cut_stage is None else self.cut_stage + 1

    def base_model(self):
        """The backbone model, cut after stage `cut_stage` when that option is set."""
        model = self.backbone.model
        if self.cut_stage is None:
            return model
        stage = self.backbone.stages[self.cut_stage]
        # The stage's last layer at the stage's resolution (a padding layer that feeds the next
        # downsampling conv can sit at the end of the group with a larger output).
        last = [n for n in stage.layers
                if tuple(model.get_layer(n).output.shape[1:3]) == tuple(stage.resolution)][-1]
        return keras.Model(model.inputs, model.get_layer(last).output,
                           name=f"{model.name}_to_stage{self.cut_stage}")

    def build_model(self, num_classes, name=None):
        """Assemble `image -> base -> head` as one Functional model with a nested base.

        The base is called with `training=False` unless the plan trains BatchNormalization
        (`large-dissimilar`). Layer names of the head: `head_pool`, `head_dense1`, ...,
        `predictions`.
        """
        base = self.base_model()
        mixed = keras.config.dtype_policy().name.startswith("mixed_")  # softmax in float32
        inputs = keras.Input(self.backbone.input_shape, name="image")
        x = base(inputs) if self.bn_training else base(inputs, training=False)
        outputs = classifier_head(x, num_classes, pooling=self.head.pooling,
                                  dense=self.head.dense, dropout=self.head.dropout,
                                  bn=self.head.bn, name="head",
                                  output_dtype="float32" if mixed else None)
        if name is None:
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(self.backbone.name)).strip("_.")
            name = f"{stem or 'model'}_classifier"
        return keras.Model(inputs, outputs, name=name)

    def base_of(self, model):
        """The nested base model inside a model made by `build_model`."""
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                return layer
        raise TlkitError(f"Model {model.name!r} has no nested base model.")

    def apply(self, model, phase):
        """Set `trainable` for `phase` (a `Phase` or its index) on a model from `build_model`.

        Stages listed in the phase train, everything else in the base is frozen; the
        backbone's preprocessing layers never train; the head always trains. Compile the model
        again after calling this.
        """
        if isinstance(phase, int):
            phase = self.phases[phase]
        base = self.base_of(model)
        base.trainable = True
        keep = set(phase.train_stages)
        frozen_pre = set(self.backbone.preprocessing_layers)
        for stage in self.backbone.stages[: self.num_stages]:
            for name in stage.layers:
                try:
                    layer = base.get_layer(name)
                except ValueError:
                    continue
                train = stage.index in keep and name not in frozen_pre
                if isinstance(layer, keras.layers.BatchNormalization) and not self.bn_training:
                    # Keras 3 lets the outer fit() override the nested call's training=False
                    # (keras-team/keras#20285); a BN layer with trainable=False always runs in
                    # inference mode, so that is what keeps frozen BN frozen.
                    train = False
                layer.trainable = train
        for name in frozen_pre:
            try:
                base.get_layer(name).trainable = False
            except ValueError:
                pass
        for layer in model.layers:
            if layer is not base:
                layer.trainable = True
        return model

    def counts(self, phase, num_classes=10):
        """(trainable, frozen) parameter counts during `phase` for a `num_classes` head."""
        model = self.build_model(num_classes)
        self.apply(model, phase)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        total = model.count_params()
        return trainable, total - trainable

    def describe(self):
        """Human-readable lines: the strategy and its phases."""
        lines = [f"{self.strategy}: {DESCRIPTIONS[self.strategy]}"]
        for i, ph in enumerate(self.phases, start=1):
            stages = ", ".join(self.backbone.stages[s].name for s in ph.train_stages) or "none"
            budget = (f"{ph.epochs} epochs" if not ph.min_steps else
                      f"up to {ph.min_steps} steps (at least {ph.epochs} epochs; early "
                      f"stopping)")
            lines.append(f"  phase {i} {ph.name}: {budget}, lr {ph.learning_rate:g}, "
                         f"base stages training: {stages}")
        return "\n".join(lines)

    def to_dict(self):
        """JSON-able summary for reports and metadata."""
        return {"strategy": self.strategy, "backbone": self.backbone.name,
                "bn_training": self.bn_training, "cut_stage": self.cut_stage,
                "head": dataclasses.asdict(self.head), "weight_decay": self.weight_decay,
                "phases": [dataclasses.asdict(p) for p in self.phases]}


def plan(strategy, backbone, dataset_info=None, *, epochs=None, learning_rate=None,
         fine_tune_lr=None, head_epochs=None, unfreeze=None, cut_stage=None, dropout=None,
         dense=(), head_bn="none", pooling="avg", pretrained=True):
    """Make the `Plan` of `strategy` for `backbone`.

    Args:
        strategy: one of `STRATEGIES` (`"auto"` is resolved by `tlkit.advise` before this).
        backbone: a `tlkit.models.backbones.Backbone`.
        dataset_info: optional dict (e.g. `Dataset.summary()`); recorded, not required.
        epochs: total epochs. Two-phase strategies give `head_epochs` (default: half, rounded
            up) to the head and the rest to fine-tuning. None (the default): `DEFAULT_EPOCHS`
            and budgets by steps: each phase may run up to `HEAD_MIN_STEPS` (head) or
            `TRAIN_MIN_STEPS` (base stages training) optimizer steps, and early stopping waits
            at least `PATIENCE_MIN_STEPS` (`tlkit.training.train.fit` resolves them per data size).
            Given, every phase runs exactly its epochs (early stopping aside).
        learning_rate: LR of the head phase and of `large-dissimilar`. None: `HEAD_LR`, or
            `PRETRAINED_FULL_LR` for `large-dissimilar` from pretrained weights.
        fine_tune_lr: LR of the fine-tuning phase. Default: `learning_rate / 10` for
            `large-similar`, `/ 20` for `small-dissimilar`.
        head_epochs: epochs of the head phase of the two-phase strategies.
        unfreeze: stages to unfreeze in the fine-tuning phase, counted from the top. Default:
            a quarter of the stages (at least 1) for `large-similar`, half for
            `small-dissimilar`.
        cut_stage: `small-dissimilar` option: cut the base after this stage (0-based), so the
            head sits on earlier, more generic features.
        dropout: head dropout. Default 0.2, and 0.5 for `small-dissimilar`.
        dense: widths of hidden dense layers in the head.
        head_bn: BN placement in the head's hidden layers.
        pooling: `"avg"`, `"max"` or `"flatten"`.
        pretrained: whether the base's weights were trained (ImageNet, a file, a classifier):
            `large-dissimilar` then trains them at the lower `PRETRAINED_FULL_LR`.

    Returns:
        A `Plan`.
    """
    spec = get(strategy)
    n_stages = len(backbone.stages)
    if cut_stage is not None:
        if strategy != "small-dissimilar":
            raise TlkitError(f"cut_stage (--cut-stage) applies to small-dissimilar only, "
                             f"not {strategy}.")
        if not 0 <= cut_stage < n_stages:
            raise TlkitError(f"cut_stage={cut_stage} is out of range: {backbone.name} has "
                             f"stages 0..{n_stages - 1}.")
        n_stages = cut_stage + 1
    by_steps = epochs is None
    epochs = DEFAULT_EPOCHS if by_steps else epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise TlkitError(f"epochs must be a positive int. Received: epochs={epochs!r}.")
    if learning_rate is None:
        learning_rate = PRETRAINED_FULL_LR if spec.phases == "full" and pretrained else HEAD_LR
    if learning_rate <= 0:
        raise TlkitError(f"learning_rate must be > 0. Received: {learning_rate}.")
    check_choice("head_bn", head_bn, ("before", "after", "none"))
    check_choice("pooling", pooling, ("avg", "max", "flatten"))
    if unfreeze is not None and not 1 <= unfreeze <= n_stages:
        raise TlkitError(f"unfreeze={unfreeze} is out of range: {backbone.name} has "
                         f"{n_stages} stages, so 1..{n_stages}.")
    if dropout is not None and not 0 <= dropout < 1:
        raise TlkitError(f"dropout must be in [0, 1). Received: dropout={dropout}.")

    all_stages = tuple(range(n_stages))
    head = Head(dropout=spec.dropout if dropout is None else dropout,
                dense=tuple(dense), bn=head_bn, pooling=pooling)
    kw = {"bn_training": spec.bn_training, "weight_decay": spec.weight_decay}
    head_steps, train_steps = (HEAD_MIN_STEPS, TRAIN_MIN_STEPS) if by_steps else (0, 0)
    if spec.phases == "head":
        phases = [Phase("head", (), epochs, learning_rate, head_steps)]
    elif spec.phases == "full":
        phases = [Phase("full", all_stages, epochs, learning_rate, train_steps)]
    else:
        if epochs < 2 and head_epochs is None:
            raise TlkitError(f"{strategy} has two phases (head, then fine-tune): "
                             f"epochs must be >= 2. Received: epochs={epochs}.")
        h = math.ceil(epochs / 2) if head_epochs is None else head_epochs
        if not 1 <= h <= epochs:
            raise TlkitError(f"head_epochs={head_epochs} must be between 1 and epochs={epochs}.")
        k = unfreeze or spec.default_unfreeze(n_stages)
        lr2 = fine_tune_lr or learning_rate / spec.lr_divisor
        phases = [Phase("head", (), h, learning_rate, head_steps)]
        if epochs - h > 0:
            phases.append(Phase("fine-tune", all_stages[n_stages - k:], epochs - h, lr2,
                                train_steps))
    return Plan(strategy, backbone, phases, head, cut_stage=cut_stage, **kw)
