"""`BackboneHyperModel`: a pretrained backbone under a strategy, head and phases tuned.

Every default comes from the strategy's own plan (`tlkit.training.strategies.plan` with no options):
the head dropout, the learning rate of each phase, how many stages fine-tuning unfreezes and
whether the strategy has a fine-tuning phase at all; nothing is restated here.
"""

import dataclasses

import keras
import numpy as np

from tlkit.core import compat
from tlkit.core.errors import TlkitError, check_choice
from tlkit.models import backbones as backbones_lib
from tlkit.models.blocks import BN_PLACEMENTS, classifier_head
from tlkit.training import frozen, phases, precision, strategies
from tlkit.tuning.constants import (
    DROPOUTS, FINE_TUNE_LEARNING_RATES, HEAD_WIDTHS, LEARNING_RATES,
)
from tlkit.tuning.hypermodel import BestCheckpoint, TlkitHyperModel
from tlkit.tuning.space import Tunable


class BackboneHyperModel(TlkitHyperModel):
    """A pretrained backbone under a strategy, with the head and the phases tuned.

    Tunables: `dropout` (head), `head_width` (0: no hidden layer), `head_bn` (BN placement in
    the hidden layer; active when `head_width` > 0), `learning_rate` (the head phase, or the
    only phase), and for `small-dissimilar` / `large-similar` `fine_tune_lr` and `unfreeze`
    (stages unfrozen from the top in the fine-tuning phase).

    With `cache_features=True` (the default) the frozen base's pooled features are computed
    once per search (`prepare`): under `small-similar` a trial builds and trains only a head
    on a features input, and `deployable` puts the trained head on the base; under the
    two-phase strategies the head phase trains on the features and the fine-tuning phase on
    images. `cache_features=False` trains every trial on images (plain KerasTuner).

    Args:
        backbone: a `tlkit.models.backbones` name, `zoo:NAME`, a classifier file, or a built
            `tlkit.models.backbones.Backbone`.
        strategy: one of `tlkit.training.strategies.STRATEGIES`.
        input_shape: (height, width, channels); default: the backbone's.
        weights: `"imagenet"`, None or a weights file (see `tlkit.models.backbones.build`).
        pooling: the head's pooling (`"avg"`, `"max"`, `"flatten"`; not tuned).
        cache_features: see above.
        **kwargs: see `TlkitHyperModel`.

    Example:
        >>> hm = BackboneHyperModel("mobilenet_v2", "large-similar", (32, 32, 3), weights=None)
        >>> [n for n in hm.tunables()]
        ['dropout', 'head_width', 'head_bn', 'learning_rate', 'fine_tune_lr', 'unfreeze']
    """

    def __init__(self, backbone, strategy="small-similar", input_shape=None, *,
                 weights="imagenet", pooling="avg", cache_features=True, num_classes=None,
                 **kwargs):
        strategies.get(strategy)
        check_choice("pooling", pooling, ("avg", "max", "flatten"))
        if isinstance(backbone, backbones_lib.Backbone):
            self.backbone = backbone
        else:
            self.backbone = backbones_lib.build(backbone, input_shape, weights=weights)
        self.input_shape = tuple(self.backbone.input_shape)
        self.strategy = strategy
        self.weights = weights
        self.pooling = pooling
        self.cache_features = cache_features
        self.n_stages = len(self.backbone.stages)
        self.features = None
        base_out = self.backbone.model.output_shape
        self.feature_dim = (int(np.prod(base_out[1:])) if pooling == "flatten"
                            else int(base_out[-1]))
        super().__init__(name=f"{self.backbone.name}_{strategy}",
                         **{k: v for k, v in kwargs.items() if k not in ("fix", "space")})
        self.num_classes = num_classes
        # The strategy's own plan, no options given: every default below comes from it (and
        # building it validates the epochs for the strategy now).
        self.defaults = self._plan({}, check=True)
        self.two_phase = len(self.defaults.phases) > 1
        self.trains_base = any(ph.train_stages for ph in self.defaults.phases)
        self.head_only = not self.trains_base and cache_features
        self._base_weights = self.backbone.model.get_weights() if self.trains_base else None
        if kwargs.get("fix") or kwargs.get("space"):
            self.override(fix=kwargs.get("fix"), space=kwargs.get("space"))

    def declare(self, hp):
        """Declare the head and phase tunables on `hp`; return their values.

        Defaults: the strategy's plan (`self.defaults`): its head dropout, BN placement and
        width, the head phase's learning rate and, when there is a fine-tuning phase, its
        learning rate and the number of stages it unfreezes.
        """
        d = self.defaults
        v = {}
        v["dropout"] = self.register(hp, Tunable("dropout", "choice", d.head.dropout,
                                                values=DROPOUTS))
        v["head_width"] = self.register(hp, Tunable("head_width", "choice",
                                                   d.head.dense[0] if d.head.dense else 0,
                                                   values=HEAD_WIDTHS))
        v["head_bn"] = self.register(hp, Tunable("head_bn", "choice", d.head.bn,
                                                values=BN_PLACEMENTS,
                                                parent=("head_width", HEAD_WIDTHS[1:])))
        v["learning_rate"] = self.register(hp, Tunable(
            "learning_rate", "float", d.phases[0].learning_rate, min_value=LEARNING_RATES[0],
            max_value=LEARNING_RATES[1], sampling="log"))
        if self.two_phase:
            fine_tune = d.phases[1]
            v["fine_tune_lr"] = self.register(hp, Tunable(
                "fine_tune_lr", "float", fine_tune.learning_rate,
                min_value=FINE_TUNE_LEARNING_RATES[0], max_value=FINE_TUNE_LEARNING_RATES[1],
                sampling="log"))
            v["unfreeze"] = self.register(hp, Tunable("unfreeze", "int",
                                                     len(fine_tune.train_stages),
                                                     min_value=1, max_value=self.n_stages))
        return v

    def _plan(self, values, check=False):
        """The strategy's plan for tuned `values`; what `values` leaves out is the plan's default."""
        options = {k: values[k] for k in ("learning_rate", "fine_tune_lr", "unfreeze", "dropout",
                                          "head_bn") if values.get(k) is not None}
        if values.get("head_width"):
            options["dense"] = (values["head_width"],)
        try:
            return strategies.plan(self.strategy, self.backbone, epochs=self.epochs,
                                   pooling=self.pooling, **options)
        except TlkitError as e:
            if check:
                raise TlkitError(f"{e} (tuning {self.strategy} with --epochs {self.epochs})")
            raise

    def set_precision(self, policy):
        """Train the trials under `policy`: the base's layers are rebuilt under it too (same
        weights), the head is built under it (`build`); returns self."""
        if policy != precision.policy_of(self.backbone.model):
            self.backbone = dataclasses.replace(
                self.backbone, model=precision.with_policy(self.backbone.model, policy))
        return super().set_precision(policy)

    def probe_model(self):
        """The base, which `--precision auto` times."""
        return self.backbone.model

    def _reset_base(self):
        """Put the base's initial weights back (a strategy that trains it changes them)."""
        if self._base_weights is not None:
            self.backbone.model.set_weights(self._base_weights)

    def prepare(self):
        """Compute the frozen base's pooled features of train and val once per search."""
        if not self.cache_features or self.features is not None:
            return
        if self.dataset is None:
            raise TlkitError("Attach data first: hypermodel.set_data(dataset).")
        self._reset_base()
        model = self._plan({}).build_model(self.num_classes)
        kw = {"batch_size": self.batch_size, "verbose": 0, "autotune": self.autotune}
        # (features, labels of the rows): a file that fails to decode has no row
        self.features = (frozen.extract_features(model, self.dataset.x_train,
                                                 labels=self.dataset.y_train, **kw),
                         frozen.extract_features(model, self.dataset.x_val,
                                                 labels=self.dataset.y_val, **kw))
        del model
        keras.backend.clear_session()

    def make_model(self, values):
        """A head on a features input (`small-similar`, cached) or base + head on images."""
        plan = self._plan(values)
        if self.head_only:
            inputs = keras.Input((self.feature_dim,), name="features")
            outputs = classifier_head(inputs, self.num_classes, pooling=self.pooling,
                                      dense=plan.head.dense, dropout=plan.head.dropout,
                                      bn=plan.head.bn, name="head")
            return keras.Model(inputs, outputs, name="head")
        self._reset_base()  # undo the last trial's fine-tuning
        model = plan.build_model(self.num_classes)
        plan.apply(model, 0)
        return model

    def compile_model(self, model, values):
        """Compile for the first phase (`tlkit.training.phases.compile_phase`, optimizer built)."""
        plan = self._plan(values)
        return phases.compile_phase(model, plan, plan.phases[0])

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, **kwargs):
        """Train one trial: the head on cached features and/or the phases on images.

        `epochs` is the last epoch (Hyperband passes smaller budgets and `initial_epoch` when
        it continues a trial); the head phase ends at the plan's head epochs, counted on the
        full `self.epochs`, so cached features always come from an untouched base. Each
        phase runs through `tlkit.training.phases` (`fit_features`, `fit_images`), which compiles it
        for the trial's plan (its learning rates, dropout, unfrozen stages).
        """
        epochs = epochs or self.epochs
        values = dict(hp.values)
        plan = self._plan(values)
        callbacks = [BestCheckpoint(model, cb.objective, cb.filepath)
                     if compat.is_save_best_epoch(cb) else cb for cb in (callbacks or [])]
        keras.utils.set_random_seed(self.seed)
        history = {}

        def merge(h):
            for key, vals in h.history.items():
                history.setdefault(key, []).extend(float(x) for x in vals)

        o = self.phase_options()
        head_end = min(plan.phases[0].epochs, epochs) if self.two_phase else epochs
        if initial_epoch < head_end:
            if self.cache_features:
                self.prepare()
                trainer = model if self.head_only else frozen.head_model(model)
                # `build` compiled the model for the head phase (a continued Hyperband
                # trial has its optimizer state loaded): only a separate head is compiled.
                merge(phases.fit_features(trainer, plan, plan.phases[0], *self.features,
                                          callbacks, o, epochs=head_end,
                                          initial_epoch=initial_epoch,
                                          compile=trainer is not model))
            else:
                merge(phases.fit_images(model, plan, plan.phases[0], self.dataset, callbacks,
                                        o, epochs=head_end, initial_epoch=initial_epoch,
                                        compile=False)[0])
        if self.two_phase and epochs > head_end and len(plan.phases) > 1:
            plan.apply(model, 1)
            merge(phases.fit_images(model, plan, plan.phases[1], self.dataset, callbacks, o,
                                    epochs=epochs, initial_epoch=max(initial_epoch, head_end))[0])
        result = keras.callbacks.History()
        result.history = history
        return result

    def deployable(self, model, values):
        """The image classifier for a trained trial model: the head is put on the base.

        The head's weights are copied by layer name into `plan.build_model`, so the full
        model's predictions on images equal the head's on the cached features.
        """
        if not self.head_only:
            return precision.to_float32(model)
        self._reset_base()
        plan = self._plan(values)
        full = plan.build_model(self.num_classes)
        for layer in model.layers:
            if layer.weights:
                full.get_layer(layer.name).set_weights(layer.get_weights())
        plan.apply(full, 0)
        phases.compile_phase(full, plan, plan.phases[0])
        return precision.to_float32(full)

    def describe(self):
        """JSON-able: backbone, weights, strategy, pooling, input shape, feature caching."""
        return {"backbone": self.backbone.name, "weights": str(self.weights),
                "strategy": self.strategy, "pooling": self.pooling,
                "input_shape": list(self.input_shape), "cache_features": self.cache_features}
