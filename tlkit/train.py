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
from tlkit import feature_cache, fileio
from tlkit.errors import TlkitError

CACHE_CUT_LAYERS = ("head_pool", "head_flatten")


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


def make_callbacks(out_dir, phase_index, *, patience=5, tensorboard=False, extra=()):
    """EarlyStopping (restore best), TerminateOnNaN, CSVLogger, ModelCheckpoint, TensorBoard."""
    cbs = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True, verbose=0),
           keras.callbacks.TerminateOnNaN()]
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        cbs.append(keras.callbacks.CSVLogger(str(out_dir / "history.csv"),
                                             append=phase_index > 0))
        cbs.append(keras.callbacks.ModelCheckpoint(
            str(out_dir / "checkpoints" / f"phase{phase_index + 1}.weights.h5"),
            monitor="val_loss", save_best_only=True, save_weights_only=True, verbose=0))
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard")))
    return cbs + list(extra)


def feature_cut(model):
    """The head layer whose input is the cacheable base output (`head_pool`/`head_flatten`)."""
    for name in CACHE_CUT_LAYERS:
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    return None


def head_model(model):
    """A model from the cached features to the predictions, sharing the head's layers."""
    cut = feature_cut(model)
    layers = model.layers[model.layers.index(cut) + 1:]
    inputs = keras.Input(tuple(cut.output.shape[1:]), name="features")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def _nested_base(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    return None


def frozen_prefix_split(model):
    """Split `model` where its frozen lower part ends, for caching that part's output.

    Returns `(extractor, trainer)` sharing `model`'s layers, or None when there is no such cut:
    `extractor` maps images to the input of the lowest base layer that has trainable weights
    (everything below it is frozen, BatchNormalization in inference mode); `trainer` maps that
    tensor to the predictions, so `trainer(extractor(x)) == model(x)`. The cut must be a single
    tensor that everything above depends on (a stage boundary of a ResNet is; a point inside a
    residual block is not, and Keras refuses the graph); otherwise None.
    """
    base = _nested_base(model)
    if base is None or isinstance(base, keras.Sequential):
        return None
    first = next((layer for layer in base.layers if layer.trainable_weights), None)
    if first is None or first.name == base.layers[0].name:
        return None
    cut = first.input
    if isinstance(cut, (list, tuple, dict)):
        return None
    try:
        prefix = keras.Model(base.inputs, cut, name="frozen_prefix")
        suffix = keras.Model(cut, base.output, name=f"{base.name}_trainable")
    except ValueError:  # the layers above the cut also read something below it
        return None
    if prefix.trainable_weights or len(prefix.layers) <= 2:
        return None  # nothing frozen worth caching (the input and preprocessing only)
    inputs = keras.Input(tuple(cut.shape[1:]), name="frozen_features")
    x = suffix(inputs, training=False)
    for layer in model.layers[model.layers.index(base) + 1:]:
        x = layer(x)
    return prefix, keras.Model(inputs, x, name="trainer")


def feature_extractor(model):
    """The frozen part of `model`: image -> pooled base output (the cache's content)."""
    return keras.Model(model.inputs, feature_cut(model).output, name="feature_extractor")


def extract_features(model, x, *, labels=None, batch_size=32, augment=None, passes=1, seed=0,
                     verbose=1, autotune=None):
    """Run the frozen part of `model` (input -> pooled base output) over images `x`.

    Returns an array of shape (passes * N, features); pass 0 is un-augmented, later passes use
    `augment`. With `labels`, returns `(features, labels of the rows)`: image files that fail
    to decode have no row.
    """
    return feature_cache.compute(feature_extractor(model), x, labels=labels,
                                 batch_size=batch_size, augment=augment, passes=passes,
                                 seed=seed, verbose=verbose, autotune=autotune)


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
        image_cache=None, verbose=1):
    """Train a model with `plan` on `dataset`, phase by phase.

    Args:
        plan: a `tlkit.strategies.Plan`.
        dataset: a `tlkit.data.Dataset` at the backbone's input size and channels.
        epochs: ignored unless given: then it replaces the epochs of a single-phase plan.
        batch_size: batch size of every phase.
        callbacks: extra Keras callbacks, added to tlkit's (EarlyStopping with patience
            `patience` and restored best weights, TerminateOnNaN, CSVLogger, ModelCheckpoint).
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
        verbose: Keras verbosity (1: progress bars).

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
    history = {"phase": []}
    info = {"phases": [], "cache": None}
    for i, phase in enumerate(plan.phases):
        plan.apply(model, phase)
        frozen_base = not phase.train_stages and not plan.bn_training
        cached = (cache_features and frozen_base and feature_cut(model) is not None
                  and strategy is None)
        started = time.perf_counter()
        cbs = make_callbacks(out_dir, i, patience=patience, tensorboard=tensorboard,
                             extra=callbacks)
        split, cache_info = None, None
        if cached:
            passes = augment_passes if aug is not None else 1
            if aug is not None and passes == 1 and verbose:
                print("tlkit: feature cache on: the head phase trains on un-augmented features "
                      "(augment_passes=K caches K-1 augmented copies too; cache_features=False "
                      "augments live)")
            split = (feature_extractor(model), head_model(model))
        elif (cache_features and aug is None and strategy is None and not plan.bn_training
              and phase.train_stages):
            # Fine-tuning the upper stages: the stages below stay frozen (BN in inference
            # mode) and there is no augmentation, so their output is computed once as well.
            passes = 1
            split = frozen_prefix_split(model)
            if split is not None:
                cut_bytes = (len(dataset.x_train) + len(dataset.x_val)) * 4 * int(
                    np.prod(split[0].output.shape[1:]))
                if cut_bytes > cache_memory_limit and not (cache_dir or out_dir):
                    if verbose:
                        print(f"tlkit: phase {phase.name!r} trains without a feature cache: the "
                              f"frozen stages' output ({cut_bytes / 2**30:.1f} GiB) exceeds the "
                              f"memory limit and there is no output folder to hold it")
                    split = None
            cached = split is not None
        if cached:
            extractor, trainer = split
            if verbose:
                what = ("the frozen base" if not phase.train_stages else
                        f"the frozen layers below {trainer.layers[1].layers[1].name!r}")
                print(f"tlkit: phase {phase.name!r}: computing the output of {what} once "
                      f"(feature cache) for {len(dataset.x_train):,} training + "
                      f"{len(dataset.x_val):,} validation images")
            t0 = time.perf_counter()
            where = cache_dir or (pathlib.Path(out_dir) / "feature_cache" if out_dir else None)
            kw = dict(cache_dir=where, memory_limit=cache_memory_limit, batch_size=batch_size,
                      verbose=verbose, autotune=autotune, persist=cache_dir is not None)
            f_train, c_train = feature_cache.get(extractor, dataset.x_train,
                                                 labels=dataset.y_train, name="train",
                                                 augment=aug, passes=passes, seed=seed, **kw)
            f_val, c_val = feature_cache.get(extractor, dataset.x_val, labels=dataset.y_val,
                                             name="val", **kw)
            y_train, y_val = c_train.pop("labels"), c_val.pop("labels")
            _warn_failed(dataset, verbose)
            cache_info = {"phase": phase.name, "passes": passes,
                          "train_features": list(f_train.shape), "train": c_train,
                          "val": c_val, "seconds": round(time.perf_counter() - t0, 3)}
            info["cache"] = info["cache"] or cache_info  # the first (head) phase's
            steps = -(-len(y_train) // batch_size)
            # One compiled call per epoch (steps_per_execution): on cached features a step is
            # so cheap that Keras's per-step Python overhead would dominate the head's epochs.
            # Callbacks see batch hooks once per epoch; epoch hooks as usual.
            compile_phase(trainer, plan, phase, jit_compile, steps_per_execution=steps)
            if isinstance(f_train, np.memmap) or isinstance(f_val, np.memmap):
                train_data = feature_cache.FeatureBatches(f_train, y_train, batch_size,
                                                          seed=seed)
                val_data = feature_cache.FeatureBatches(f_val, y_val, batch_size,
                                                        shuffle=False)
            else:
                train_data = feature_cache.as_dataset(f_train, y_train, batch_size,
                                                      shuffle=True, seed=seed)
                val_data = feature_cache.as_dataset(f_val, y_val, batch_size)
            h = trainer.fit(train_data, validation_data=val_data, epochs=phase.epochs,
                            callbacks=cbs, verbose=verbose, shuffle=False)  # data shuffles
            del f_train, f_val, train_data, val_data
            if cache_dir is None:  # spilled to out_dir only for lack of memory: not kept
                for c in (c_train, c_val):
                    if c.get("where") == "disk":
                        pathlib.Path(c["path"]).unlink(missing_ok=True)
                        pathlib.Path(c["labels_path"]).unlink(missing_ok=True)
        else:
            with strategy.scope() if strategy else contextlib.nullcontext():
                compile_phase(model, plan, phase, jit_compile)
            # Each worker decodes only its own training files; validation (small) keeps
            # tf.data's auto-sharding, which splits its batches evenly across workers.
            shard = worker_shard(strategy)
            caches = {name: (image_cache_prefix(image_cache, x)
                             if image_cache and data_lib.is_files(x) else False)
                      for name, x in (("train", dataset.x_train), ("val", dataset.x_val))}
            train_ds = dataset.pipeline("train", batch_size=batch_size, shuffle=True,
                                        augment=aug, seed=seed, autotune=autotune, shard=shard,
                                        cache=caches["train"])
            val_ds = dataset.pipeline("val", batch_size=batch_size, autotune=autotune,
                                      cache=caches["val"])
            if shard is not None and data_lib.is_files(dataset.x_train):
                from tlkit.data.files import shard_positions

                mine = list(dataset.x_train.paths[shard_positions(len(dataset.x_train),
                                                                  shard)])
                info["shard"] = {"workers": shard[0], "index": shard[1],
                                 "train_files": len(mine)}
                if out_dir is not None:  # which files this worker read, for the record
                    fileio.write_json({**info["shard"], "paths": mine},
                                      pathlib.Path(out_dir) / f"shard-{shard[1]}.json")
            h = model.fit(train_ds, validation_data=val_ds, epochs=phase.epochs,
                          callbacks=cbs, verbose=verbose, shuffle=False)  # tf.data shuffles
            _warn_failed(dataset, verbose)
        n = len(h.history.get("loss", []))
        for key, values in h.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        history["phase"].extend([phase.name] * n)
        info["phases"].append({"name": phase.name, "epochs_run": n, "cached": cached,
                               "cache": cache_info if cached else None,
                               "seconds": round(time.perf_counter() - started, 3)})
    # Leave the model compiled for the last phase, ready for evaluate() or more training.
    with strategy.scope() if strategy else contextlib.nullcontext():
        compile_phase(model, plan, plan.phases[-1], jit_compile)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    return FitResult(model, history, info)


def _warn_failed(dataset, verbose):
    """Record (and say) which files failed to decode in the pass that just ended."""
    failed = dataset.note_failed() if hasattr(dataset, "note_failed") else []
    if failed:
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        import warnings

        warnings.warn(f"Skipped {len(failed)} file(s) that could not be decoded during "
                      f"training (changed or corrupt since the scan): {shown}", stacklevel=3)
