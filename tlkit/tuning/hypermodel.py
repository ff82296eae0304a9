"""The base of tlkit's hypermodels: declared tunables, overrides, data, compiling, fitting."""

import re

import keras
import keras_tuner as kt

from tlkit.core.errors import TlkitError, check_choice
from tlkit.training import phases, precision
from tlkit.tuning.constants import ALIAS_HELP, ALIASES, OPTIMIZERS
from tlkit.tuning.space import _fmt, parse_fix, parse_space


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
        """Compile `model` with the tuned optimizer (`tlkit.training.phases.compile_classifier`).

        The optimizer is built at once: slot variables created inside the traced train step
        add a tf.cond graph per variable that TensorFlow never frees.
        """
        return phases.compile_classifier(model, make_optimizer(values.get("optimizer", "adam"),
                                                               values["learning_rate"]))

    trains_base = True  # every layer trains (a zoo model); BackboneHyperModel decides per strategy
    policy = "float32"  # the dtype policy trials train under (`set_precision`)

    def set_precision(self, policy):
        """Train the trials under `policy` (`tlkit.training.precision`); returns self."""
        self.policy = policy
        return self

    def probe_model(self):
        """The network `--precision auto` times (`tlkit.training.precision.probe`)."""
        return self.make_model(self.declare(kt.HyperParameters()))

    def build(self, hp, compile=True):
        """Seed, declare the hyperparameters, build and compile a model (KerasTuner API).

        The model is built under the hypermodel's `policy`. `compile=False` returns it
        uncompiled (to load trained weights into it).
        """
        if self.num_classes is None:
            raise TlkitError("Attach data first: hypermodel.set_data(dataset).")
        keras.utils.set_random_seed(self.seed)
        values = self.declare(hp)
        with precision.policy_scope(self.policy):
            model = self.make_model(values)
        return self.compile_model(model, values) if compile else model

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=None, **kwargs):
        """Train `model` on the attached data; returns the Keras `History` (KerasTuner API)."""
        keras.utils.set_random_seed(self.seed)
        return self.fit_images(model, epochs or self.epochs, initial_epoch, callbacks)

    def fit_images(self, model, epochs, initial_epoch=0, callbacks=None):
        """Fit the compiled `model` on the attached images up to epoch `epochs`.

        Runs `tlkit.training.phases.train_images` with `phase_options()`; returns the `History`.
        """
        history, _ = phases.train_images(model, self.dataset, callbacks, self.phase_options(),
                                         epochs=epochs, initial_epoch=initial_epoch)
        return history

    def phase_options(self):
        """Options for `tlkit.training.phases`' runners: this hypermodel's batch size, seed, etc.

        A trial trains as plain KerasTuner does: Keras batches and shuffles cached arrays
        (one step per call), BN momentum stays as built, and no decode failures are noted.
        """
        return phases.PhaseOptions(batch_size=self.batch_size, seed=self.seed,
                                   verbose=self.fit_verbose, autotune=self.autotune,
                                   suited_momentum=False, keras_batches=True,
                                   note_failed=False)

    def deployable(self, model, values):
        """The deployable image classifier for a trained trial model (here: itself, in
        float32 layers whatever the trials trained in)."""
        return precision.to_float32(model)

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


class BestCheckpoint(keras.callbacks.Callback):
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
