"""KerasTuner tuners for tlkit's hypermodels, and freeing memory between trials."""

import contextlib
import time

import keras
import keras_tuner as kt

from tlkit.core import compat
from tlkit.core.errors import TlkitError, suggest
from tlkit.tuning.constants import OBJECTIVES, PROJECT, TUNERS
from tlkit.tuning.space import _fmt


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
    registry = compat.gradient_registry()
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
    metrics = compat.best_epoch_metrics(results, objective)
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
