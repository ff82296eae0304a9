"""KerasTuner search over dropout, BatchNormalization placement, learning rate and unfreeze depth.

Two hypermodels, both `keras_tuner.HyperModel` subclasses that declare their tunables inline
with defaults:

- `ZooHyperModel`: a from-scratch `tlkit.zoo` model. For the models built from VGG / conv
  blocks (`vgg16`, `vgg19`, `fashion_cnn`) it tunes BN placement and dropout per block
  (`block1_bn`, `block1_dropout`, ...), the head dropout (`dropout`), the number of blocks
  (`blocks`), the first block's filters (`filters`, later blocks keep the published ratios),
  the learning rate (log scale) and the optimizer. The other zoo models tune the options
  their builder exposes (`bn`, `dropout`, `width`, `blocks_per_stage`) with the same
  learning rate and optimizer.
- `BackboneHyperModel`: a pretrained backbone under a strategy (`tlkit.strategies`): head
  dropout, head width, head BN placement, the learning rate of each phase and, for the
  fine-tuning strategies, the number of stages to unfreeze. Under `small-similar` the base is
  frozen, so its features are computed once per search and every trial trains only a head on
  them; the best head is then put on the base as one deployable model.

Any hyperparameter can be fixed (`parse_fix(["dropout=0.3"], hm)`) or narrowed
(`parse_space(["bn=before,after", "learning_rate=1e-4:1e-3"], hm)`); `bn` names every BN
placement and `block_dropout` every per-block dropout. `tune(...)` runs the search (random,
hyperband or bayesian) into an output folder, resumes it when run again with the same
settings, refuses a folder that holds a different search, writes the trials as JSON, CSV
and PNG, and saves the best model as a deployable `.h5` (`tlkit.saving.save`) with the
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
"""

import contextlib
import dataclasses
import datetime
import inspect
import json
import math
import os
import pathlib
import re
import shutil
import sys
import time

import keras
import keras_tuner as kt
import numpy as np
from keras import layers

from tlkit import backbones as backbones_lib
from tlkit import data as data_lib
from tlkit import saving, strategies, train, zoo
from tlkit.blocks import BN_PLACEMENTS, classifier_head, conv_bn_act, vgg_block
from tlkit.errors import TlkitError, check_choice, suggest

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
DROPOUTS = tuple(round(0.05 * i, 2) for i in range(13))  # 0.0 .. 0.6
LEARNING_RATES = (1e-4, 1e-2)
FINE_TUNE_LEARNING_RATES = (1e-6, 1e-3)
HEAD_WIDTHS = (0, 64, 128, 256, 512)
ALIASES = {"bn": r"(.+_)?bn", "block_dropout": r"block\d+_dropout"}
ALIAS_HELP = {"bn": "every BN placement", "block_dropout": "every per-block dropout"}

SETTINGS_FILE = "search.json"
PROJECT = "tuner"
MODEL_FILE = "best.h5"
REPORT_FILES = ("trials.json", "trials.csv", "trials.png", MODEL_FILE, "report")
OWNERS_FILE = "tlkit_trial_owners.json"
ENV_TUNER_ID = "KERASTUNER_TUNER_ID"
ENV_ORACLE_IP = "KERASTUNER_ORACLE_IP"
ENV_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
ZOO_PREFIX = "zoo:"


# ---------------------------------------------------------------------------------------------
# Tunables, and fixing / narrowing them


@dataclasses.dataclass(frozen=True)
class Tunable:
    """One declared hyperparameter: its domain, default and (optional) parent condition.

    Attributes:
        name: the hyperparameter name (`block1_bn`, `dropout`, `learning_rate`, ...).
        kind: `"choice"`, `"float"` or `"int"`.
        default: the value a search starts from, and the published model's value.
        values: the choices (`kind="choice"`).
        min_value, max_value, step, sampling: the range (`kind="float"` or `"int"`).
        parent: `(parent_name, parent_values)`: active only when the parent takes one of
            those values (e.g. `block3_bn` only when `blocks` >= 3).
    """

    name: str
    kind: str
    default: object
    values: tuple = ()
    min_value: float = None
    max_value: float = None
    step: float = None
    sampling: str = "linear"
    parent: tuple = None

    def describe(self):
        """The domain as one short string, e.g. `before|after|none` or `0.0001..0.01 log`."""
        if self.kind == "choice":
            text = "|".join(_fmt(v) for v in self.values)
        else:
            text = f"{_fmt(self.min_value)}..{_fmt(self.max_value)}"
            text += f" step {_fmt(self.step)}" if self.step else ""
            text += " log" if self.sampling == "log" else ""
        cond = f"  (if {self.parent[0]} >= {min(self.parent[1])})" if self.parent else ""
        return f"{text}  default {_fmt(self.default)}{cond}"

    def register(self, hp, fixed=None, narrowed=None):
        """Declare this tunable on `hp` (a `keras_tuner.HyperParameters`) and return its value.

        A fixed value becomes `hp.Fixed`; a narrowed one a `hp.Choice` of the listed values or
        a range inside the declared one. Returns None when a parent condition is inactive.
        """
        cond = {}
        if self.parent:
            cond = {"parent_name": self.parent[0], "parent_values": list(self.parent[1])}
        if fixed is not None:
            return hp.Fixed(self.name, fixed, **cond)
        if narrowed and "values" in narrowed:
            values = list(narrowed["values"])
            default = self.default if self.default in values else values[0]
            return hp.Choice(self.name, values, default=default, **cond)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default, **cond)
        lo, hi = (narrowed["min"], narrowed["max"]) if narrowed else (self.min_value,
                                                                       self.max_value)
        default = min(max(self.default, lo), hi)
        if self.kind == "int":
            return hp.Int(self.name, int(lo), int(hi), step=self.step, sampling=self.sampling,
                          default=int(default), **cond)
        return hp.Float(self.name, float(lo), float(hi), step=self.step, sampling=self.sampling,
                        default=float(default), **cond)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _items(items, flag):
    """[(name, text)] from `["a=1", ...]`, a mapping `{"a": 1}` or None."""
    if not items:
        return []
    if isinstance(items, str):
        items = [items]
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if isinstance(item, dict):
                pairs.extend(item.items())
                continue
            name, sep, text = str(item).partition("=")
            if not sep or not name.strip() or not text.strip():
                raise TlkitError(f"{flag} expects NAME=VALUE (e.g. {flag} dropout=0.3). "
                                 f"Received: {item!r}.")
            pairs.append((name.strip(), text.strip()))
    out = []
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append((str(name).strip(), str(value).strip()))
    return out


def _targets(name, tunables, flag):
    """The declared names that `name` stands for: itself, or the members of an alias."""
    if name in tunables:
        return [name]
    if name in ALIASES:
        members = [n for n in tunables if re.fullmatch(ALIASES[name], n)]
        if members:
            return members
    valid = list(tunables) + [a for a in ALIASES
                              if any(re.fullmatch(ALIASES[a], n) for n in tunables)]
    raise suggest(name, valid, f"{flag} hyperparameter")


def _value(t, text, flag, shown=None):
    """`text` converted to `t`'s type and checked against its declared domain."""
    where = f"{flag} {shown or t.name}={text}"
    sample = t.values[0] if t.kind == "choice" else (0 if t.kind == "int" else 0.0)
    try:
        if isinstance(sample, str):
            value = text
        elif isinstance(sample, (int, np.integer)) and not isinstance(sample, bool):
            number = float(text)
            if number != int(number):
                raise ValueError
            value = int(number)
        else:
            value = float(text)
    except ValueError:
        kind = "an integer" if t.kind == "int" or isinstance(sample, int) else "a number"
        raise TlkitError(f"Invalid {where}: expected {kind}. Valid: {t.describe()}.") from None
    if t.kind == "choice":
        for v in t.values:
            if v == value or (isinstance(v, float) and math.isclose(v, value, abs_tol=1e-12)):
                return v
        raise TlkitError(f"Invalid {where}: expected one of "
                         f"{', '.join(_fmt(v) for v in t.values)}.")
    tol = 1e-9 * max(1.0, abs(t.max_value))
    if not t.min_value - tol <= value <= t.max_value + tol:
        raise TlkitError(f"Invalid {where}: outside the searchable range "
                         f"{_fmt(t.min_value)}..{_fmt(t.max_value)}.")
    return min(max(value, t.min_value), t.max_value)


def parse_fix(items, hypermodel):
    """Parse `NAME=VALUE` items into `{hyperparameter: value}`, validated against `hypermodel`.

    Args:
        items: strings such as `["dropout=0.3", "bn=before"]`, or a mapping
            `{"dropout": 0.3}` (as a YAML recipe gives it). `bn` fixes every BN placement,
            `block_dropout` every per-block dropout. A later item wins over an earlier one.
        hypermodel: a `TlkitHyperModel`; its `tunables()` are the valid names and domains.

    Returns:
        A dict of declared names to typed values (str, int or float).

    Raises:
        TlkitError: unknown name (with close matches), a value of the wrong type, or one
            outside the declared domain.

    Example:
        >>> hm = ZooHyperModel("fashion_cnn", (16, 16, 1))
        >>> parse_fix(["bn=none", "dropout=0.3"], hm)
        {'block1_bn': 'none', 'block2_bn': 'none', 'dropout': 0.3}
    """
    tunables = hypermodel.tunables()
    out = {}
    for name, text in _items(items, "--fix"):
        for target in _targets(name, tunables, "--fix"):
            out[target] = _value(tunables[target], text, "--fix", name)
    return out


def parse_space(items, hypermodel):
    """Parse `NAME=V1,V2` or `NAME=LO:HI` items into narrowed search spaces.

    Args:
        items: strings such as `["bn=before,after", "learning_rate=1e-4:1e-3"]`, or a mapping
            (`{"bn": ["before", "after"]}`). A list becomes a choice among those values; a
            range `LO:HI` narrows a numeric hyperparameter (for a numeric choice it keeps the
            choices inside the range). Every value must lie in the declared domain.
        hypermodel: a `TlkitHyperModel`.

    Returns:
        `{name: {"values": [...]}}` or `{name: {"min": lo, "max": hi}}`.

    Raises:
        TlkitError: unknown name, or a value outside the valid set.

    Example:
        >>> hm = ZooHyperModel("fashion_cnn", (16, 16, 1))
        >>> parse_space(["bn=before,after"], hm)["block1_bn"]
        {'values': ['before', 'after']}
        >>> parse_space(["learning_rate=1e-4:1e-3"], hm)
        {'learning_rate': {'min': 0.0001, 'max': 0.001}}
    """
    tunables = hypermodel.tunables()
    out = {}
    for name, text in _items(items, "--space"):
        for target in _targets(name, tunables, "--space"):
            t = tunables[target]
            numeric = t.kind != "choice" or not isinstance(t.values[0], str)
            if ":" in text and numeric:
                lo_text, _, hi_text = text.partition(":")
                lo, hi = (_value(t, lo_text, "--space", name),
                          _value(t, hi_text, "--space", name))
                if lo > hi:
                    raise TlkitError(f"Invalid --space {name}={text}: the range is empty "
                                     f"(LO > HI).")
                if t.kind == "choice":
                    out[target] = {"values": [v for v in t.values if lo <= v <= hi]}
                elif lo == hi:
                    out[target] = {"values": [lo]}
                else:
                    out[target] = {"min": lo, "max": hi}
            else:
                values = []
                for part in text.split(","):
                    if part.strip():
                        v = _value(t, part.strip(), "--space", name)
                        if v not in values:
                            values.append(v)
                if not values:
                    raise TlkitError(f"Invalid --space {name}={text}: no values.")
                out[target] = {"values": values}
    return out


# ---------------------------------------------------------------------------------------------
# Hypermodels


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
        self.features = (train.extract_features(model, self.dataset.x_train, **kw),
                         train.extract_features(model, self.dataset.x_val, **kw))
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
        ds = self.dataset
        history = {}

        def merge(h):
            for key, vals in h.history.items():
                history.setdefault(key, []).extend(float(x) for x in vals)

        head_end = min(plan.phases[0].epochs, epochs) if self.two_phase else epochs
        if initial_epoch < head_end:
            if self.cache_features:
                self.prepare()
                f_train, f_val = self.features
                trainer = model if self.head_only else train.head_model(model)
                if trainer is not model:
                    train.compile_phase(trainer, plan, plan.phases[0])
                merge(trainer.fit(f_train, ds.y_train, validation_data=(f_val, ds.y_val),
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


# ---------------------------------------------------------------------------------------------
# Tuners


def _gradient_registry():
    """TensorFlow's global gradient-function registry (a dict), or None if not found."""
    try:
        from tensorflow.python.framework import ops
        return ops._gradient_registry._registry  # noqa: SLF001 - see release_trial_memory
    except (ImportError, AttributeError):
        return None


@contextlib.contextmanager
def release_trial_memory():
    """Give back the memory of the models trained inside the block.

    Every traced Keras train step registers a graph-mode `tf.custom_gradient` function in
    TensorFlow's global gradient registry under a fresh `CustomGradient-N` name and never
    removes it; that entry pins the whole traced graph (tens of MB per trial). On exit the
    entries added inside the block are removed, then `keras.backend.clear_session()` and a
    garbage collection run. Use it around work whose models are not used afterwards.

    Example:
        >>> with release_trial_memory():
        ...     pass
    """
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for key in set(registry) - before:
                if str(key).startswith("CustomGradient-"):
                    registry.pop(key, None)
        keras.backend.clear_session(free_memory=True)


class _TlkitTunerMixin:
    """Per-trial seeding, timing, memory release and one progress line per trial."""

    def run_trial(self, trial, *args, **kwargs):
        started = time.perf_counter()
        with release_trial_memory():
            results = super().run_trial(trial, *args, **kwargs)
            metrics = tuner_metrics(results, self.oracle.objective)
            del results
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        self.tlkit_metrics[trial.trial_id] = metrics
        return metrics

    def on_trial_begin(self, trial):
        self.tlkit_ran.append(trial.trial_id)
        self.tlkit_owners[trial.trial_id] = self.tuner_id
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.tlkit_verbose:
            print(trial_line(trial, self.oracle.objective, self.tuner_id,
                             self.tlkit_metrics.get(trial.trial_id)), flush=True)

    def on_search_begin(self):
        super().on_search_begin()
        self.hypermodel.prepare()


def tuner_metrics(results, objective):
    """The metrics of the best epoch of a trial's results, as plain floats."""
    from keras_tuner.src.engine import tuner_utils

    metrics = tuner_utils.convert_to_metrics_dict(results, objective)
    return {k: float(v) for k, v in metrics.items()}


_TUNER_CLASSES = {}


def make_tuner(hypermodel, *, tuner="random", objective="val_accuracy", max_trials=10,
               epochs=3, directory, project_name=PROJECT, seed=0, factor=3, verbose=1):
    """A KerasTuner tuner (RandomSearch, Hyperband, BayesianOptimization) with tlkit's trial loop.

    The existing project under `directory/project_name` is reloaded (KerasTuner's resume);
    tlkit's `tune` decides beforehand whether that is allowed.

    Args:
        hypermodel: a `TlkitHyperModel` with data attached.
        tuner: `"random"`, `"hyperband"` or `"bayesian"`.
        objective: a key of `OBJECTIVES`.
        max_trials: the most trials (Hyperband stops earlier when its brackets are done).
        epochs: epochs per trial (Hyperband's `max_epochs`).
        directory, project_name: where KerasTuner keeps its state.
        seed: tlkit's seed; the oracle gets `oracle_seed(seed)`.
        factor: Hyperband's reduction factor.
        verbose: 1 prints one line per finished trial.

    Returns:
        The tuner.
    """
    check_tuner_args(tuner, objective, max_trials, epochs)
    base = {"random": kt.RandomSearch, "hyperband": kt.Hyperband,
            "bayesian": kt.BayesianOptimization}[tuner]
    cls = _TUNER_CLASSES.setdefault(tuner, type(f"Tlkit{base.__name__}",
                                                (_TlkitTunerMixin, base), {}))
    # KerasTuner draws a random oracle seed for seed=0 (`seed or randint`): shift by one.
    common = dict(hypermodel=hypermodel, objective=kt.Objective(objective, OBJECTIVES[objective]),
                  seed=oracle_seed(seed), directory=str(directory), project_name=project_name,
                  overwrite=False, max_consecutive_failed_trials=3)
    if tuner == "hyperband":
        t = cls(max_epochs=epochs, factor=factor, **common)
    else:
        t = cls(max_trials=max_trials, **common)
    t.oracle.max_trials = max_trials  # Hyperband too: it has no max_trials argument
    if hasattr(t.oracle, "verbose"):
        t.oracle.verbose = 0  # tlkit prints its own line per trial
    t.tlkit_verbose = verbose
    t.tlkit_ran = []
    t.tlkit_owners = {}
    t.tlkit_metrics = {}
    return t


def oracle_seed(seed):
    """The KerasTuner oracle seed for tlkit's `seed`: `seed + 1` (KerasTuner ignores 0).

    Example:
        >>> oracle_seed(0)
        1
    """
    return int(seed) + 1


def check_tuner_args(tuner, objective, max_trials, epochs):
    """Validate the tuner name, objective, max_trials and epochs (TlkitError on a mistake)."""
    if tuner not in TUNERS:
        raise suggest(tuner, TUNERS, "tuner")
    if objective not in OBJECTIVES:
        raise suggest(objective, OBJECTIVES, "objective")
    for arg, value in (("max_trials", max_trials), ("epochs", epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TlkitError(f"{arg} must be a positive int. Received: {arg}={value!r}.")


def trial_line(trial, objective, tuner_id=None, metrics=None):
    """One progress line for a finished trial: id, worker, score, time, hyperparameters.

    `metrics` (what the trial returned) is used where the trial object has no score yet (on a
    distributed worker the chief scores the trial).
    """
    hp = trial.hyperparameters
    values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/") and _active(hp, k)}
    metrics = metrics or {}
    score = trial.score if trial.score is not None else metrics.get(objective.name)
    score = "failed" if score is None else f"{objective.name}={score:.4f}"
    seconds = metrics.get("seconds", _metric(trial, "seconds"))
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    who = f" [{tuner_id}]" if tuner_id else ""
    hps = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
    return f"trial {trial.trial_id}{who}: {score}{took}  ({hps})"


def _active(hp, name):
    try:
        return hp.is_active(name)
    except (KeyError, ValueError):
        return True


def _metric(trial, name):
    try:
        if trial.metrics.exists(name):
            return trial.metrics.get_last_value(name)
    except (KeyError, ValueError):
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Distributed search (KerasTuner's chief / worker over gRPC)


def distributed_role(tuner_id=None, oracle=None):
    """`(role, tuner_id, host, port)` from arguments or the KERASTUNER_* variables.

    Args:
        tuner_id: "chief" (or any id containing "chief") for the oracle server, anything else
            ("tuner0", ...) for a worker; default `KERASTUNER_TUNER_ID`.
        oracle: `"HOST:PORT"` of the chief; default `KERASTUNER_ORACLE_IP` and
            `KERASTUNER_ORACLE_PORT`.

    Returns:
        `("single", None, None, None)` when neither is set, else `("chief" | "worker", id,
        host, port)`.

    Example:
        >>> distributed_role("tuner1", "10.0.0.5:8000")
        ('worker', 'tuner1', '10.0.0.5', 8000)
    """
    tuner_id = tuner_id or os.environ.get(ENV_TUNER_ID)
    if oracle:
        host, sep, port = str(oracle).rpartition(":")
        if not sep or not host:
            raise TlkitError(f"--oracle expects HOST:PORT (e.g. 10.0.0.5:8000). "
                             f"Received: {oracle!r}.")
    else:
        host, port = os.environ.get(ENV_ORACLE_IP), os.environ.get(ENV_ORACLE_PORT)
    if not tuner_id and not host and not port:
        return "single", None, None, None
    missing = [what for what, v in (("a tuner id (--tuner-id or KERASTUNER_TUNER_ID)", tuner_id),
                                    ("the chief's address (--oracle HOST:PORT or "
                                     "KERASTUNER_ORACLE_IP)", host),
                                    ("the chief's port (KERASTUNER_ORACLE_PORT)", port)) if not v]
    if missing:
        raise TlkitError("A distributed search needs " + " and ".join(missing) + ".")
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise TlkitError(f"The chief's port must be 1..65535. Received: {port!r}.") from None
    return ("chief" if "chief" in tuner_id else "worker"), tuner_id, host, port


@contextlib.contextmanager
def _kerastuner_env(role, tuner_id, host, port):
    """Set the KERASTUNER_* variables KerasTuner reads while the block runs, then restore."""
    keys = (ENV_TUNER_ID, ENV_ORACLE_IP, ENV_ORACLE_PORT)
    saved = {k: os.environ.get(k) for k in keys}
    with _silent_condition_protos(role != "single"):
        try:
            for k in keys:
                os.environ.pop(k, None)
            if role != "single":
                os.environ.update({ENV_TUNER_ID: tuner_id, ENV_ORACLE_IP: host,
                                   ENV_ORACLE_PORT: str(port)})
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def _silent_condition_protos(active):
    """Mute the debug `print` in keras-tuner 1.4.8's `conditions.Parent.to_proto`.

    It prints the first parent value every time a conditional hyperparameter crosses gRPC
    (twice per trial and process). Only the print is dropped; the proto is unchanged.
    """
    from keras_tuner.src.engine import conditions

    original = conditions.Parent.to_proto
    if not active or "print(" not in inspect.getsource(original):
        yield
        return

    def to_proto(self):
        saved = sys.stdout
        sys.stdout = open(os.devnull, "w")
        try:
            return original(self)
        finally:
            sys.stdout.close()
            sys.stdout = saved

    conditions.Parent.to_proto = to_proto
    try:
        yield
    finally:
        conditions.Parent.to_proto = original


def wait_for_chief(host, port, timeout):
    """Wait up to `timeout` seconds for the chief's gRPC server; TlkitError naming it if not up.

    Example:
        >>> wait_for_chief("127.0.0.1", 9, 0.2)
        Traceback (most recent call last):
        ...
        tlkit.errors.TlkitError: No tuning chief answered at 127.0.0.1:9 within 0.2 s. ...
    """
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise TlkitError(f"No tuning chief answered at {host}:{port} within "
                         f"{_fmt(float(timeout))} s. "
                         f"Start the chief first (KERASTUNER_TUNER_ID=chief), check the "
                         f"address and port and that the port is reachable from this "
                         f"machine, or raise --connect-timeout.") from None
    finally:
        channel.close()


def _check_same_space(tuner, host, port):
    """Refuse to work for a chief whose search space is not this worker's."""
    def kinds(hps):
        return {p.name: (type(p).__name__, _fmt(p.value) if type(p).__name__ == "Fixed" else "")
                for p in hps.space}

    mine = kinds(tuner.oracle._oracle.get_space())  # noqa: SLF001 - the worker's own space
    try:
        chief = kinds(tuner.oracle.get_space())
    except Exception as e:  # noqa: BLE001 - any gRPC failure
        raise TlkitError(f"Lost the tuning chief at {host}:{port}: {e}") from None
    if mine != chief:
        diff = sorted(set(mine.items()) ^ set(chief.items()))
        shown = ", ".join(f"{n} ({k}{' ' + v if v else ''})" for n, (k, v) in diff[:4])
        raise TlkitError(f"This worker's search space differs from the chief's at "
                         f"{host}:{port} ({shown}). Start every worker with the chief's "
                         f"--model/--backbone, --strategy, --fix and --space.")


def serve_oracle(tuner, host, port, *, poll=0.5, verbose=1, owners=None):
    """Run the chief: serve `tuner.oracle` over gRPC until every worker has finished.

    This is KerasTuner's chief (`keras_tuner.src.distribute.oracle_chief`): the same servicer
    and protocol, with a shorter poll than KerasTuner's 20 s, a clean shutdown, a progress
    line per finished trial and the worker that ran each trial recorded in `owners`.
    """
    import grpc
    from concurrent import futures

    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    objective = tuner.oracle.objective
    owners = {} if owners is None else owners

    class Servicer(oracle_chief.OracleServicer):
        def CreateTrial(self, request, context):  # noqa: N802 - gRPC method name
            response = super().CreateTrial(request, context)
            trial = self.oracle.ongoing_trials.get(request.tuner_id)
            if trial is not None:
                owners[trial.trial_id] = request.tuner_id
            return response

        def EndTrial(self, request, context):  # noqa: N802 - gRPC method name
            response = super().EndTrial(request, context)
            if verbose:
                trial = self.oracle.get_trial(request.trial.trial_id)
                print(trial_line(trial, objective, owners.get(trial.trial_id)), flush=True)
            return response

    servicer = Servicer(tuner.oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise TlkitError(f"The tuning chief cannot listen on {host}:{port}: the address is not "
                         f"this machine's or the port is in use. Pick another port.")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)
    return owners


# ---------------------------------------------------------------------------------------------
# tune()


@dataclasses.dataclass
class TuneResult:
    """What `tune` returns.

    Attributes:
        trials: one dict per trial (trial, status, score, seconds, tuner_id, metrics,
            hyperparameters), in trial order.
        best_hyperparameters: the best trial's values (empty on a worker).
        best_score: its objective value; best_trial: its id.
        best_model: the deployable best model (None on a worker).
        metrics: the best model's test-split report (accuracy, macro F1, ...).
        paths: files written (out, settings, tuner, trials_json, trials_csv, plot, model).
        role: "single", "chief" or "worker".
        ran: ids of the trials this process ran in this call (a resumed search skips the
            finished ones).
        tuner, hypermodel: the KerasTuner tuner and the hypermodel.
        dataset: the `tlkit.data.Dataset` searched on (at the model's input shape).
    """

    trials: list
    best_hyperparameters: dict
    best_score: float
    best_trial: str
    best_model: object
    metrics: dict
    paths: dict
    role: str
    ran: list
    tuner: object = None
    hypermodel: object = None
    dataset: object = None


def tune(data, *, out, model=None, backbone=None, strategy=None, weights="imagenet",
         image_size=None, tuner="random", max_trials=10, epochs=3, objective="val_accuracy",
         fix=None, space=None, batch_size=32, seed=0, cache_features=True, pooling="avg",
         factor=3, retrain=False, overwrite=False, distributed=False, tuner_id=None,
         oracle=None, connect_timeout=60.0, val_fraction=0.1, test_fraction=0.1,
         on_bad_image="skip", download=False, autotune=False, callbacks=(), verbose=1):
    """Search hyperparameters with KerasTuner and save the best model as a deployable `.h5`.

    Args:
        data: a `tlkit.data.load` source string or a loaded `tlkit.data.Dataset`.
        out: the run folder (`saved_models/RUN/`): `search.json` (the settings),
            `tuner/` (KerasTuner's state), `trials.json`, `trials.csv`, `trials.png`,
            `best.h5` and `report/` (the best model on the test split).
        model: `"zoo:NAME"` for a from-scratch zoo model (`ZooHyperModel`), or
        backbone: a backbone name for a pretrained base under `strategy` (default
            `small-similar`; `BackboneHyperModel`). Give exactly one of the two.
        weights: the backbone's weights (`"imagenet"`, None or a file).
        image_size: input size instead of the model's default.
        tuner: `"random"`, `"hyperband"` or `"bayesian"`.
        max_trials: the most trials (>= 1).
        epochs: epochs per trial (Hyperband: the largest budget).
        objective: `val_accuracy`, `val_loss`, `accuracy` or `loss`.
        fix, space: `parse_fix` / `parse_space` items (`["dropout=0.3"]`, `["bn=before,after"]`).
        batch_size, seed: training batch size; the seed of splits, initialisation, shuffling
            and the oracle.
        cache_features: share the frozen base's features between trials (backbones).
        pooling: the backbone head's pooling.
        factor: Hyperband's reduction factor.
        retrain: train the best hyperparameters again instead of keeping the best trial's
            weights (done anyway when the weights are not here, e.g. on another machine).
        overwrite: delete a previous search in `out` and start over. Without it a search with
            the same settings resumes and one with different settings is refused.
        distributed: take part in a distributed search (role and chief address from
            `tuner_id` / `oracle` or the KERASTUNER_* variables, which also turn it on).
        tuner_id: `"chief"` or a worker id.
        oracle: the chief's `"HOST:PORT"`.
        connect_timeout: seconds a worker waits for the chief.
        val_fraction, test_fraction, on_bad_image, download: see `tlkit.data.load`.
        autotune: tf.data autotuning (off: fixed prefetch, no stalls on 2 cores).
        callbacks: extra Keras callbacks for every trial.
        verbose: 1 prints a line per trial; 2 also the Keras epochs; 0 is silent.

    Returns:
        A `TuneResult`.

    Raises:
        TlkitError: a user mistake (names, values, settings that differ from the search
            already in `out`, an unreachable chief). Nothing is written before the
            settings are validated.
    """
    # 1. Settings that need nothing loaded, then the hypermodel and its overrides.
    check_tuner_args(tuner, objective, max_trials, epochs)
    role, tuner_id, host, port = distributed_role(tuner_id, oracle)
    if distributed and role == "single":
        raise TlkitError("--distributed needs the role and the chief's address: --tuner-id "
                         "chief|tuner0|... and --oracle HOST:PORT, or KERASTUNER_TUNER_ID, "
                         "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.")
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise TlkitError(f"--out {out} is a file; give a folder (e.g. saved_models/run1/).")
    hm = make_hypermodel(model=model, backbone=backbone, strategy=strategy, weights=weights,
                         image_size=image_size, pooling=pooling, cache_features=cache_features,
                         fix=fix, space=space, epochs=epochs, batch_size=batch_size, seed=seed,
                         autotune=autotune, fit_verbose=2 if verbose >= 2 else 0)
    if role == "worker":
        wait_for_chief(host, port, connect_timeout)

    # 2. The data.
    dataset = _load_data(data, hm.input_shape, val_fraction=val_fraction,
                         test_fraction=test_fraction, seed=seed, on_bad_image=on_bad_image,
                         download=download)
    hm.set_data(dataset)

    # 3. The run folder: same search -> resume, different -> refuse, --overwrite -> restart.
    settings = {"data": _data_id(data, dataset), **hm.describe(), "tuner": tuner,
                "objective": objective, "epochs": epochs, "batch_size": batch_size,
                "seed": seed, "fix": hm.fixed, "space": hm.narrowed,
                "val_fraction": val_fraction, "test_fraction": test_fraction}
    if tuner == "hyperband":
        settings["factor"] = factor
    settings = json.loads(json.dumps(settings, default=str))
    _prepare_out(out, settings, overwrite=overwrite and role != "worker", role=role)

    # 4. The search.
    paths = {"out": str(out), "settings": str(out / SETTINGS_FILE), "tuner": str(out / PROJECT)}
    with _kerastuner_env(role, tuner_id, host, port), _quiet_retracing():
        t = make_tuner(hm, tuner=tuner, objective=objective, max_trials=max_trials,
                       epochs=epochs, directory=out, seed=seed, factor=factor,
                       verbose=1 if verbose else 0)
        owners = _read_owners(out)
        done = [tr for tr in t.oracle.trials.values() if tr.status == "COMPLETED"] \
            if role != "worker" else []
        if verbose and done:
            print(f"tlkit tune: resuming the search in {out}: {len(done)} trial(s) done, "
                  f"up to {max_trials} in all.")
        if role == "chief":
            if verbose:
                print(f"tlkit tune: chief serving the search on {host}:{port}; start workers "
                      f"with KERASTUNER_TUNER_ID=tuner0, tuner1, ...")
            t.save()
            serve_oracle(t, host, port, verbose=verbose, owners=owners)
            _write_owners(out, owners)
        else:
            if role == "worker":
                _check_same_space(t, host, port)
            try:
                t.search(epochs=epochs, callbacks=list(callbacks))
            except Exception as e:  # noqa: BLE001 - gRPC errors become one line
                if role == "worker" and type(e).__module__.startswith("grpc"):
                    raise TlkitError(f"Lost the tuning chief at {host}:{port}: "
                                     f"{getattr(e, 'details', lambda: e)()}") from None
                raise
            finally:
                owners.update(t.tlkit_owners)
                if role == "single":
                    _write_owners(out, owners)
        if role == "worker":
            if verbose:
                print(f"tlkit tune: worker {tuner_id} ran {len(t.tlkit_ran)} trial(s): "
                      f"{', '.join(t.tlkit_ran) or 'none'}")
            return TuneResult([], {}, None, None, None, {}, paths, role, list(t.tlkit_ran),
                              t, hm, dataset)

        # 5. Results, the best model, the files.
        rows = trials_table(t.oracle, owners, order=list(hm.tunables()))
        best = t.oracle.get_best_trials(1)
        if not best or best[0].status != "COMPLETED":
            first = next((tr.message for tr in t.oracle.trials.values() if tr.message), "")
            raise TlkitError("No trial completed" + (f"; the first failure: "
                             f"{first.strip().splitlines()[-1]}" if first else "."))
        best = best[0]
        values = next(r["hyperparameters"] for r in rows if r["trial"] == best.trial_id)
        best_model, how = _best_model(t, hm, best, retrain, verbose)
    from tlkit import report as report_lib

    rep = report_lib.evaluate(best_model, dataset.x_test, dataset.y_test, dataset.class_names,
                              out_dir=out / "report", batch_size=batch_size)
    test_metrics = {k: v for k, v in rep.items()
                    if k in ("accuracy", "macro_f1", "n") or k.startswith("top_")}
    summary = {"objective": {"name": objective, "direction": OBJECTIVES[objective]},
               "tuner": tuner, "best": {"trial": best.trial_id, "score": best.score,
                                        "hyperparameters": values, "model": how},
               "test": test_metrics, "trials": rows}
    paths.update(write_reports(out, summary, hm))
    metadata = {"class_names": dataset.class_names, **hm.describe(),
                "hyperparameters": values,
                "tuning": {"tuner": tuner, "objective": objective, "score": best.score,
                           "trial": best.trial_id, "trials": len(rows), "epochs": epochs,
                           "best_model": how},
                "data": dataset.summary(), "metrics": test_metrics}
    paths["model"] = str(saving.save(best_model, out / MODEL_FILE, metadata))
    if verbose:
        print(format_table(rows, objective))
        print(f"best trial {best.trial_id}: {objective} {best.score:.4f}; test accuracy "
              f"{test_metrics['accuracy']:.4f}; saved {paths['model']}")
    return TuneResult(rows, values, best.score, best.trial_id, best_model, test_metrics, paths,
                      role, list(t.tlkit_ran), t, hm, dataset)


def make_hypermodel(*, model=None, backbone=None, strategy=None, weights="imagenet",
                    image_size=None, pooling="avg", cache_features=True, fix=None, space=None,
                    epochs=3, batch_size=32, seed=0, autotune=False, fit_verbose=0):
    """The hypermodel `tune` searches, with `fix` / `space` applied (no data needed).

    Args:
        model: `"zoo:NAME"` for a `ZooHyperModel`, or
        backbone: a backbone name for a `BackboneHyperModel` under `strategy` (default
            `small-similar`). Exactly one of the two.
        weights, image_size, pooling, cache_features: see `tune`.
        fix, space: `parse_fix` / `parse_space` items.
        epochs, batch_size, seed, autotune, fit_verbose: see `TlkitHyperModel`.

    Returns:
        A `ZooHyperModel` or `BackboneHyperModel` (attach data with `set_data`).

    Example:
        >>> hm = make_hypermodel(model="zoo:fashion_cnn", image_size=16, fix=["bn=before"])
        >>> hm.fixed
        {'block1_bn': 'before', 'block2_bn': 'before'}
    """
    if (model is None) == (backbone is None):
        raise TlkitError("Give exactly one of --model zoo:NAME (a from-scratch zoo model) or "
                         "--backbone NAME (a pretrained base under --strategy).")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TlkitError(f"batch_size must be a positive int. Received: {batch_size!r}.")
    common = dict(epochs=epochs, batch_size=batch_size, seed=seed, autotune=autotune,
                  fit_verbose=fit_verbose)
    if model is not None:
        if not str(model).startswith(ZOO_PREFIX):
            raise TlkitError(f"--model takes zoo:NAME (e.g. zoo:fashion_cnn; names: "
                             f"{', '.join(zoo.names())}); for a pretrained base use "
                             f"--backbone. Received: {model!r}.")
        if strategy is not None:
            raise TlkitError("--strategy applies to --backbone, not to --model zoo:NAME.")
        entry = zoo.entry(model[len(ZOO_PREFIX):])
        shape = entry.input_shape if image_size is None else (
            *_size(image_size), entry.input_shape[2])
        hm = ZooHyperModel(entry.name, shape, **common)
    else:
        from tlkit.transfer import resolve_input_shape

        hm = BackboneHyperModel(backbone, strategy or "small-similar",
                                resolve_input_shape(backbone, image_size), weights=weights,
                                pooling=pooling, cache_features=cache_features, **common)
    return hm.override(fix=fix, space=space)


@contextlib.contextmanager
def _quiet_retracing():
    """Silence TensorFlow's "N out of the last M calls ... triggered tf.function retracing".

    A search builds a new model per trial, so every trial traces new functions by design.
    """
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _size(image_size):
    if isinstance(image_size, int) and image_size > 0:
        return (image_size, image_size)
    if (isinstance(image_size, (tuple, list)) and len(image_size) == 2
            and all(isinstance(s, int) and s > 0 for s in image_size)):
        return tuple(image_size)
    raise TlkitError(f"image_size must be a positive int or (height, width). "
                     f"Received: image_size={image_size!r}.")


def _load_data(data, input_shape, **kwargs):
    if isinstance(data, data_lib.Dataset):
        from tlkit.transfer import convert_dataset

        return convert_dataset(data, input_shape)
    return data_lib.load(data, image_size=tuple(input_shape[:2]), channels=input_shape[2],
                         **kwargs)


def _data_id(data, dataset):
    if isinstance(data, data_lib.Dataset):
        s = dataset.summary()
        return {"source": s["source"], "counts": s["counts"], "classes": s["class_names"]}
    return str(data)


def _prepare_out(out, settings, *, overwrite, role):
    """Check `out` against the settings; remove an old search on overwrite; write settings."""
    settings_path = out / SETTINGS_FILE
    project = out / PROJECT
    if overwrite:
        for name in (SETTINGS_FILE, PROJECT) + REPORT_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif settings_path.exists():
        try:
            old = json.loads(settings_path.read_text())["search"]
        except (ValueError, KeyError, TypeError):
            raise TlkitError(f"{settings_path} is unreadable; pass --overwrite to start the "
                             f"search over.") from None
        diff = [f"{k}: {json.dumps(old.get(k))} -> {json.dumps(settings.get(k))}"
                for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            shown = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")
            raise TlkitError(f"{out} holds a different search ({shown}). Pass --overwrite to "
                             f"start over there, or choose another --out.")
        return
    elif project.is_dir() and any(project.iterdir()) and role != "worker":
        raise TlkitError(f"{project} holds a tuner directory without {SETTINGS_FILE}, so "
                         f"tlkit cannot tell which search it is. Pass --overwrite to start "
                         f"over, or choose another --out.")
    if role == "worker":
        return  # only the chief (or a single process) owns the settings file
    out.mkdir(parents=True, exist_ok=True)
    from tlkit import __version__
    from tlkit.report import write_json

    write_json({"tlkit_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "search": settings}, settings_path)


def _read_owners(out):
    path = out / PROJECT / OWNERS_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_owners(out, owners):
    from tlkit.report import write_json

    (out / PROJECT).mkdir(parents=True, exist_ok=True)
    write_json(owners, out / PROJECT / OWNERS_FILE)


def _best_model(tuner, hm, best, retrain, verbose):
    """(deployable model, "kept" | "retrained") for the best trial."""
    values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    checkpoint = pathlib.Path(tuner._get_checkpoint_fname(best.trial_id))  # noqa: SLF001
    if not retrain and checkpoint.is_file():
        keras.backend.clear_session()
        trained = tuner.load_model(best)
        return hm.deployable(trained, values), "kept"
    if verbose:
        why = "as asked" if retrain else "its weights are not in this folder"
        print(f"tlkit tune: retraining the best hyperparameters ({why})")
    hm.prepare()
    keras.backend.clear_session()
    hp = best.hyperparameters.copy()
    model = hm.build(hp)
    keep = _BestCheckpoint(model, tuner.oracle.objective)
    hm.fit(hp, model, epochs=hm.epochs, callbacks=[keep])
    keep.restore()
    return hm.deployable(model, values), "retrained"


# ---------------------------------------------------------------------------------------------
# Reports: table, JSON, CSV, PNG


def trials_table(oracle, owners=None, order=None):
    """One dict per trial of `oracle` (a KerasTuner oracle), in trial order.

    Keys: trial, status, score, seconds, epochs (Hyperband's budget, if any), tuner_id (who
    ran it, when known), metrics (the best epoch's), hyperparameters (in `order`, e.g. the
    hypermodel's declaration order, when given).
    """
    owners = owners or {}
    rank = {name: i for i, name in enumerate(order or [])}
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda s: (len(s), s)):
        trial = oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        metrics = {}
        for name in trial.metrics.metrics:
            if name != "seconds":
                metrics[name] = trial.metrics.get_last_value(name)
        rows.append({"trial": trial_id, "status": trial.status,
                     "score": None if trial.score is None else float(trial.score),
                     "seconds": _metric(trial, "seconds"),
                     "epochs": values.get("tuner/epochs"),
                     "tuner_id": owners.get(trial_id),
                     "metrics": metrics,
                     "hyperparameters": dict(sorted(
                         ((k, v) for k, v in values.items() if not k.startswith("tuner/")),
                         key=lambda kv: rank.get(kv[0], len(rank))))})
    return rows


def _hp_names(rows):
    """The hyperparameter names of all rows, each new one placed after its predecessor."""
    names = []
    for r in rows:
        prev = None
        for k in r["hyperparameters"]:
            if k not in names:
                names.insert(names.index(prev) + 1 if prev is not None else 0, k)
            prev = k
    return names


def format_table(rows, objective="val_accuracy"):
    """The trials as a printable table: trial, worker, status, score, time, hyperparameters.

    The best completed trial is marked with `*`.

    Example:
        >>> print(format_table([{"trial": "0", "status": "COMPLETED", "score": 0.5,
        ...     "seconds": 1.0, "tuner_id": None, "hyperparameters": {"bn": "none"}}]))
        trial  worker  status     val_accuracy  time  bn
        0*     -       COMPLETED        0.5000  1.0s  none
    """
    names = _hp_names(rows)
    done = [r for r in rows if r["score"] is not None and r["status"] == "COMPLETED"]
    best = None
    if done:
        pick = max if OBJECTIVES.get(objective, "max") == "max" else min
        best = pick(done, key=lambda r: r["score"])["trial"]
    header = ["trial", "worker", "status", objective, "time"] + names
    table = []
    for r in rows:
        cells = [r["trial"] + ("*" if r["trial"] == best else ""), r.get("tuner_id") or "-",
                 r["status"], "-" if r["score"] is None else f"{r['score']:.4f}",
                 "-" if r.get("seconds") is None else f"{r['seconds']:.1f}s"]
        cells += [_fmt(r["hyperparameters"][n]) if n in r["hyperparameters"] else "-"
                  for n in names]
        table.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    right = {3, 4}

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header)] + [line(c) for c in table])


def write_reports(out, summary, hypermodel=None):
    """Write `trials.json`, `trials.csv` and `trials.png` into `out`; return their paths."""
    import csv
    import io

    from tlkit.report import write_json

    out = pathlib.Path(out)
    rows = summary["trials"]
    paths = {"trials_json": str(write_json(summary, out / "trials.json"))}
    names = _hp_names(rows)
    metric_names = sorted({m for r in rows for m in r.get("metrics", {})})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "status", "score", "seconds", "epochs", "tuner_id"] + metric_names
               + names)
    for r in rows:
        w.writerow([r["trial"], r["status"], r["score"], r.get("seconds"), r.get("epochs"),
                    r.get("tuner_id")] + [r.get("metrics", {}).get(m) for m in metric_names]
                   + [r["hyperparameters"].get(n) for n in names])
    tmp = out / ".trials.csv.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out / "trials.csv")
    paths["trials_csv"] = str(out / "trials.csv")
    paths["plot"] = str(plot_trials(rows, out / "trials.png", summary["objective"]["name"]))
    return paths


def plot_trials(rows, path, objective="val_accuracy"):
    """PNG with three panels: score per trial, score by BN placement, score by dropout.

    Every BN-placement hyperparameter (`block1_bn`, `head_bn`, `bn`, ...) adds one point per
    trial to the middle panel, every dropout (`dropout`, `block1_dropout`, ...) to the right.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlkit.report import save_figure

    done = [r for r in rows if r["score"] is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    if done:
        xs = list(range(1, len(done) + 1))
        ys = [r["score"] for r in done]
        ax.plot(xs, ys, "o", label="trial")
        better = max if OBJECTIVES.get(objective, "max") == "max" else min
        ax.plot(xs, [better(ys[:i + 1]) for i in range(len(ys))], "-", color="gray",
                label="best so far")
        ax.set_xticks(xs, [r["trial"] for r in done], rotation=90 if len(xs) > 20 else 0)
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("score per trial")
    rng = np.random.default_rng(0)
    for ax, pattern, title in ((axes[1], ALIASES["bn"], "score by BN placement"),
                               (axes[2], r"(.+_)?dropout", "score by dropout")):
        names = [n for n in _hp_names(done) if re.fullmatch(pattern, n)]
        for name in names:
            pts = [(r["hyperparameters"][name], r["score"]) for r in done
                   if name in r["hyperparameters"]]
            if not pts:
                continue
            if pattern == ALIASES["bn"]:
                xs = [BN_PLACEMENTS.index(v) + rng.uniform(-0.15, 0.15) if v in BN_PLACEMENTS
                      else 0 for v, _ in pts]
            else:
                xs = [float(v) + rng.uniform(-0.008, 0.008) for v, _ in pts]
            ax.plot(xs, [s for _, s in pts], "o", alpha=0.75, label=name)
        if pattern == ALIASES["bn"]:
            ax.set_xticks(range(len(BN_PLACEMENTS)), BN_PLACEMENTS)
            ax.set_xlim(-0.5, len(BN_PLACEMENTS) - 0.5)
            ax.set_xlabel("BN placement")
        else:
            ax.set_xlabel("dropout rate")
        if names:
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.text(0.5, 0.5, "not tuned", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(objective)
        ax.set_title(title)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["Tunable", "TlkitHyperModel", "ZooHyperModel", "BackboneHyperModel", "BlockLayout",
           "BLOCK_LAYOUTS", "TuneResult", "tune", "make_hypermodel", "parse_fix", "parse_space",
           "make_tuner", "make_optimizer", "oracle_seed", "release_trial_memory",
           "distributed_role", "wait_for_chief", "serve_oracle", "trials_table", "format_table",
           "write_reports", "plot_trials", "TUNERS", "OBJECTIVES", "OPTIMIZERS", "DROPOUTS"]
