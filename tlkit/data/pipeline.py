"""tf.data pipelines over images in memory or on disk, augmentation, and streamed prediction.

`pipeline(x, y)` takes either a uint8 array (N, H, W, C) or an `ImageFiles` (files decoded in
parallel as they are read) and gives batches of (float32 images 0..255, int64 labels); tlkit
models normalise inside the graph, so nothing here rescales pixels.

Example:
    >>> import numpy as np
    >>> from tlkit.data import pipeline
    >>> ds = pipeline(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10), batch_size=4,
    ...               shuffle=True, autotune=False)
    >>> [int(b.shape[0]) for b, _ in ds]
    [4, 4, 2]
"""

import numbers
import os

import keras
import numpy as np

from tlkit.core.errors import TlkitError, check_choice
from tlkit.data.files import is_files

FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", None)
AUTOTUNE_MIN_CPUS = 5  # tf.data autotuning by default only on machines with more cores
IMAGE_CACHE_SHUFFLE_BUFFER = 1024  # decoded images held to shuffle a cached stream


def augmentation(flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.0, *, seed=None):
    """Keras preprocessing layers for training-time augmentation, or None when all are off.

    The layers work on float 0..255 images and are active only when called with
    `training=True` (as `pipeline(augment=...)` does, or inside `model.fit`).

    Args:
        flip: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"` or None.
        rotation: RandomRotation factor (fraction of a full turn, 0.1 = up to +-36 degrees).
        zoom: RandomZoom factor (0.1 = up to +-10%), below 1.
        contrast: RandomContrast factor, 0..1.
        seed: seed of the first layer (the next ones get seed + 1, ...); None is unseeded.

    Returns:
        A `keras.Sequential` named "augmentation", or None.

    Example:
        >>> [layer.name for layer in augmentation(contrast=0.2).layers]
        ['aug_flip', 'aug_rotation', 'aug_zoom', 'aug_contrast']
    """
    flip = None if flip in (False, "none") else flip
    check_choice("flip", flip, FLIPS)
    limits = {"rotation": (">= 0", lambda v: v >= 0), "zoom": ("in [0, 1)", lambda v: 0 <= v < 1),
              "contrast": ("in [0, 1]", lambda v: 0 <= v <= 1)}
    for arg, value in (("rotation", rotation), ("zoom", zoom), ("contrast", contrast)):
        text, ok = limits[arg]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
            raise TlkitError(f"Augmentation {arg} must be a number {text}. "
                             f"Received: {arg}={value!r}.")
    seeds = iter(range(seed, seed + 4)) if seed is not None else iter([None] * 4)
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=next(seeds), name="aug_flip"))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=next(seeds), name="aug_rotation"))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, seed=next(seeds), name="aug_zoom"))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=next(seeds),
                                                  name="aug_contrast"))
    return keras.Sequential(layers, name="augmentation") if layers else None


def model_batches(ds):
    """Iterate a tf.data dataset as the Keras backend's models take its batches: TensorFlow
    tensors on the TensorFlow backend (no copy), NumPy arrays on the others (JAX's compiled
    steps take no `tf.Tensor`; Keras's own `fit` converts tf.data the same way).

    Example:
        >>> import tensorflow as tf
        >>> [np.asarray(b).tolist() for b in model_batches(tf.data.Dataset.range(4).batch(2))]
        [[0, 1], [2, 3]]
    """
    return iter(ds) if keras.backend.backend() == "tensorflow" else ds.as_numpy_iterator()


def default_autotune():
    """Whether tf.data autotuning is on by default here: with more than 4 CPU cores.

    On 2 cores autotuning sometimes stalls ~20 s between epochs, and with a fixed prefetch a
    whole fine-tuning run was 1.1-1.3x faster (bench/bench_options.py). Decoding files still
    runs one call per core in parallel with autotuning off.
    """
    return (os.cpu_count() or 1) >= AUTOTUNE_MIN_CPUS


def pipeline(x, y, *, batch_size=32, shuffle=False, augment=None, seed=0, cache=False,
             autotune=None, prefetch=2, drop_remainder=False, shard=None):
    """A batched `tf.data.Dataset` of (float32 images 0..255, int64 labels).

    Arrays: from_tensor_slices -> [cache] -> [shuffle] -> batch -> cast (+ augment) ->
    prefetch. Files (`ImageFiles`): [shard] -> [shuffle the names] -> parallel decode and
    resize (files that fail are skipped and recorded) -> [cache] -> batch -> cast (+ augment)
    -> prefetch; decoded pixels never pile up beyond the prefetch depth.

    Args:
        x: uint8 images (N, H, W, C), or an `ImageFiles`.
        y: labels (N,), or None for a dataset of images only (prediction).
        batch_size: images per batch.
        shuffle: shuffle the whole set, seeded, in a new order every epoch (training). Over
            a file cache, the cached stream is shuffled in a buffer of
            `IMAGE_CACHE_SHUFFLE_BUFFER` images (the first pass is fully shuffled).
        augment: a Keras layer/model called with `training=True` on every batch (e.g. from
            `augmentation()`); True means `augmentation()`; None or False: no augmentation.
        seed: shuffle seed.
        cache: True caches the elements in memory; a string caches decoded, resized images
            to that file prefix (reused by later epochs and runs; name it after the content,
            e.g. with `ImageFiles.fingerprint()`).
        autotune: True for tf.data autotuning; False turns it off and uses a fixed `prefetch`
            depth (avoids the ~20 s stalls between epochs autotune sometimes causes on 2-core
            machines); None (default): `default_autotune()`, on with 5 or more CPU cores.
        prefetch: batches prefetched when autotune is off (0: none).
        drop_remainder: drop the last, smaller batch.
        shard: (num_shards, index): this worker's share of the files, taken before decoding
            (multi-worker training); auto-sharding is then turned off. Arrays ignore it.

    Returns:
        A `tf.data.Dataset`.
    """
    import tensorflow as tf

    if augment is True:
        augment = augmentation()
    elif augment is False:
        augment = None
    if augment is not None and not callable(augment):
        raise TlkitError(f"augment must be a Keras layer, True, False or None. "
                         f"Received: augment={augment!r}.")
    if not _is_int(batch_size) or batch_size < 1:
        raise TlkitError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}.")
    if not _is_int(prefetch) or prefetch < 0:
        raise TlkitError(f"prefetch must be an int >= 0. Received: prefetch={prefetch!r}.")
    if autotune is None:
        autotune = default_autotune()
    files = is_files(x)
    if not files:
        x = np.asarray(x)
    if y is not None:
        y = np.asarray(y, dtype=np.int64)
        if len(y) != len(x):
            raise TlkitError(f"x and y differ in length: {len(x)} images, {len(y)} labels.")
    if files:
        parallel = None if autotune else max(1, os.cpu_count() or 1)
        # Batched where the files are decoded, so that arrivals are recorded per batch; over
        # a file cache the cache holds single images (shuffled in a buffer, batched after).
        ds = x.as_dataset(y, shuffle=shuffle and not cache, seed=seed, shard=shard,
                          parallel=parallel, batch_size=None if cache else batch_size,
                          drop_remainder=drop_remainder)
        if cache:
            ds = ds.cache(cache if isinstance(cache, str) else "")
            if shuffle:
                ds = ds.shuffle(IMAGE_CACHE_SHUFFLE_BUFFER, seed=seed,
                                reshuffle_each_iteration=True)
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
        if cache:
            ds = ds.cache(cache if isinstance(cache, str) else "")
        if shuffle:
            ds = ds.shuffle(max(len(x), 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    # A Sequential is applied layer by layer: Keras's preprocessing layers run on TensorFlow
    # inside tf.data whatever the Keras backend, but a Sequential around them converts its
    # inputs to the backend's tensors first, which fails in a tf.data graph under JAX.
    steps = list(augment.layers) if isinstance(augment, keras.Sequential) else \
        [augment] if augment is not None else []

    def prepare(images, *labels):
        images = tf.cast(images, tf.float32)
        for layer in steps:
            images = layer(images, training=True)
        return (images, *labels) if labels else images

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE if autotune else None)
    options = tf.data.Options()
    if files and shard is not None:
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.OFF  # already sharded by file, above
    if autotune:
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    options.autotune.enabled = False
    ds = ds.with_options(options)
    return ds.prefetch(prefetch) if prefetch else ds


# Prediction batches grow for small images, up to this many times the given (training) batch
# and up to INFERENCE_PIXELS pixels a batch: each prediction step costs Keras overhead, which
# at 28x28 px and batch 16 was most of a small run's report (cProfile of a demo run, 5,000 test
# and 50 validation images: 2.0 s -> 1.25 s at batch 128). Inference needs no gradients, and BN
# runs in inference mode, so the batch does not change a prediction; large images keep the
# given batch (their memory).
INFERENCE_MAX_FACTOR = 8
INFERENCE_PIXELS = 128 * 96 * 96


def inference_batch_size(batch_size, input_shape):
    """The batch to predict with: `batch_size`, grown for small images (see above).

    `input_shape` None (a wrapper such as `tlkit.evaluation.tta.TTAModel`, whose views multiply the
    batch) keeps `batch_size`.

    Example:
        >>> inference_batch_size(16, (None, 28, 28, 1)), inference_batch_size(32, (224, 224, 3))
        (128, 32)
    """
    if input_shape is None:
        return batch_size
    dims = [d for d in tuple(input_shape)[-3:-1] if d]
    if len(dims) != 2:
        return batch_size
    pixels = dims[0] * dims[1]
    grown = min(batch_size * INFERENCE_MAX_FACTOR, max(INFERENCE_PIXELS // pixels, 1))
    return max(batch_size, grown)


def predict_labelled(model, x, y, *, batch_size=64, verbose=0, autotune=None):
    """Probabilities of `model` on images `x`, with the labels of the images that were read.

    With files, an image that fails to decode is skipped, so the returned labels (not `y`)
    are the ones that match the probabilities row by row.

    `batch_size` is the training batch; the prediction batch grows from it for small images
    (`inference_batch_size` of the model's input shape).

    Returns:
        `(probs (M, classes), labels (M,))`, M = N less the files that failed; for a model
        of several outputs, a list of arrays in place of `probs`.
    """
    batch_size = inference_batch_size(batch_size, getattr(model, "input_shape", None))
    ds = pipeline(x, y, batch_size=batch_size, autotune=autotune)
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and type(strategy).__name__ != "_DefaultDistributionStrategy":
        # Under tf.distribute, predict_on_batch gathers every worker's batch; Keras's predict
        # shards and gathers correctly. The labels then take a second (label-only) pass.
        probs = model.predict(pipeline(x, None, batch_size=batch_size, autotune=autotune),
                              verbose=verbose)
        return probs, np.concatenate([np.asarray(b) for _, b in model_batches(ds)])
    bar = (keras.utils.Progbar(len(x), unit_name="image", verbose=verbose)  # 2: one line
           if verbose else None)
    probs, labels, done = [], [], 0
    for images, batch_labels in model_batches(ds):
        # predict_on_batch runs Keras's compiled predict step (an eager call per batch costs
        # several times more); labels come from the same batch, so skipped files stay aligned.
        out = model.predict_on_batch(images)
        probs.append([np.asarray(o) for o in out] if isinstance(out, (list, tuple))
                     else np.asarray(out))
        labels.append(np.asarray(batch_labels))
        done += len(labels[-1])
        if bar:
            bar.update(done)
    if not probs:
        if isinstance(model.output_shape, list):  # a model of several outputs
            return ([np.zeros((0, *s[1:]), "float32") for s in model.output_shape],
                    np.zeros((0,), np.int64))
        n_out = model.output_shape[-1]
        return np.zeros((0, n_out), "float32"), np.zeros((0,), np.int64)
    if isinstance(probs[0], list):  # one array per output
        return [np.concatenate(parts) for parts in zip(*probs)], np.concatenate(labels)
    return np.concatenate(probs), np.concatenate(labels)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
