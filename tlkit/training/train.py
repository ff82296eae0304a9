"""Fitting a Plan: phases, callbacks, and the feature cache for a frozen base.

While the base is frozen (the whole of `small-similar`, and the head phase of the two-phase
strategies) its output does not change, so `fit` runs the base once over the training and
validation images (Keras's progress bar shows it), trains the head on those features, and
the head's layers, shared with the full model, end up in it: the full model's predictions
equal the head's on the cached features. With live augmentation the cache holds
`augment_passes` passes over the training images: the first un-augmented, the others
augmented (default 1, i.e. the cached head phase sees no augmentation; a message says so).
`cache_features=False` trains the plain way, images through the frozen base every epoch.

Example:
    >>> from tlkit.models import backbones
    >>> from tlkit import data
    >>> from tlkit.training import strategies, train
    >>> ds = data.load("digits", image_size=32, channels=3)
    >>> bb = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)
    >>> p = strategies.plan("small-similar", bb, epochs=2)
    >>> result = train.fit(p, ds, verbose=0)
    >>> sorted(result.history)[:2]
    ['accuracy', 'loss']
"""

import contextlib
import dataclasses
import os
import time

import keras
import numpy as np

from tlkit import data as data_lib
from tlkit.core.errors import TlkitError
from tlkit.training import bn as bn_lib
from tlkit.training import feature_cache, optimizers, phases
from tlkit.training.callbacks import history_of, make_callbacks
from tlkit.training.phases import compile_phase
from tlkit.training.train_settings import TrainSettings



@dataclasses.dataclass
class FitResult:
    """What `fit` returns: the trained model, merged history and run facts, and (for a plan
    whose one phase trained the head on cached features) the model's validation
    probabilities and their labels, computed from those features at no cost, and the
    features themselves, `{"train": (features, labels), "val": (features, labels)}`
    (calibration fits its unknown score on them, `tlkit.calibrate.calibrate_model`)."""

    model: keras.Model
    history: dict
    info: dict
    val_probabilities: tuple = None
    features: dict = None

    def head_outputs(self):
        """`{"val_probs", "features"}` for `tlkit.calibrate.calibrate_model`: what the head
        computed on its cached features (None each when it did not)."""
        return {"val_probs": self.val_probabilities, "features": self.features}


def fit(plan, dataset, *, epochs=None, batch_size=32, callbacks=(), cache_features=True,
        augment=True, augment_passes=1, out_dir=None, seed=0, autotune=None, patience=5,
        tensorboard=False, model=None, cache_dir=None,
        cache_memory_limit=feature_cache.DEFAULT_MEMORY_LIMIT, strategy=None, jit_compile=False,
        image_cache=None, run=None, settings=None, verbose=1):
    """Train a model with `plan` on `dataset`, phase by phase.

    Args:
        plan: a `tlkit.training.strategies.Plan`.
        dataset: a `tlkit.data.Dataset` at the backbone's input size and channels.
        epochs: ignored unless given: then it replaces the epochs of a single-phase plan
            (exactly that many, no step floor).
        batch_size: batch size of every phase.
        callbacks: extra Keras callbacks, added to tlkit's (EarlyStopping with patience
            `patience` and restored best weights, DivergenceGuard, history.csv, the best
            weights' checkpoint).
        cache_features: cache the frozen base's output for phases that train the head only.
        augment: True for tlkit's default augmentation, False/None for none, or a Keras
            layer/Sequential to apply to training batches.
        augment_passes: with augmentation and caching, how many passes over the training
            images the cache holds (the first un-augmented).
        out_dir: folder for history.csv, checkpoints and TensorBoard logs (None: no files).
        seed: seeds Python, NumPy and the backend (`keras.utils.set_random_seed`).
        autotune: tf.data autotuning; `False` uses a fixed prefetch (stalls less on 2 cores);
            None: on with 5 or more CPU cores (`tlkit.data.default_autotune`).
        patience: EarlyStopping patience on val_loss, in epochs; a phase budgeted by steps
            waits at least `tlkit.training.strategies.PATIENCE_MIN_STEPS` steps.
        tensorboard: add a TensorBoard callback (needs `out_dir`).
        model: continue training this model (from `plan.build_model` or a loaded tlkit model)
            instead of building a new one.
        cache_dir: folder where cached features are kept and reused by content key (a later
            run on the same data, backbone and weights skips the forward pass). Without it,
            features stay in memory, and only features over `cache_memory_limit` go to
            `out_dir/feature_cache`, removed when their phase ends.
        cache_memory_limit: bytes of features kept in memory; larger ones go to `cache_dir`.
        strategy: a `tf.distribute.Strategy` (see `tlkit.training.distribute`); the model must have
            been built under its scope. The feature cache is off under a strategy.
        jit_compile: XLA compilation of the train step (off by default; see `compile_phase`).
        image_cache: a folder for tf.data's file cache of decoded, resized images, for phases
            that train on images from files (the first epoch decodes, later ones read the
            cache; keyed by the files' fingerprint, reused by later runs). None: decode every
            epoch (the default; bench/bench_data.py measures both).
        run: a `tlkit.training.runs.RunFolder` (entered): each phase backs up its state there every
            epoch (Keras `BackupAndRestore`), finished phases are recorded, and a rerun
            continues where an interrupted one stopped; features are cached in its state.
        settings: a `tlkit.training.train_settings.TrainSettings` (schedule, per-stage rates, label
            smoothing, class weights, mixup, cutmix); None: `TrainSettings()`, the defaults.
        verbose: Keras verbosity (1: progress bars, 2: one line per epoch).

    A phase with a step floor (`Phase.min_steps`, the strategies' default budget) runs at
    least that many optimizer steps: its epochs are resolved here from the data size, and
    `info["phases"]` records the steps each phase ran.

    The final model is the best val_loss checkpoint across all phases: each phase ends on its
    best epoch (EarlyStopping restores it), and when an earlier phase reached a lower
    val_loss than a later one, its weights are restored at the end; `info["best"]` says
    which (`{"phase", "epoch", "phase_epoch", "val_loss"}`, epoch counted over the run).

    After the last phase, BatchNormalization layers that trained get statistics that match
    their weights (`tlkit.training.bn.recalibrate`).

    Returns:
        `FitResult(model, history, info)`; history holds per-epoch lists (`loss`, `accuracy`,
        `val_loss`, `val_accuracy`, `phase`), info the phase timings and cache decisions.
    """
    if len(dataset.x_train) == 0 or len(dataset.x_val) == 0:
        raise TlkitError("The training and validation splits must not be empty.")
    if augment_passes < 1:
        raise TlkitError(f"augment_passes must be >= 1. Received: {augment_passes}.")

    settings = TrainSettings() if settings is None else settings
    keras.utils.set_random_seed(seed)
    if epochs is not None and len(plan.phases) == 1:
        plan.phases[0] = dataclasses.replace(plan.phases[0], epochs=epochs, min_steps=0)
    aug = data_lib.augmentation() if augment is True else (augment or None)
    if model is None:
        model = plan.build_model(dataset.num_classes)
    records = []  # one per epoch of the run, every phase (tlkit.training.callbacks.EpochRecorder)
    info = {"phases": [], "cache": None, "settings": settings.to_dict()}
    weights_by_class = settings.class_weights(dataset)
    if weights_by_class is not None:
        info["class_weight"] = {dataset.class_names[i]: w for i, w in weights_by_class.items()}
    best = _Best()
    batches = -(-len(dataset.x_train) // batch_size)
    head_val = None  # (head, {"val", "train"} features) of a head phase on cached features
    for i, phase in enumerate(plan.phases):
        # A phase budgeted by steps gets the epochs its budget needs at this data size (tiny
        # data repeats within an epoch), and early stopping waits a number of steps, not
        # epochs (`tlkit.training.strategies.Phase`). Multi-worker shards keep plain epochs.
        steps_per_epoch = batches if strategy is not None else phase.steps_per_epoch(batches)
        phase = plan.phases[i] = phase.budget(steps_per_epoch)
        phase_patience = phase.patience(patience, steps_per_epoch)
        plan.apply(model, phase)
        done = run.finished_phase(i) if run is not None else None
        if done is not None:  # a resumed run: this phase finished before the interruption
            weights, saved = done
            model.load_weights(weights)
            records.extend(saved["records"])
            info["phases"].append({**saved["info"], "resumed": "finished before"})
            info["cache"] = info["cache"] or saved["info"].get("cache")
            best.phase_ended(model, phase.name, records)
            continue
        state = run.phase_dir(i) if run is not None else None
        before = _phase_records(state)
        offset = len(records)
        records.extend(before)
        if before and verbose:
            print(f"tlkit: resuming phase {phase.name!r} after epoch {len(before)} "
                  f"(state in {state})")
        cbs = make_callbacks(out_dir, i, phase, records, patience=phase_patience,
                             tensorboard=tensorboard, extra=callbacks, state=state,
                             offset=offset)
        started = time.perf_counter()
        options = phases.PhaseOptions(
            batch_size=batch_size, seed=seed, verbose=verbose, autotune=autotune,
            jit_compile=jit_compile, cache_dir=cache_dir, cache_memory_limit=cache_memory_limit,
            out_dir=out_dir, run=run, settings=settings, class_weight=weights_by_class,
            targets=settings.targets(dataset.num_classes, seed),
            steps_per_epoch=steps_per_epoch if steps_per_epoch != batches else None,
            multipliers=optimizers.stage_multipliers(plan, phase, model,
                                                     settings.lr_decay_per_stage))
        split = phases.cache_split(model, plan, phase, dataset, aug, cache_features, strategy,
                                   options)
        if split is not None:
            cache_info, head_val = phases.fit_cached(split, plan, phase, dataset, aug,
                                                     augment_passes, cbs, options)
            head_val = (split[1], head_val) if head_val is not None else None
            info["cache"] = info["cache"] or cache_info  # the first (head) phase's
        else:
            cache_info = None
            _, facts = phases.fit_images(model, plan, phase, dataset, cbs, options, aug=aug,
                                         strategy=strategy, image_cache=image_cache)
            info.update(facts)
        epochs_run = sum(r["phase"] == phase.name for r in records)
        solved = (cache_info or {}).get("head_solver")
        phase_info = {"name": phase.name, "epochs_run": epochs_run,
                      "steps": 0 if solved else epochs_run * steps_per_epoch,
                      "steps_per_epoch": steps_per_epoch,
                      "solver": solved["solver"] if solved else "adam",
                      "epochs_budget": phase.epochs, "min_steps": phase.min_steps,
                      "patience_epochs": phase_patience,
                      "cached": split is not None, "cache": cache_info,
                      "seconds": round(time.perf_counter() - started, 3)}
        if before:
            phase_info["resumed"] = f"after epoch {len(before)}"
        info["phases"].append(phase_info)
        best.phase_ended(model, phase.name, records)
        if run is not None:
            run.finish_phase(i, model, {"records": [r for r in records
                                                    if r["phase"] == phase.name],
                                        "info": phase_info})
    info["best"] = best.restore(model, verbose)
    info["bn_recalibration"] = bn_lib.recalibrate(model, dataset, batch_size=batch_size,
                                                  strategy=strategy, verbose=verbose)
    val_probabilities = features = None
    if len(plan.phases) == 1 and head_val is not None and not info["bn_recalibration"]:
        # The head (its layers are the model's own, at their restored best weights) on the
        # cached validation features: the model's validation probabilities, without a pass.
        head, features = head_val
        f_val, y_val = features["val"]
        val_probabilities = (head.predict(f_val, batch_size=4096, verbose=0), y_val)
    # Leave the model compiled for the last phase, ready for evaluate() or more training.
    with strategy.scope() if strategy else contextlib.nullcontext():
        compile_phase(model, plan, plan.phases[-1], jit_compile)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)

    return FitResult(model, history_of(records), info, val_probabilities, features)


class _Best:
    """The best val_loss across phases, with the weights of the phase that reached it."""

    def __init__(self):
        self.record, self.weights, self.last = None, None, None

    def phase_ended(self, model, name, records):
        """Note the phase's best epoch; keep its weights (the model's now) if best so far."""
        rows = [r for r in records if r["phase"] == name and np.isfinite(r.get("val_loss", np.nan))]
        self.last = name
        if not rows:
            return
        row = min(rows, key=lambda r: r["val_loss"])
        if self.record is None or row["val_loss"] < self.record["val_loss"]:
            self.record = {"phase": name, "epoch": int(row["epoch"]),
                           "phase_epoch": int(row["phase_epoch"]),
                           "val_loss": float(row["val_loss"])}
            self.weights = model.get_weights()

    def restore(self, model, verbose):
        """Load the best phase's weights when it is not the last; returns the record."""
        if self.record is None:
            return None
        restored = self.record["phase"] != self.last
        if restored:
            model.set_weights(self.weights)
            if verbose:
                print(f"tlkit: the best val_loss ({self.record['val_loss']:.4f}) was reached in "
                      f"phase {self.record['phase']!r} (epoch {self.record['epoch']}): the final "
                      f"model has those weights")
        self.weights = None
        return {**self.record, "restored": restored}


def _phase_records(state):
    """The epochs a phase recorded before an interruption (its state's epochs.json)."""
    if state is None or not (state / "epochs.json").is_file():
        return []
    import json

    records = json.loads((state / "epochs.json").read_text())
    backup = state / "backup" / "training_metadata.json"
    if not backup.is_file():
        return []
    last = json.loads(backup.read_text()).get("epoch", 0)
    return [r for r in records if r["phase_epoch"] <= last]  # only epochs backed up


