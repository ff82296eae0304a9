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
    >>> from tlkit import backbones, data, strategies, train
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
import pathlib
import time

import keras
import numpy as np

from tlkit import data as data_lib
from tlkit import bn as bn_lib
from tlkit import feature_cache, fileio
from tlkit.errors import TlkitError
from tlkit.frozen import (CACHE_CUT_LAYERS, extract_features, feature_cut,  # noqa: F401
                          feature_extractor, frozen_prefix_split, head_model)



@dataclasses.dataclass
class FitResult:
    """What `fit` returns: the trained model, merged history and run facts."""

    model: keras.Model
    history: dict
    info: dict


def compile_phase(model, plan, phase, jit_compile=False, steps_per_execution=1):
    """Compile `model` for `phase` (called after every change of `trainable`).

    `jit_compile` is off by default: on a 2-core CPU XLA compilation costs more than it saves
    for short runs (bench/ measures it); pass True or "auto" to try it.
    """
    lr = phase.learning_rate
    if plan.weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=plan.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=lr)
    # Loss and metric as objects: a short string alias may not deserialize from .h5.
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    # Build the optimizer's variables now: created inside the first traced train step they
    # make TensorFlow trace that step twice (and BackupAndRestore needs them to restore).
    model.optimizer.build(model.trainable_variables)


def make_callbacks(out_dir, phase_index, phase, records, *, patience=5, tensorboard=False,
                   extra=(), state=None, offset=0):
    """tlkit's callbacks for one phase, in order.

    `DivergenceGuard` (a NaN or infinite loss is an error), EarlyStopping on val_loss with
    the best weights restored, `EpochRecorder` (history.csv with the phase and the global
    epoch), ModelCheckpoint of the phase's best weights, TensorBoard on request, and, given a
    `state` folder, Keras's `BackupAndRestore` there (last: it backs up only epochs that
    passed the guard), then `extra`.
    """
    from tlkit import callbacks as cb_lib

    cbs = [cb_lib.DivergenceGuard(phase.name, phase.learning_rate, epoch_offset=offset),
           keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True, verbose=0)]
    csv = None
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        csv = out_dir / "history.csv"
        cbs.append(keras.callbacks.ModelCheckpoint(
            str(out_dir / "checkpoints" / f"phase{phase_index + 1}.weights.h5"),
            monitor="val_loss", save_best_only=True, save_weights_only=True, verbose=0))
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard")))
    cbs.append(cb_lib.EpochRecorder(phase.name, records, offset=offset, csv_path=csv,
                                    state_path=state / "epochs.json" if state else None))
    if state is not None:
        cbs.append(keras.callbacks.BackupAndRestore(str(state / "backup"),
                                                    double_checkpoint=True))
    return cbs + list(extra)


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


def fit(plan, dataset, *, epochs=None, batch_size=32, callbacks=(), cache_features=True,
        augment=True, augment_passes=1, out_dir=None, seed=0, autotune=None, patience=5,
        tensorboard=False, model=None, cache_dir=None,
        cache_memory_limit=feature_cache.DEFAULT_MEMORY_LIMIT, strategy=None, jit_compile=False,
        image_cache=None, run=None, verbose=1):
    """Train a model with `plan` on `dataset`, phase by phase.

    Args:
        plan: a `tlkit.strategies.Plan`.
        dataset: a `tlkit.data.Dataset` at the backbone's input size and channels.
        epochs: ignored unless given: then it replaces the epochs of a single-phase plan.
        batch_size: batch size of every phase.
        callbacks: extra Keras callbacks, added to tlkit's (EarlyStopping with patience
            `patience` and restored best weights, DivergenceGuard, history.csv, ModelCheckpoint).
        cache_features: cache the frozen base's output for phases that train the head only.
        augment: True for tlkit's default augmentation, False/None for none, or a Keras
            layer/Sequential to apply to training batches.
        augment_passes: with augmentation and caching, how many passes over the training
            images the cache holds (the first un-augmented).
        out_dir: folder for history.csv, checkpoints and TensorBoard logs (None: no files).
        seed: seeds Python, NumPy and the backend (`keras.utils.set_random_seed`).
        autotune: tf.data autotuning; `False` uses a fixed prefetch (stalls less on 2 cores);
            None: on with 5 or more CPU cores (`tlkit.data.default_autotune`).
        patience: EarlyStopping patience on val_loss.
        tensorboard: add a TensorBoard callback (needs `out_dir`).
        model: continue training this model (from `plan.build_model` or a loaded tlkit model)
            instead of building a new one.
        cache_dir: folder where cached features are kept and reused by content key (a later
            run on the same data, backbone and weights skips the forward pass). Without it,
            features stay in memory, and only features over `cache_memory_limit` go to
            `out_dir/feature_cache`, removed when their phase ends.
        cache_memory_limit: bytes of features kept in memory; larger ones go to `cache_dir`.
        strategy: a `tf.distribute.Strategy` (see `tlkit.distribute`); the model must have
            been built under its scope. The feature cache is off under a strategy.
        jit_compile: XLA compilation of the train step (off by default; see `compile_phase`).
        image_cache: a folder for tf.data's file cache of decoded, resized images, for phases
            that train on images from files (the first epoch decodes, later ones read the
            cache; keyed by the files' fingerprint, reused by later runs). None: decode every
            epoch (the default; bench/bench_data.py measures both).
        run: a `tlkit.runs.RunFolder` (entered): each phase backs up its state there every
            epoch (Keras `BackupAndRestore`), finished phases are recorded, and a rerun
            continues where an interrupted one stopped; features are cached in its state.
        verbose: Keras verbosity (1: progress bars).

    After the last phase, BatchNormalization layers that trained get statistics that match
    their weights (`tlkit.bn.recalibrate`).

    Returns:
        `FitResult(model, history, info)`; history holds per-epoch lists (`loss`, `accuracy`,
        `val_loss`, `val_accuracy`, `phase`), info the phase timings and cache decisions.
    """
    if len(dataset.x_train) == 0 or len(dataset.x_val) == 0:
        raise TlkitError("The training and validation splits must not be empty.")
    if augment_passes < 1:
        raise TlkitError(f"augment_passes must be >= 1. Received: {augment_passes}.")
    keras.utils.set_random_seed(seed)
    if epochs is not None and len(plan.phases) == 1:
        plan.phases[0] = dataclasses.replace(plan.phases[0], epochs=epochs)
    aug = data_lib.augmentation() if augment is True else (augment or None)
    if model is None:
        model = plan.build_model(dataset.num_classes)
    records = []  # one per epoch of the run, every phase (tlkit.callbacks.EpochRecorder)
    info = {"phases": [], "cache": None}
    for i, phase in enumerate(plan.phases):
        plan.apply(model, phase)
        done = run.finished_phase(i) if run is not None else None
        if done is not None:  # a resumed run: this phase finished before the interruption
            weights, saved = done
            model.load_weights(weights)
            records.extend(saved["records"])
            info["phases"].append({**saved["info"], "resumed": "finished before"})
            info["cache"] = info["cache"] or saved["info"].get("cache")
            continue
        state = run.phase_dir(i) if run is not None else None
        before = _phase_records(state)
        offset = len(records)
        records.extend(before)
        if before and verbose:
            print(f"tlkit: resuming phase {phase.name!r} after epoch {len(before)} "
                  f"(state in {state})")
        cbs = make_callbacks(out_dir, i, phase, records, patience=patience,
                             tensorboard=tensorboard, extra=callbacks, state=state,
                             offset=offset)
        started = time.perf_counter()
        options = dict(batch_size=batch_size, seed=seed, verbose=verbose, autotune=autotune,
                       jit_compile=jit_compile, cache_dir=cache_dir,
                       cache_memory_limit=cache_memory_limit, out_dir=out_dir, run=run)
        split = _cache_split(model, plan, phase, dataset, aug, cache_features, strategy,
                             options)
        if split is not None:
            cache_info = _fit_cached(split, plan, phase, dataset, aug, augment_passes, cbs,
                                     options)
            info["cache"] = info["cache"] or cache_info  # the first (head) phase's
        else:
            cache_info = None
            info.update(_fit_images(model, plan, phase, dataset, aug, strategy, image_cache,
                                    cbs, options))
        phase_info = {"name": phase.name,
                      "epochs_run": sum(r["phase"] == phase.name for r in records),
                      "cached": split is not None, "cache": cache_info,
                      "seconds": round(time.perf_counter() - started, 3)}
        if before:
            phase_info["resumed"] = f"after epoch {len(before)}"
        info["phases"].append(phase_info)
        if run is not None:
            run.finish_phase(i, model, {"records": [r for r in records
                                                    if r["phase"] == phase.name],
                                        "info": phase_info})
    info["bn_recalibration"] = bn_lib.recalibrate(model, dataset, batch_size=batch_size,
                                                  strategy=strategy, verbose=verbose)
    # Leave the model compiled for the last phase, ready for evaluate() or more training.
    with strategy.scope() if strategy else contextlib.nullcontext():
        compile_phase(model, plan, plan.phases[-1], jit_compile)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    from tlkit.callbacks import history_of

    return FitResult(model, history_of(records), info)


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


def _cache_split(model, plan, phase, dataset, aug, cache_features, strategy, o):
    """(extractor, trainer) when this phase can train on a cached frozen part, else None."""
    if not cache_features or strategy is not None or plan.bn_training:
        return None
    if not phase.train_stages:
        if feature_cut(model) is None:
            return None
        if aug is not None and o["verbose"]:
            print("tlkit: feature cache on: the head phase trains on un-augmented features "
                  "(augment_passes=K caches K-1 augmented copies too; cache_features=False "
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
        if cut_bytes > o["cache_memory_limit"] and not (o["cache_dir"] or o["out_dir"]):
            if o["verbose"]:
                print(f"tlkit: phase {phase.name!r} trains without a feature cache: the "
                      f"frozen stages' output ({cut_bytes / 2**30:.1f} GiB) exceeds the "
                      f"memory limit and there is no output folder to hold it")
            return None
    return split


def _fit_cached(split, plan, phase, dataset, aug, augment_passes, cbs, o):
    """Train `phase` on the cached output of the frozen part; returns the cache facts."""
    extractor, trainer = split
    passes = augment_passes if aug is not None and not phase.train_stages else 1
    batch_size, verbose = o["batch_size"], o["verbose"]
    if verbose:
        what = ("the frozen base" if not phase.train_stages else
                f"the frozen layers below {trainer.layers[1].layers[1].name!r}")
        print(f"tlkit: phase {phase.name!r}: computing the output of {what} once "
              f"(feature cache) for {len(dataset.x_train):,} training + "
              f"{len(dataset.x_val):,} validation images")
    t0 = time.perf_counter()
    run, cache_dir, out_dir = o["run"], o["cache_dir"], o["out_dir"]
    where = cache_dir or (run.feature_dir() if run is not None else
                          pathlib.Path(out_dir) / "feature_cache" if out_dir else None)
    kw = dict(cache_dir=where, memory_limit=o["cache_memory_limit"], batch_size=batch_size,
              verbose=verbose, autotune=o["autotune"],
              persist=cache_dir is not None or run is not None)
    f_train, c_train = feature_cache.get(extractor, dataset.x_train, labels=dataset.y_train,
                                         name="train", augment=aug, passes=passes,
                                         seed=o["seed"], **kw)
    f_val, c_val = feature_cache.get(extractor, dataset.x_val, labels=dataset.y_val,
                                     name="val", **kw)
    y_train, y_val = c_train.pop("labels"), c_val.pop("labels")
    _warn_failed(dataset, verbose)
    cache_info = {"phase": phase.name, "passes": passes, "train_features": list(f_train.shape),
                  "train": c_train, "val": c_val, "seconds": round(time.perf_counter() - t0, 3)}
    steps = -(-len(y_train) // batch_size)
    # One compiled call per epoch (steps_per_execution): on cached features a step is so
    # cheap that Keras's per-step Python overhead would dominate the head's epochs.
    # Callbacks see batch hooks once per epoch; epoch hooks as usual.
    compile_phase(trainer, plan, phase, o["jit_compile"], steps_per_execution=steps)
    if isinstance(f_train, np.memmap) or isinstance(f_val, np.memmap):
        train_data = feature_cache.FeatureBatches(f_train, y_train, batch_size, seed=o["seed"])
        val_data = feature_cache.FeatureBatches(f_val, y_val, batch_size, shuffle=False)
    else:
        train_data = feature_cache.as_dataset(f_train, y_train, batch_size, shuffle=True,
                                              seed=o["seed"])
        val_data = feature_cache.as_dataset(f_val, y_val, batch_size)
    with bn_lib.suited_momentum(trainer, steps):
        trainer.fit(train_data, validation_data=val_data, epochs=phase.epochs, callbacks=cbs,
                    verbose=verbose, shuffle=False)  # the data shuffles
    del f_train, f_val, train_data, val_data
    if cache_dir is None and run is None:  # spilled to out_dir for lack of memory: not kept
        for c in (c_train, c_val):
            if c.get("where") == "disk":
                pathlib.Path(c["path"]).unlink(missing_ok=True)
                pathlib.Path(c["labels_path"]).unlink(missing_ok=True)
    return cache_info


def _fit_images(model, plan, phase, dataset, aug, strategy, image_cache, cbs, o):
    """Train `phase` on images, streamed; returns facts for the run's info (the shard)."""
    batch_size, out_dir = o["batch_size"], o["out_dir"]
    with strategy.scope() if strategy else contextlib.nullcontext():
        compile_phase(model, plan, phase, o["jit_compile"])
    # Each worker decodes only its own training files; validation (small) keeps tf.data's
    # auto-sharding, which splits its batches evenly across workers.
    shard = worker_shard(strategy)
    caches = {name: (image_cache_prefix(image_cache, x)
                     if image_cache and data_lib.is_files(x) else False)
              for name, x in (("train", dataset.x_train), ("val", dataset.x_val))}
    train_ds = dataset.pipeline("train", batch_size=batch_size, shuffle=True, augment=aug,
                                seed=o["seed"], autotune=o["autotune"], shard=shard,
                                cache=caches["train"])
    val_ds = dataset.pipeline("val", batch_size=batch_size, autotune=o["autotune"],
                              cache=caches["val"])
    facts = {}
    if shard is not None and data_lib.is_files(dataset.x_train):
        from tlkit.data.files import shard_positions

        mine = list(dataset.x_train.paths[shard_positions(len(dataset.x_train), shard)])
        facts["shard"] = {"workers": shard[0], "index": shard[1], "train_files": len(mine)}
        if out_dir is not None:  # which files this worker read, for the record
            fileio.write_json({**facts["shard"], "paths": mine},
                              pathlib.Path(out_dir) / f"shard-{shard[1]}.json")
    steps = -(-len(dataset.y_train) // (batch_size * (shard[0] if shard else 1)))
    with bn_lib.suited_momentum(model, steps):
        model.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, callbacks=cbs,
                  verbose=o["verbose"], shuffle=False)  # tf.data shuffles
    _warn_failed(dataset, o["verbose"])
    return facts


def _warn_failed(dataset, verbose):
    """Record (and say) which files failed to decode in the pass that just ended."""
    failed = dataset.note_failed() if hasattr(dataset, "note_failed") else []
    if failed:
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        import warnings

        warnings.warn(f"Skipped {len(failed)} file(s) that could not be decoded during "
                      f"training (changed or corrupt since the scan): {shown}", stacklevel=3)
