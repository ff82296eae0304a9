"""Running one phase: compiling it, and fitting it on cached features or on images.

`tlkit.train.fit` calls these for every phase of a plan; see its docstring for the feature
cache and the options.
"""

import contextlib
import pathlib
import time

import keras
import numpy as np

from tlkit import bn as bn_lib
from tlkit import data as data_lib
from tlkit import feature_cache, fileio, optimizers, schedules
from tlkit.frozen import feature_extractor, feature_cut, frozen_prefix_split, head_model


def compile_phase(model, plan, phase, jit_compile=False, steps_per_execution=1, *,
                  settings=None, steps_per_epoch=1, multipliers=None, one_hot=False):
    """Compile `model` for `phase` (called after every change of `trainable`).

    `settings` (a `tlkit.train_settings.TrainSettings`; None: a constant rate) gives the
    phase's schedule over `phase.epochs * steps_per_epoch` steps; `multipliers` the per-stage
    rates (`tlkit.optimizers.stage_multipliers`); `one_hot` compiles for soft targets
    (`tlkit.mixing`): categorical cross-entropy instead of the sparse one.

    `jit_compile` is off by default: on a 2-core CPU XLA compilation costs more than it saves
    for short runs (bench/ measures it); pass True or "auto" to try it.
    """
    lr = phase.learning_rate
    if settings is not None:
        lr = schedules.for_phase(settings.schedule, lr, epochs=phase.epochs,
                                 steps_per_epoch=steps_per_epoch,
                                 fine_tuning=bool(phase.train_stages), warmup=settings.warmup)
    optimizer = optimizers.make(lr, weight_decay=plan.weight_decay, multipliers=multipliers)
    # Loss and metric as objects: a short string alias may not deserialize from .h5.
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy()
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric], jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    # Build the optimizer's variables now: created inside the first traced train step they
    # make TensorFlow trace that step twice (and BackupAndRestore needs them to restore).
    model.optimizer.build(model.trainable_variables)


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
    if o["settings"].cutmix:
        if o["verbose"]:
            print(f"tlkit: phase {phase.name!r} trains on images (no feature cache): --cutmix "
                  f"pastes image boxes")
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


def fit_cached(split, plan, phase, dataset, aug, augment_passes, cbs, o):
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
    warn_failed(dataset, verbose)
    cache_info = {"phase": phase.name, "passes": passes, "train_features": list(f_train.shape),
                  "train": c_train, "val": c_val, "seconds": round(time.perf_counter() - t0, 3)}
    steps = -(-len(y_train) // batch_size)
    # One compiled call per epoch (steps_per_execution): on cached features a step is so
    # cheap that Keras's per-step Python overhead would dominate the head's epochs.
    # Callbacks see batch hooks once per epoch; epoch hooks as usual.
    targets = o["targets"]
    compile_phase(trainer, plan, phase, o["jit_compile"], steps_per_execution=steps,
                  settings=o["settings"], steps_per_epoch=steps, multipliers=o["multipliers"],
                  one_hot=targets is not None)
    if isinstance(f_train, np.memmap) or isinstance(f_val, np.memmap):
        train_data = feature_cache.FeatureBatches(f_train, y_train, batch_size, seed=o["seed"])
        val_data = feature_cache.FeatureBatches(f_val, y_val, batch_size, shuffle=False)
    else:
        train_data = feature_cache.as_dataset(f_train, y_train, batch_size, shuffle=True,
                                              seed=o["seed"])
        val_data = feature_cache.as_dataset(f_val, y_val, batch_size)
    if targets is not None:
        train_data, val_data = targets.train(train_data), targets.val(val_data)
    with bn_lib.suited_momentum(trainer, steps):
        trainer.fit(train_data, validation_data=val_data, epochs=phase.epochs, callbacks=cbs,
                    verbose=verbose, shuffle=False,  # the data shuffles
                    class_weight=o["class_weight"])
    del f_train, f_val, train_data, val_data
    if cache_dir is None and run is None:  # spilled to out_dir for lack of memory: not kept
        for c in (c_train, c_val):
            if c.get("where") == "disk":
                pathlib.Path(c["path"]).unlink(missing_ok=True)
                pathlib.Path(c["labels_path"]).unlink(missing_ok=True)
    return cache_info


def fit_images(model, plan, phase, dataset, aug, strategy, image_cache, cbs, o):
    """Train `phase` on images, streamed; returns facts for the run's info (the shard)."""
    batch_size, out_dir, targets = o["batch_size"], o["out_dir"], o["targets"]
    shard = worker_shard(strategy)
    steps = -(-len(dataset.y_train) // (batch_size * (shard[0] if shard else 1)))
    with strategy.scope() if strategy else contextlib.nullcontext():
        compile_phase(model, plan, phase, o["jit_compile"], settings=o["settings"],
                      steps_per_epoch=steps, multipliers=o["multipliers"],
                      one_hot=targets is not None)
    # Each worker decodes only its own training files; validation (small) keeps tf.data's
    # auto-sharding, which splits its batches evenly across workers.
    caches = {name: (image_cache_prefix(image_cache, x)
                     if image_cache and data_lib.is_files(x) else False)
              for name, x in (("train", dataset.x_train), ("val", dataset.x_val))}
    train_ds = dataset.pipeline("train", batch_size=batch_size, shuffle=True, augment=aug,
                                seed=o["seed"], autotune=o["autotune"], shard=shard,
                                cache=caches["train"])
    val_ds = dataset.pipeline("val", batch_size=batch_size, autotune=o["autotune"],
                              cache=caches["val"])
    if targets is not None:  # after augmentation: mixing sees augmented images
        train_ds, val_ds = targets.train(train_ds), targets.val(val_ds)
    facts = {}
    if shard is not None and data_lib.is_files(dataset.x_train):
        from tlkit.data.files import shard_positions

        mine = list(dataset.x_train.paths[shard_positions(len(dataset.x_train), shard)])
        facts["shard"] = {"workers": shard[0], "index": shard[1], "train_files": len(mine)}
        if out_dir is not None:  # which files this worker read, for the record
            fileio.write_json({**facts["shard"], "paths": mine},
                              pathlib.Path(out_dir) / f"shard-{shard[1]}.json")
    with bn_lib.suited_momentum(model, steps):
        model.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, callbacks=cbs,
                  verbose=o["verbose"], shuffle=False,  # tf.data shuffles
                  class_weight=o["class_weight"])
    warn_failed(dataset, o["verbose"])
    return facts


def warn_failed(dataset, verbose):
    """Record (and say) which files failed to decode in the pass that just ended."""
    failed = dataset.note_failed() if hasattr(dataset, "note_failed") else []
    if failed:
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        import warnings

        warnings.warn(f"Skipped {len(failed)} file(s) that could not be decoded during "
                      f"training (changed or corrupt since the scan): {shown}", stacklevel=3)
