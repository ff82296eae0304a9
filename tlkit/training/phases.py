"""Running one phase: compiling it, and fitting it on cached features or on images.

The one place where tlkit compiles a classifier (`compile_classifier`, `compile_phase`) and
runs a phase: the head on cached features (`fit_cached`, `fit_features`), fine-tuning on
images (`fit_images`, `train_images`) or on the cached frozen prefix (`fit_cached`).
`tlkit.training.train.fit` calls these for every phase of a plan (see its docstring for the feature
cache), tuning's hypermodels for every trial, the demo and the learning-rate finder for
their compiles. The runners take their settings as one frozen `PhaseOptions`.
"""

import contextlib
import dataclasses
import pathlib
import time

import keras
import numpy as np

from tlkit import data as data_lib
from tlkit.core import fileio
from tlkit.core.choices import UNKNOWN_FIT_IMAGES
from tlkit.core.errors import TlkitError
from tlkit.core.logs import streamed_epochs
from tlkit.data.files import shard_positions
from tlkit.training import bn as bn_lib
from tlkit.training import feature_cache, head_solver, optimizers, schedules
from tlkit.training.frozen import feature_extractor, feature_cut, frozen_prefix_split, head_model

@dataclasses.dataclass(frozen=True)
class PhaseOptions:
    """How the phase runners train: `tlkit.training.train.fit`'s settings for one phase, and
    three switches that keep a KerasTuner trial training as it always has.

    Example:
        >>> PhaseOptions(batch_size=64).batch_size, PhaseOptions().suited_momentum
        (64, True)
        >>> PhaseOptions(batch_sise=64)
        Traceback (most recent call last):
        ...
        TypeError: PhaseOptions.__init__() got an unexpected keyword argument 'batch_sise'
    """

    batch_size: int = 32
    seed: int = 0
    verbose: int = 0
    autotune: object = None
    jit_compile: bool = False
    cache_dir: object = None
    cache_memory_limit: int = feature_cache.DEFAULT_MEMORY_LIMIT
    out_dir: object = None
    run: object = None  # a `tlkit.training.runs.RunFolder`
    settings: object = None  # a `tlkit.training.train_settings.TrainSettings`
    class_weight: object = None  # {class index: weight}
    targets: object = None  # a `tlkit.training.mixing.Targets`
    multipliers: object = None  # per-stage learning-rate multipliers
    steps_per_epoch: object = None  # set: the training data repeats, an epoch is this many steps
    suited_momentum: bool = True  # BN momentum suited to the epoch's steps (`tlkit.training.bn`)
    keras_batches: bool = False  # cached arrays batched and shuffled by Keras, a step per call
    note_failed: bool = True  # record and warn about files that failed to decode


def compile_classifier(model, optimizer, *, one_hot=False, metrics=True, jit_compile="auto",
                       steps_per_execution=1):
    """Compile classifier `model` with `optimizer`, then build the optimizer's variables.

    Loss and metric are objects (a short string alias may not deserialize from `.h5`):
    sparse categorical cross-entropy and accuracy, or with `one_hot` (soft targets,
    `tlkit.training.mixing`) the categorical ones. `metrics=False` compiles the loss only.
    `jit_compile` and `steps_per_execution` go to `model.compile` ("auto": Keras's default).
    The optimizer is built now: slot variables created inside the first traced train step
    make TensorFlow trace that step twice, and `BackupAndRestore` needs them to restore.
    Returns `model`.
    """
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy()
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric] if metrics else None,
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model


def compile_phase(model, plan, phase, jit_compile=False, steps_per_execution=1, *,
                  settings=None, steps_per_epoch=1, multipliers=None, one_hot=False):
    """Compile `model` for `phase` (called after every change of `trainable`).

    `settings` (a `tlkit.training.train_settings.TrainSettings`; None: a constant rate) gives the
    phase's schedule over `phase.epochs * steps_per_epoch` steps; `multipliers` the per-stage
    rates (`tlkit.training.optimizers.stage_multipliers`); `one_hot` compiles for soft targets
    (`tlkit.training.mixing`): categorical cross-entropy instead of the sparse one. Compiles through
    `compile_classifier`; returns `model`.

    `jit_compile` is off by default: on a 2-core CPU XLA compilation costs more than it saves
    for short runs (bench/ measures it); pass True or "auto" to try it.
    """
    lr = phase.learning_rate
    if settings is not None:
        lr = schedules.for_phase(settings.schedule, lr, epochs=phase.epochs,
                                 steps_per_epoch=steps_per_epoch,
                                 fine_tuning=bool(phase.train_stages), warmup=settings.warmup)
    optimizer = optimizers.make(lr, weight_decay=plan.weight_decay, multipliers=multipliers)
    return compile_classifier(model, optimizer, one_hot=one_hot, jit_compile=jit_compile,
                              steps_per_execution=steps_per_execution)


def worker_shard(strategy):
    """(workers, this worker's index) under a multi-worker strategy, else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    workers = len(resolver.cluster_spec().as_dict().get("worker", []))
    return (workers, int(resolver.task_id or 0)) if workers > 1 else None


def image_cache_prefix(folder, x):
    """The tf.data cache file prefix for decoded images of `x` in `folder` (content-keyed).

    A killed run leaves tf.data's lock file and a partial cache behind; both are removed, so
    the next run writes the cache anew (the run folder's lock keeps two runs apart).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / f"images-{x.fingerprint()[:20]}"
    if not pathlib.Path(f"{prefix}.index").exists():
        for stale in folder.glob(f"{prefix.name}*"):
            stale.unlink()
    return str(prefix)


def cache_split(model, plan, phase, dataset, aug, cache_features, strategy, o):
    """(extractor, trainer) when this phase can train on a cached frozen part, else None."""
    if not cache_features or strategy is not None or plan.bn_training:
        return None
    if o.settings.cutmix:
        if o.verbose:
            print(f"tlkit: phase {phase.name!r} trains on images (no feature cache): --cutmix "
                  f"pastes image boxes")
        return None
    if not phase.train_stages:
        if feature_cut(model) is None:
            return None
        if aug is not None and o.verbose:
            print("tlkit: feature cache on: the head phase trains on un-augmented features "
                  "(--augment-passes K caches K-1 augmented copies too; --no-cache "
                  "augments live)")
        return feature_extractor(model), head_model(model)
    if aug is not None:
        return None  # fine-tuning with live augmentation trains on images
    # Fine-tuning the upper stages: the stages below stay frozen (BN in inference mode) and
    # there is no augmentation, so their output is computed once as well.
    split = frozen_prefix_split(model)
    if split is not None:
        cut_bytes = (len(dataset.x_train) + len(dataset.x_val)) * 4 * int(
            np.prod(split[0].output.shape[1:]))
        if cut_bytes > o.cache_memory_limit and not (o.cache_dir or o.out_dir):
            if o.verbose:
                print(f"tlkit: phase {phase.name!r} trains without a feature cache: the "
                      f"frozen stages' output ({cut_bytes / 2**30:.1f} GiB) exceeds the "
                      f"memory limit and there is no output folder to hold it")
            return None
    return split


def fit_cached(split, plan, phase, dataset, aug, augment_passes, cbs, o):
    """Train `phase` on the cached output of the frozen part.

    Returns `(cache facts, features)`: `features` is `{"val": (features, labels), "train":
    (features, labels)}` when the phase trains the head alone (the head then maps the
    validation rows to the model's validation probabilities, and calibration fits its unknown
    score on the training rows: `tlkit.training.train.fit` hands them on), else None. The
    training rows are un-augmented (pass 0), at most `UNKNOWN_FIT_IMAGES` of them (a seeded
    choice), copied out of the cache.
    """
    extractor, trainer = split
    passes = augment_passes if aug is not None and not phase.train_stages else 1
    batch_size, verbose = o.batch_size, o.verbose
    if verbose:
        what = ("the frozen base" if not phase.train_stages else
                f"the frozen layers below {trainer.layers[1].layers[1].name!r}")
        print(f"tlkit: phase {phase.name!r}: computing the output of {what} once "
              f"(feature cache) for {len(dataset.x_train):,} training + "
              f"{len(dataset.x_val):,} validation images")
    t0 = time.perf_counter()
    run, cache_dir, out_dir = o.run, o.cache_dir, o.out_dir
    where = cache_dir or (run.feature_dir() if run is not None else
                          pathlib.Path(out_dir) / "feature_cache" if out_dir else None)
    kw = dict(cache_dir=where, memory_limit=o.cache_memory_limit, batch_size=batch_size,
              verbose=verbose, autotune=o.autotune,
              persist=cache_dir is not None or run is not None)
    f_train, c_train = feature_cache.get(extractor, dataset.x_train, labels=dataset.y_train,
                                         name="train", augment=aug, passes=passes,
                                         seed=o.seed, **kw)
    f_val, c_val = feature_cache.get(extractor, dataset.x_val, labels=dataset.y_val,
                                     name="val", **kw)
    y_train, y_val = c_train.pop("labels"), c_val.pop("labels")
    warn_failed(dataset, verbose)
    cache_info = {"phase": phase.name, "passes": passes, "train_features": list(f_train.shape),
                  "train": c_train, "val": c_val, "seconds": round(time.perf_counter() - t0, 3)}
    solver = head_solver_choice(trainer, phase, f_train, y_train, o)
    if solver == "closed-form":
        cache_info["head_solver"] = fit_closed_form(trainer, phase, (f_train, y_train),
                                                    (f_val, y_val), cbs, o)
    else:
        fit_features(trainer, plan, phase, (f_train, y_train), (f_val, y_val), cbs, o)
    val = None if phase.train_stages else {"val": (f_val, y_val), "train": feature_cache.sample(
        f_train, y_train, passes, UNKNOWN_FIT_IMAGES, o.seed)}
    del f_train, f_val
    if cache_dir is None and run is None:  # spilled to out_dir for lack of memory: not kept
        for c in (c_train, c_val):
            if c.get("where") == "disk":
                pathlib.Path(c["path"]).unlink(missing_ok=True)
                pathlib.Path(c["labels_path"]).unlink(missing_ok=True)
        if c_val.get("where") == "disk" and val is not None:
            val = None  # a memory map of the file just removed
    return cache_info, val


def head_solver_choice(trainer, phase, f_train, y_train, o):
    """`closed-form` or `adam`: how this phase trains on its cached features.

    `auto` (the default `--head-solver`) solves the head in closed form
    (`tlkit.training.head_solver`) when the phase trains the head alone under the default
    budget (no `--epochs`) and the solve applies; `closed-form` asks for it whatever the
    budget, and is an error where it cannot apply; `adam` trains by gradient steps.
    """
    choice = getattr(o.settings, "head_solver", "auto") if o.settings else "auto"
    if choice == "adam" or phase.train_stages or o.keras_batches:
        return "adam"
    if choice == "auto" and not phase.min_steps:
        return "adam"  # --epochs given: the head trains that many epochs
    layer = head_solver.output_layer(trainer)
    why = head_solver.unsuited(trainer, f_train, y_train, layer.units if layer else 0,
                               o.targets, o.cache_memory_limit)
    if why is None:
        return "closed-form"
    if choice == "closed-form":
        raise TlkitError(f"--head-solver closed-form cannot train this head: {why}. Use "
                         f"--head-solver adam (gradient steps) or auto.")
    if o.verbose:
        print(f"tlkit: phase {phase.name!r}: the head trains by gradient steps ({why})")
    return "adam"


def fit_closed_form(trainer, phase, train, val, cbs, o):
    """Solve `trainer`'s head in closed form, then show the callbacks one epoch's logs.

    The phase is one epoch to tlkit's callbacks (history.csv, the best checkpoint, early
    stopping's best weights, the best phase across phases) with the solution's losses as its
    logs; the run folder's epoch backup is left out (there is no training to interrupt).
    Returns the solver's facts for report.json.
    """
    layer = head_solver.output_layer(trainer)
    logs, facts = head_solver.fit_head(trainer, train, val, layer.units, o.class_weight)
    shown = keras.callbacks.CallbackList(
        [c for c in cbs or [] if not isinstance(c, keras.callbacks.BackupAndRestore)],
        model=trainer)
    shown.on_train_begin()
    shown.on_epoch_begin(0)
    shown.on_epoch_end(0, logs)
    shown.on_train_end()
    if o.verbose:
        print(f"tlkit: phase {phase.name!r}: head solved in closed form ({facts['method']}) "
              f"on {len(train[1]):,} cached feature rows in {facts['seconds']:.2f} s: "
              f"val_loss {logs['val_loss']:.4f}, val_accuracy {logs['val_accuracy']:.4f}")
    return {**facts, "val_loss": round(logs["val_loss"], 6)}


def fit_features(trainer, plan, phase, train, val, cbs, o, *, epochs=None, initial_epoch=0,
                 compile=True):
    """Compile `trainer` for `phase` and fit it on cached features; returns the `History`.

    `trainer` is the head (`tlkit.training.frozen.head_model`) or the upper stages over the frozen
    prefix; `train`, `val` are (features, labels), arrays or memmaps. `epochs` is the last
    epoch (default `phase.epochs`), `initial_epoch` the first (a continued trial);
    `compile=False` keeps the compile (and optimizer state) `trainer` has for this phase.

    By default an epoch is one compiled call (steps_per_execution): on cached features a step
    is so cheap that Keras's per-step Python overhead would dominate the head's epochs;
    callbacks see batch hooks once per epoch, epoch hooks as usual. With
    `o.keras_batches` Keras batches and shuffles the arrays a step per call (tuning's
    trials, as they always trained).
    """
    (f_train, y_train), (f_val, y_val) = train, val
    batch_size, targets = o.batch_size, o.targets
    repeat = o.steps_per_epoch if not o.keras_batches and not isinstance(
        f_train, np.memmap) else None  # tiny data: an epoch of `repeat` steps (train.fit)
    steps = repeat or -(-len(y_train) // batch_size)
    if compile:
        compile_phase(trainer, plan, phase, o.jit_compile,
                      steps_per_execution=1 if o.keras_batches else steps,
                      settings=o.settings, steps_per_epoch=steps,
                      multipliers=o.multipliers, one_hot=targets is not None)
    if o.keras_batches:
        data = dict(x=f_train, y=y_train, validation_data=(f_val, y_val),
                    batch_size=batch_size, shuffle=True)
    else:
        if isinstance(f_train, np.memmap) or isinstance(f_val, np.memmap):
            train_data = feature_cache.FeatureBatches(f_train, y_train, batch_size,
                                                      seed=o.seed)
            val_data = feature_cache.FeatureBatches(f_val, y_val, batch_size, shuffle=False)
        else:
            train_data = feature_cache.as_dataset(f_train, y_train, batch_size, shuffle=True,
                                                  seed=o.seed, repeat=bool(repeat))
            val_data = feature_cache.as_dataset(f_val, y_val, batch_size)
        if targets is not None:
            train_data, val_data = targets.train(train_data), targets.val(val_data)
        data = dict(x=train_data, validation_data=val_data, shuffle=False,  # the data shuffles
                    steps_per_epoch=repeat)
    with _momentum(trainer, steps, o):
        return trainer.fit(**data, epochs=epochs or phase.epochs, initial_epoch=initial_epoch,
                           callbacks=list(cbs or []), verbose=o.verbose,
                           class_weight=o.class_weight)


def fit_images(model, plan, phase, dataset, cbs, o, *, aug=None, strategy=None,
               image_cache=None, epochs=None, initial_epoch=0, compile=True):
    """Compile `model` for `phase` and train it on images; returns (`History`, facts).

    The facts are for the run's info (the shard under multi-worker training). `epochs` is
    the last epoch (default `phase.epochs`), `initial_epoch` the first; `compile=False`
    keeps the compile (and optimizer state) `model` has for this phase. See `train_images`.
    """
    shard = worker_shard(strategy)
    steps = o.steps_per_epoch or -(-len(dataset.y_train) // (
        o.batch_size * (shard[0] if shard else 1)))
    if compile:
        with strategy.scope() if strategy else contextlib.nullcontext():
            compile_phase(model, plan, phase, o.jit_compile, settings=o.settings,
                          steps_per_epoch=steps, multipliers=o.multipliers,
                          one_hot=o.targets is not None)
    return train_images(model, dataset, cbs, o, epochs=epochs or phase.epochs,
                        initial_epoch=initial_epoch, aug=aug, shard=shard,
                        image_cache=image_cache)


def train_images(model, dataset, cbs, o, *, epochs, initial_epoch=0, aug=None, shard=None,
                 image_cache=None):
    """Fit the compiled `model` on `dataset`'s images, streamed; returns (`History`, facts).

    `aug` augments the training batches, `shard` is (workers, index) for multi-worker
    training (each worker decodes only its own training files), `image_cache` a folder for
    tf.data's file cache of decoded images (`image_cache_prefix`).
    """
    batch_size, out_dir, targets = o.batch_size, o.out_dir, o.targets
    repeat = o.steps_per_epoch if shard is None else None  # tiny data (train.fit)
    steps = repeat or -(-len(dataset.y_train) // (batch_size * (shard[0] if shard else 1)))
    # Validation (small) keeps tf.data's auto-sharding, which splits its batches evenly.
    caches = {name: (image_cache_prefix(image_cache, x)
                     if image_cache and data_lib.is_files(x) else False)
              for name, x in (("train", dataset.x_train), ("val", dataset.x_val))}
    train_ds = dataset.pipeline("train", batch_size=batch_size, shuffle=True, augment=aug,
                                seed=o.seed, autotune=o.autotune, shard=shard,
                                cache=caches["train"])
    val_ds = dataset.pipeline("val", batch_size=batch_size, autotune=o.autotune,
                              cache=caches["val"])
    if repeat:  # an epoch of `repeat` steps over data of fewer batches
        train_ds = train_ds.repeat()
    if targets is not None:  # after augmentation: mixing sees augmented images
        train_ds, val_ds = targets.train(train_ds), targets.val(val_ds)
    facts = {}
    if shard is not None and data_lib.is_files(dataset.x_train):
        mine = list(dataset.x_train.paths[shard_positions(len(dataset.x_train), shard)])
        facts["shard"] = {"workers": shard[0], "index": shard[1], "train_files": len(mine)}
        if out_dir is not None:  # which files this worker read, for the record
            fileio.write_json({**facts["shard"], "paths": mine},
                              pathlib.Path(out_dir) / f"shard-{shard[1]}.json")
    files = data_lib.is_files(dataset.x_train)
    with _momentum(model, steps, o), streamed_epochs() if files else contextlib.nullcontext():
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                            steps_per_epoch=repeat, initial_epoch=initial_epoch,
                            callbacks=list(cbs or []),
                            verbose=o.verbose, shuffle=False,  # tf.data shuffles
                            class_weight=o.class_weight)
    if o.note_failed:
        warn_failed(dataset, o.verbose)
    return history, facts


def _momentum(model, steps, o):
    """`tlkit.training.bn.suited_momentum` unless `o.suited_momentum` is off."""
    return (bn_lib.suited_momentum(model, steps) if o.suited_momentum
            else contextlib.nullcontext())


def warn_failed(dataset, verbose):
    """Record (and say) which files failed to decode in the pass that just ended."""
    failed = dataset.note_failed() if hasattr(dataset, "note_failed") else []
    if failed:
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        import warnings

        warnings.warn(f"Skipped {len(failed)} file(s) that could not be decoded during "
                      f"training (changed or corrupt since the scan): {shown}", stacklevel=3)
