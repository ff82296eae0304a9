"""The hypermodels: a zoo model or a backbone under a strategy, tunables declared inline."""

import dataclasses
import inspect
import math
import re

import keras
import keras_tuner as kt
import numpy as np
from keras import layers

from tlkit import backbones as backbones_lib
from tlkit import data as data_lib
from tlkit import strategies, train, zoo
from tlkit.blocks import BN_PLACEMENTS, classifier_head, conv_bn_act, vgg_block
from tlkit.errors import TlkitError, check_choice, suggest
from tlkit.tuning.constants import (
    ALIASES, ALIAS_HELP, DROPOUTS, FINE_TUNE_LEARNING_RATES, HEAD_WIDTHS, LEARNING_RATES,
    OPTIMIZERS, ZOO_PREFIX,
)
from tlkit.tuning.space import Tunable, _fmt, parse_fix, parse_space


class TlkitHyperModel(kt.HyperModel):
    """Base of tlkit's hypermodels: declared tunables, fixed / narrowed overrides, data.

    Subclasses implement `declare(hp) -> dict of values` (declaring every tunable through
    `self.register(hp, Tunable(...))`), `make_model(values)` and, when they train in a special
    way, `fit`. `build(hp)` seeds, declares, builds and compiles.

    Args:
        fix: items for `parse_fix` (`["dropout=0.3"]` or a mapping).
        space: items for `parse_space` (`["bn=before,after"]` or a mapping).
        epochs: the epochs of a trial (a two-phase strategy splits them).
        batch_size: training batch size.
        seed: seeds the initialisation (the same in every trial) and the shuffling.
        autotune: tf.data autotuning (off by default: it stalls on 2-core machines).
        fit_verbose: Keras verbosity inside trials.
    """

    def __init__(self, *, fix=None, space=None, epochs=3, batch_size=32, seed=0,
                 autotune=False, fit_verbose=0, name=None):
        super().__init__(name=name)
        self.fixed, self.narrowed = {}, {}
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.autotune = autotune
        self.fit_verbose = fit_verbose
        self.dataset = None
        self.num_classes = None
        self._collect = None
        if fix or space:
            self.override(fix=fix, space=space)

    # -- declaration ---------------------------------------------------------------------

    def declare(self, hp):
        """Declare every tunable on `hp` and return `{name: value}` (None when inactive)."""
        raise NotImplementedError

    def register(self, hp, t):
        """Register tunable `t` on `hp` with this hypermodel's overrides; return its value."""
        if self._collect is not None:
            self._collect[t.name] = t
            return t.register(hp)
        return t.register(hp, self.fixed.get(t.name), self.narrowed.get(t.name))

    def tunables(self):
        """`{name: Tunable}` of every declared hyperparameter, in declaration order."""
        self._collect = {}
        try:
            self.declare(kt.HyperParameters())
            return dict(self._collect)
        finally:
            self._collect = None

    def override(self, fix=None, space=None):
        """Fix or narrow hyperparameters (see `parse_fix`, `parse_space`); returns self."""
        fixed = parse_fix(fix, self)
        narrowed = parse_space(space, self)
        both = sorted(set(fixed) & set(narrowed))
        if both:
            raise TlkitError(f"{', '.join(both)}: both fixed (--fix) and narrowed (--space); "
                             f"give one.")
        self.fixed, self.narrowed = fixed, narrowed
        return self

    def describe_space(self):
        """Printable lines: every hyperparameter, its domain, and what is fixed or narrowed."""
        lines = []
        for name, t in self.tunables().items():
            note = ""
            if name in self.fixed:
                note = f"   fixed: {_fmt(self.fixed[name])}"
            elif name in self.narrowed:
                n = self.narrowed[name]
                note = ("   narrowed: " + ("|".join(_fmt(v) for v in n["values"]) if "values" in n
                                           else f"{_fmt(n['min'])}..{_fmt(n['max'])}"))
            lines.append(f"  {name:<18} {t.describe()}{note}")
        for alias, help_text in ALIAS_HELP.items():
            if alias not in self.tunables() and any(
                    re.fullmatch(ALIASES[alias], n) for n in self.tunables()):
                lines.append(f"  {alias:<18} alias: {help_text}")
        return lines

    # -- data and building ----------------------------------------------------------------

    def set_data(self, dataset):
        """Attach the `tlkit.data.Dataset` the trials train on (its image shape must match)."""
        if tuple(dataset.image_shape) != tuple(self.input_shape):
            raise TlkitError(f"The data's images are {dataset.image_shape}; this hypermodel "
                             f"takes {tuple(self.input_shape)}.")
        if len(dataset.x_train) == 0 or len(dataset.x_val) == 0:
            raise TlkitError("The training and validation splits must not be empty.")
        self.dataset = dataset
        self.num_classes = dataset.num_classes
        return self

    def prepare(self):
        """Work done once per search before the first trial (e.g. caching features)."""

    def make_model(self, values):
        """Build the uncompiled model for a dict of hyperparameter values."""
        raise NotImplementedError

    def compile_model(self, model, values):
        """Compile `model` (loss and metric as objects, so an `.h5` deserializes)."""
        model.compile(optimizer=make_optimizer(values.get("optimizer", "adam"),
                                               values["learning_rate"]),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        # Build the optimizer now: slot variables created inside the traced train step add
        # a tf.cond graph per variable that TensorFlow never frees.
        model.optimizer.build(model.trainable_variables)
        return model

    def build(self, hp):
        """Seed, declare the hyperparameters, build and compile a model (KerasTuner API)."""
        if self.num_classes is None:
            raise TlkitError("Attach data first: hypermodel.set_data(dataset).")
        keras.utils.set_random_seed(self.seed)
        values = self.declare(hp)
        model = self.make_model(values)
        return self.compile_model(model, values)

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, **kwargs):
        """Train `model` on the attached data; returns the Keras `History` (KerasTuner API)."""
        ds = self.dataset
        keras.utils.set_random_seed(self.seed)
        train_ds = data_lib.pipeline(ds.x_train, ds.y_train, batch_size=self.batch_size,
                                     shuffle=True, seed=self.seed, autotune=self.autotune)
        val_ds = data_lib.pipeline(ds.x_val, ds.y_val, batch_size=self.batch_size,
                                   autotune=self.autotune)
        return model.fit(train_ds, validation_data=val_ds, epochs=epochs or self.epochs,
                         initial_epoch=initial_epoch, callbacks=list(callbacks or []),
                         shuffle=False, verbose=self.fit_verbose)  # tf.data shuffles

    def deployable(self, model, values):
        """The deployable image classifier for a trained trial model (here: itself)."""
        return model

    def describe(self):
        """A JSON-able summary of what is tuned (for metadata and settings)."""
        raise NotImplementedError


def make_optimizer(name, learning_rate):
    """A Keras optimizer by name (`adam`, `sgd` with momentum 0.9, `rmsprop`, `adamw`).

    Example:
        >>> type(make_optimizer("sgd", 0.01)).__name__
        'SGD'
    """
    check_choice("optimizer", name, OPTIMIZERS)
    lr = float(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=1e-4)
    return keras.optimizers.Adam(learning_rate=lr)


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """How a zoo model is rebuilt block by block so that every block gets its own BN/dropout.

    Attributes:
        kind: `"vgg"` (`blocks.vgg_block`: n convs then a pool) or `"conv"` (one
            `blocks.conv_bn_act` then a 2x2 max-pool).
        stack: per block `(filters, n_layers)` for vgg, `(filters, padding)` for conv.
        fc: widths of the published dense head.
        drop_after: 1-based indices of the dense layers followed by the head dropout.
        bn: the published BN placement; dropout: the published head dropout.
        filters: the choices for the first block's filters.
        fc_units: choices for the dense width (every dense layer), or () to keep `fc`.
    """

    kind: str
    stack: tuple
    fc: tuple
    drop_after: tuple
    bn: str
    dropout: float
    filters: tuple
    fc_units: tuple = ()


BLOCK_LAYOUTS = {
    "vgg16": BlockLayout("vgg", ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                         (4096, 4096), (1, 2), "none", 0.5, (8, 16, 32, 64),
                         (64, 128, 256, 512, 1024, 4096)),
    "vgg19": BlockLayout("vgg", ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
                         (4096, 4096), (1, 2), "none", 0.5, (8, 16, 32, 64),
                         (64, 128, 256, 512, 1024, 4096)),
    "fashion_cnn": BlockLayout("conv", ((32, "same"), (64, "valid")), (600, 120), (1,),
                               "before", 0.25, (8, 16, 32, 64)),
}
# Builder options of the other zoo models that are tuned, as Tunable factories.
_OPTION_TUNABLES = {
    "bn": lambda d: Tunable("bn", "choice", d, values=BN_PLACEMENTS),
    "dropout": lambda d: Tunable("dropout", "choice", d, values=DROPOUTS),
    "block_dropout": lambda d: Tunable("block_dropout", "choice", d, values=DROPOUTS),
    "width": lambda d: Tunable("width", "choice", d, values=(0.25, 0.5, 1.0)),
    "blocks_per_stage": lambda d: Tunable("blocks_per_stage", "int", d, min_value=1,
                                          max_value=3),
}


class ZooHyperModel(TlkitHyperModel):
    """A `tlkit.zoo` model with its BN placement, dropout, depth/width and optimizer tuned.

    The model takes raw pixels (a `Rescaling(1/255)` layer follows the input) and is built
    from standard layers only, so the best one saves as a plain-Keras `.h5`. With every
    hyperparameter at its default, the network is the published zoo model.

    Args:
        name: a `tlkit.zoo.names()` entry (a `zoo:` prefix is accepted).
        input_shape: (height, width, channels); default: the zoo model's published input.
        num_classes: output classes; default: taken from `set_data`.
        **kwargs: see `TlkitHyperModel` (fix, space, epochs, batch_size, seed, ...).

    Example:
        >>> hm = ZooHyperModel("vgg16", (32, 32, 3), num_classes=5, fix=["fc_units=64"])
        >>> hm.build(kt.HyperParameters()).output_shape
        (None, 5)
    """

    def __init__(self, name, input_shape=None, num_classes=None, **kwargs):
        name = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
        self.entry = zoo.entry(name)
        self.zoo_name = name
        self.input_shape = tuple(input_shape or self.entry.input_shape)
        if len(self.input_shape) != 3 or self.input_shape[2] not in (1, 3):
            raise TlkitError(f"input_shape must be (height, width, 1 or 3). "
                             f"Received: input_shape={input_shape!r}.")
        self.layout = BLOCK_LAYOUTS.get(name)
        self.max_blocks = self._max_blocks()
        super().__init__(name=f"zoo_{name}", **{k: v for k, v in kwargs.items()
                                                 if k not in ("fix", "space")})
        self.num_classes = num_classes
        if kwargs.get("fix") or kwargs.get("space"):
            self.override(fix=kwargs.get("fix"), space=kwargs.get("space"))

    def _max_blocks(self):
        size = min(self.input_shape[:2])
        if self.layout is None:
            if size < self.entry.min_size:
                raise TlkitError(f"Input {self.input_shape[0]}x{self.input_shape[1]} is too "
                                 f"small for {self.zoo_name!r}: the minimum is "
                                 f"{self.entry.min_size}x{self.entry.min_size}.")
            return 0
        n = 0
        for _, arg in self.layout.stack:
            size = size - 2 if arg == "valid" else size
            if size // 2 < 1:
                break
            size //= 2
            n += 1
        if n == 0:
            raise TlkitError(f"Input {self.input_shape[0]}x{self.input_shape[1]} is too small "
                             f"for one block of {self.zoo_name!r}.")
        return n

    def declare(self, hp):
        """Declare the zoo model's tunables on `hp`; return their values."""
        v = {}
        lay = self.layout
        if lay is not None:
            n = self.max_blocks
            if n > 1:
                v["blocks"] = self.register(hp, Tunable("blocks", "int", n, min_value=1,
                                                       max_value=n))
            v["filters"] = self.register(hp, Tunable("filters", "choice", lay.stack[0][0],
                                                    values=lay.filters))
            for i in range(1, n + 1):
                parent = ("blocks", tuple(range(i, n + 1))) if n > 1 and i > 1 else None
                v[f"block{i}_bn"] = self.register(hp, Tunable(
                    f"block{i}_bn", "choice", lay.bn, values=BN_PLACEMENTS, parent=parent))
                v[f"block{i}_dropout"] = self.register(hp, Tunable(
                    f"block{i}_dropout", "choice", 0.0, values=DROPOUTS, parent=parent))
            if lay.fc_units:
                v["fc_units"] = self.register(hp, Tunable("fc_units", "choice", lay.fc[0],
                                                         values=lay.fc_units))
            v["dropout"] = self.register(hp, Tunable("dropout", "choice", lay.dropout,
                                                    values=DROPOUTS))
        else:
            params = inspect.signature(self.entry.fn).parameters
            for option, factory in _OPTION_TUNABLES.items():
                if option in params:
                    v[option] = self.register(hp, factory(params[option].default))
        v["learning_rate"] = self.register(hp, Tunable(
            "learning_rate", "float", 1e-3, min_value=LEARNING_RATES[0],
            max_value=LEARNING_RATES[1], sampling="log"))
        v["optimizer"] = self.register(hp, Tunable("optimizer", "choice", "adam",
                                                  values=OPTIMIZERS))
        return v

    def make_model(self, values):
        """The zoo network for `values`, raw pixels in, softmax out."""
        inputs = keras.Input(self.input_shape, name="image")
        x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(inputs)
        lay = self.layout
        if lay is None:
            options = {k: values[k] for k in _OPTION_TUNABLES if k in values}
            outputs = self.entry.fn(x, self.num_classes, **options)
            return keras.Model(inputs, outputs, name=self.zoo_name)
        scale = values["filters"] / lay.stack[0][0]
        for i in range(1, values.get("blocks", 1) + 1):
            filters = max(1, int(round(lay.stack[i - 1][0] * scale)))
            bn, drop = values[f"block{i}_bn"], values[f"block{i}_dropout"]
            if lay.kind == "vgg":
                x = vgg_block(x, filters, lay.stack[i - 1][1], bn=bn, dropout=drop,
                              name=f"block{i}")
            else:
                x = conv_bn_act(x, filters, 3, padding=lay.stack[i - 1][1], bn=bn,
                                name=f"block{i}")
                x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
                if drop:
                    x = layers.Dropout(drop, name=f"block{i}_drop")(x)
        x = layers.Flatten(name="flatten")(x)
        widths = (values["fc_units"],) * len(lay.fc) if "fc_units" in values else lay.fc
        for j, units in enumerate(widths, start=1):
            x = layers.Dense(units, activation="relu", name=f"fc{j}")(x)
            if values["dropout"] and j in lay.drop_after:
                x = layers.Dropout(values["dropout"], name=f"fc{j}_drop")(x)
        outputs = layers.Dense(self.num_classes, activation="softmax", name="predictions")(x)
        return keras.Model(inputs, outputs, name=self.zoo_name)

    def describe(self):
        """JSON-able: the zoo model and its input shape."""
        return {"model": f"{ZOO_PREFIX}{self.zoo_name}", "input_shape": list(self.input_shape)}


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
        backbone: a `tlkit.backbones` name, `zoo:NAME`, a classifier file, or a built
            `tlkit.backbones.Backbone`.
        strategy: one of `tlkit.strategies.STRATEGIES`.
        input_shape: (height, width, channels); default: the backbone's.
        weights: `"imagenet"`, None or a weights file (see `tlkit.backbones.build`).
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
        if strategy not in strategies.STRATEGIES:
            raise suggest(strategy, strategies.STRATEGIES, "strategy")
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
        self.two_phase = strategy in ("small-dissimilar", "large-similar")
        self.trains_base = strategy != "small-similar"
        self.head_only = strategy == "small-similar" and cache_features
        self.n_stages = len(self.backbone.stages)
        self.features = None
        self._base_weights = self.backbone.model.get_weights() if self.trains_base else None
        base_out = self.backbone.model.output_shape
        self.feature_dim = (int(np.prod(base_out[1:])) if pooling == "flatten"
                            else int(base_out[-1]))
        super().__init__(name=f"{self.backbone.name}_{strategy}",
                         **{k: v for k, v in kwargs.items() if k not in ("fix", "space")})
        self.num_classes = num_classes
        self._plan({}, check=True)  # validates epochs for the strategy now
        if kwargs.get("fix") or kwargs.get("space"):
            self.override(fix=kwargs.get("fix"), space=kwargs.get("space"))

    def declare(self, hp):
        """Declare the head and phase tunables on `hp`; return their values."""
        v = {}
        v["dropout"] = self.register(hp, Tunable(
            "dropout", "choice", 0.5 if self.strategy == "small-dissimilar" else 0.2,
            values=DROPOUTS))
        v["head_width"] = self.register(hp, Tunable("head_width", "choice", 0,
                                                   values=HEAD_WIDTHS))
        v["head_bn"] = self.register(hp, Tunable("head_bn", "choice", "none",
                                                values=BN_PLACEMENTS,
                                                parent=("head_width", HEAD_WIDTHS[1:])))
        v["learning_rate"] = self.register(hp, Tunable(
            "learning_rate", "float", 1e-3, min_value=LEARNING_RATES[0],
            max_value=LEARNING_RATES[1], sampling="log"))
        if self.two_phase:
            default_k = math.ceil(self.n_stages / (4 if self.strategy == "large-similar" else 2))
            v["fine_tune_lr"] = self.register(hp, Tunable(
                "fine_tune_lr", "float", 1e-4 if self.strategy == "large-similar" else 5e-5,
                min_value=FINE_TUNE_LEARNING_RATES[0], max_value=FINE_TUNE_LEARNING_RATES[1],
                sampling="log"))
            v["unfreeze"] = self.register(hp, Tunable("unfreeze", "int", max(1, default_k),
                                                     min_value=1, max_value=self.n_stages))
        return v

    def _plan(self, values, check=False):
        width = values.get("head_width") or 0
        try:
            return strategies.plan(
                self.strategy, self.backbone, epochs=self.epochs,
                learning_rate=values.get("learning_rate", 1e-3),
                fine_tune_lr=values.get("fine_tune_lr"), unfreeze=values.get("unfreeze"),
                dropout=values.get("dropout"), dense=(width,) if width else (),
                head_bn=values.get("head_bn") or "none", pooling=self.pooling)
        except TlkitError as e:
            if check:
                raise TlkitError(f"{e} (tuning {self.strategy} with --epochs {self.epochs})")
            raise

    def prepare(self):
        """Compute the frozen base's pooled features of train and val once per search."""
        if not self.cache_features or self.features is not None:
            return
        if self.dataset is None:
            raise TlkitError("Attach data first: hypermodel.set_data(dataset).")
        if self._base_weights is not None:
            self.backbone.model.set_weights(self._base_weights)
        model = self._plan({}).build_model(self.num_classes)
        kw = {"batch_size": self.batch_size, "verbose": 0, "autotune": self.autotune}
        # (features, labels of the rows): a file that fails to decode has no row
        self.features = (train.extract_features(model, self.dataset.x_train,
                                                labels=self.dataset.y_train, **kw),
                         train.extract_features(model, self.dataset.x_val,
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
        if self._base_weights is not None:
            self.backbone.model.set_weights(self._base_weights)  # undo the last fine-tuning
        model = plan.build_model(self.num_classes)
        plan.apply(model, 0)
        return model

    def compile_model(self, model, values):
        """Compile for the first phase as `tlkit.train.compile_phase` does."""
        plan = self._plan(values)
        train.compile_phase(model, plan, plan.phases[0])
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, **kwargs):
        """Train one trial: the head on cached features and/or the phases on images.

        `epochs` is the last epoch (Hyperband passes smaller budgets and `initial_epoch` when
        it continues a trial); the head phase ends at the plan's head epochs, counted on the
        full `self.epochs`, so cached features always come from an untouched base.
        """
        epochs = epochs or self.epochs
        values = dict(hp.values)
        plan = self._plan(values)
        callbacks = [_BestCheckpoint(model, cb.objective, cb.filepath)
                     if type(cb).__name__ == "SaveBestEpoch" else cb for cb in (callbacks or [])]
        keras.utils.set_random_seed(self.seed)
        history = {}

        def merge(h):
            for key, vals in h.history.items():
                history.setdefault(key, []).extend(float(x) for x in vals)

        head_end = min(plan.phases[0].epochs, epochs) if self.two_phase else epochs
        if initial_epoch < head_end:
            if self.cache_features:
                self.prepare()
                (f_train, y_train), (f_val, y_val) = self.features
                trainer = model if self.head_only else train.head_model(model)
                if trainer is not model:
                    train.compile_phase(trainer, plan, plan.phases[0])
                merge(trainer.fit(f_train, y_train, validation_data=(f_val, y_val),
                                  epochs=head_end, initial_epoch=initial_epoch,
                                  batch_size=self.batch_size, shuffle=True,
                                  callbacks=callbacks, verbose=self.fit_verbose))
            else:
                merge(self._fit_images(model, head_end, initial_epoch, callbacks))
        if self.two_phase and epochs > head_end and len(plan.phases) > 1:
            plan.apply(model, 1)
            train.compile_phase(model, plan, plan.phases[1])
            merge(self._fit_images(model, epochs, max(initial_epoch, head_end), callbacks))
        result = keras.callbacks.History()
        result.history = history
        return result

    def _fit_images(self, model, epochs, initial_epoch, callbacks):
        ds = self.dataset
        train_ds = data_lib.pipeline(ds.x_train, ds.y_train, batch_size=self.batch_size,
                                     shuffle=True, seed=self.seed, autotune=self.autotune)
        val_ds = data_lib.pipeline(ds.x_val, ds.y_val, batch_size=self.batch_size,
                                   autotune=self.autotune)
        return model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                         initial_epoch=initial_epoch, callbacks=callbacks, shuffle=False,
                         verbose=self.fit_verbose)  # tf.data shuffles

    def deployable(self, model, values):
        """The image classifier for a trained trial model: the head is put on the base.

        The head's weights are copied by layer name into `plan.build_model`, so the full
        model's predictions on images equal the head's on the cached features.
        """
        if not self.head_only:
            return model
        if self._base_weights is not None:
            self.backbone.model.set_weights(self._base_weights)
        plan = self._plan(values)
        full = plan.build_model(self.num_classes)
        for layer in model.layers:
            if layer.weights:
                full.get_layer(layer.name).set_weights(layer.get_weights())
        plan.apply(full, 0)
        train.compile_phase(full, plan, plan.phases[0])
        return full

    def describe(self):
        """JSON-able: backbone, weights, strategy, pooling, input shape, feature caching."""
        return {"backbone": self.backbone.name, "weights": str(self.weights),
                "strategy": self.strategy, "pooling": self.pooling,
                "input_shape": list(self.input_shape), "cache_features": self.cache_features}


class _BestCheckpoint(keras.callbacks.Callback):
    """Save `target`'s weights when the objective improves, across several `fit` calls.

    KerasTuner's SaveBestEpoch saves `self.model`, which in the cached head phase is only the
    head; this one always saves the model the trial returns. With `filepath=None` the best
    weights are kept in memory (`restore()` puts them back).
    """

    def __init__(self, target, objective, filepath=None):
        super().__init__()
        self.target = target
        self.objective = objective
        self.filepath = filepath
        self.best_value = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.objective.has_value(logs):
            return
        value = self.objective.get_value(logs)
        if self.best_value is not None and not self.objective.better_than(value,
                                                                          self.best_value):
            return
        self.best_value = value
        if self.filepath:
            self.target.save_weights(self.filepath)
        else:
            self.best_weights = self.target.get_weights()

    def restore(self):
        """Put the best weights seen back into the target (in-memory mode)."""
        if self.best_weights is not None:
            self.target.set_weights(self.best_weights)
