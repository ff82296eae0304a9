"""The frozen base's features, computed once: in memory when they fit, on disk when not.

A cache entry is named by a content key: a hash of the images, the extractor's weights and
architecture (backbone, weights, input size, cut), the augmentation passes and their seed. A
file with the same key is reused (a second run on the same data and backbone skips the
forward pass); a file from different data or weights has a different key and is never read.
Files are written to a temporary name and renamed, so a crash never leaves a half-written
entry that a later run would trust.

Example:
    >>> import numpy as np
    >>> from tlkit.training import feature_cache
    >>> k1 = feature_cache.content_key(np.zeros((2, 4, 4, 3), "uint8"), "abc", passes=1)
    >>> k1 == feature_cache.content_key(np.ones((2, 4, 4, 3), "uint8"), "abc", passes=1)
    False
"""

import hashlib
import json
import os
import pathlib

import keras
import numpy as np

from tlkit import data as data_lib
from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.training import precision

DEFAULT_MEMORY_LIMIT = 2 * 2**30  # bytes of features kept in memory before going to disk


def model_fingerprint(model):
    """A hash of a model's architecture and weights (what makes its features what they are)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for w in model.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


def content_key(x, fingerprint, *, passes=1, seed=0, augment=None):
    """The cache key of features of images `x` from an extractor with `fingerprint`.

    Arrays are hashed by their bytes; image files (`tlkit.data.ImageFiles`) by their paths,
    sizes and mtimes and the decoding settings (`ImageFiles.fingerprint`), so that a file
    that changes changes the key without the cache reading every image to find out.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(x.shape), str(x.dtype), passes, seed)).encode())
    if data_lib.is_files(x):
        h.update(x.fingerprint().encode())
    else:
        h.update(np.ascontiguousarray(x).tobytes())
    h.update(fingerprint.encode())
    if augment is not None and passes > 1:
        h.update(json.dumps(augment.get_config(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def compute(extractor, x, *, labels=None, batch_size=32, augment=None, passes=1, seed=0,
            verbose=1, autotune=None, out=None):
    """Run `extractor` over `x` `passes` times (pass 0 un-augmented) with a progress bar.

    Features are written batch by batch; images stream from disk when `x` is files.

    Args:
        labels: the labels of `x`; with them the result is `(features, labels)`, the labels
            of the rows actually computed (a file that fails to decode has no row).
        out: None to return an in-memory array, or a writable array (e.g. a `np.memmap`) of
            shape (passes * N, features) to fill batch by batch.

    Returns:
        The features (passes * M rows, M = N less failed files), or `(features, labels)`.
    """
    n = len(x)
    feat_shape = tuple(extractor.output.shape[1:])
    if out is None:
        out = np.empty((passes * n, *feat_shape), "float32")
    # verbose 2 (not a terminal): one line when the pass ends, as Keras does for epochs
    bar = keras.utils.Progbar(passes * n, unit_name="image", verbose=verbose) if verbose else None
    row, got = 0, []
    y = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64)
    for p in range(passes):
        ds = data_lib.pipeline(x, y, batch_size=batch_size, augment=augment if p else None,
                               seed=seed + p, autotune=autotune)
        for batch, batch_labels in data_lib.model_batches(ds):
            # predict_on_batch runs Keras's compiled predict step: calling the model eagerly
            # per batch costs 2.5x the forward pass itself (measured on the demo VGG base).
            f = extractor.predict_on_batch(batch)
            out[row:row + len(f)] = f
            got.append(np.asarray(batch_labels))
            row += len(f)
            if bar:
                bar.update(row)
    if row < len(out):  # files that failed to decode: no row
        out = out[:row]
    if labels is None:
        return out
    return out, (np.concatenate(got) if got else np.zeros(0, np.int64))


def get(extractor, x, *, labels=None, cache_dir=None, memory_limit=DEFAULT_MEMORY_LIMIT,
        name="features", batch_size=32, augment=None, passes=1, seed=0, verbose=1,
        autotune=None, persist=True):
    """Features of `x`, from the disk cache when an entry with the same key exists.

    Args:
        extractor: the frozen model (images -> features).
        x: uint8 images, or image files (`tlkit.data.ImageFiles`), streamed.
        labels: labels of `x`; with them `info["labels"]` holds the labels of the rows (the
            same as `labels`, repeated per pass, unless some file failed to decode).
        cache_dir: folder for cache files. Without it, features stay in memory (an error if
            they would exceed `memory_limit`, naming the size and asking for a folder).
        memory_limit: features larger than this many bytes go to `cache_dir` as a memory-mapped
            `.npy` file instead of memory.
        name: file name part (`train`, `val`).
        persist: also write features that fit in memory to `cache_dir`, for reuse by a later
            run. With False the folder is used only for features over `memory_limit`.

    Returns:
        `(features, info)`: an array (possibly a read-only `np.memmap`) and a dict saying where
        it came from (`"memory"`, `"disk"`, or `"reused"`) and its key.
    """
    # Features are computed in float32 whatever policy the run trains under: computed once,
    # they gain little from bfloat16, and so they are the same, and reusable (advise's pass,
    # --cache-dir), whichever precision a run chooses.
    extractor = precision.to_float32(extractor)
    feat_shape = tuple(extractor.output.shape[1:])
    nbytes = passes * len(x) * int(np.prod(feat_shape)) * 4
    given = labels is not None
    y = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels, np.int64)
    run = dict(labels=y, batch_size=batch_size, augment=augment, passes=passes, seed=seed,
               verbose=verbose, autotune=autotune)

    def result(feats, rows, info):
        if given:
            info["labels"] = rows
        return feats, info

    if cache_dir is not None and not persist and nbytes <= memory_limit:
        cache_dir = None
    if cache_dir is None:
        if nbytes > memory_limit:
            raise TlkitError(f"The cached features would take {nbytes / 2**30:.1f} GiB, more "
                             f"than the {memory_limit / 2**30:.1f} GiB memory limit: give a "
                             f"cache folder (an output folder) or use --no-cache.")
        feats, rows = compute(extractor, x, **run)
        return result(feats, rows, {"where": "memory"})
    cache_dir = pathlib.Path(cache_dir)
    if not _writable(cache_dir):
        if nbytes > memory_limit:
            raise TlkitError(f"Feature cache folder {cache_dir} cannot be written, and the "
                             f"features ({nbytes / 2**30:.1f} GiB) do not fit in memory: "
                             f"give a writable --cache-dir.")
        print(f"tlkit: feature cache folder {cache_dir} cannot be written; keeping the "
              f"features in memory")
        return get(extractor, x, labels=labels, cache_dir=None, memory_limit=memory_limit,
                   name=name, batch_size=batch_size, augment=augment, passes=passes,
                   seed=seed, verbose=verbose, autotune=autotune)
    key = content_key(x, model_fingerprint(extractor), passes=passes, seed=seed, augment=augment)
    path = cache_dir / f"{name}-{key[:20]}.npy"
    label_path = path.with_suffix(".labels.npy")
    if path.is_file() and label_path.is_file():
        return result(np.load(path, mmap_mode="r"), np.load(label_path),
                      {"where": "reused", "key": key, "path": str(path)})
    if nbytes <= memory_limit:
        feats, rows = compute(extractor, x, **run)
        _write_atomic(label_path, lambda tmp: np.save(tmp, rows))
        _write_atomic(path, lambda tmp: np.save(tmp, feats))
        return result(feats, rows, {"where": "memory", "key": key, "path": str(path)})

    got = {}

    def fill(tmp):
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype="float32",
                                       shape=(passes * len(x), *feat_shape))
        feats, got["rows"] = compute(extractor, x, out=mm, **run)
        if len(feats) < len(mm):  # some files failed to decode: keep only the rows computed
            np.save(tmp + ".short.npy", np.asarray(feats))
            del feats, mm
            os.replace(tmp + ".short.npy", tmp)
            return
        mm.flush()
        del mm, feats

    _write_atomic(path, fill)
    _write_atomic(label_path, lambda tmp: np.save(tmp, got["rows"]))
    return result(np.load(path, mmap_mode="r"), got["rows"],
                  {"where": "disk", "key": key, "path": str(path),
                   "labels_path": str(label_path)})


def store(extractor, x, features, labels, cache_dir, *, name="features", passes=1, seed=0):
    """Put features computed elsewhere (e.g. by `tlkit.advise`) into the cache.

    They go under the key `get` looks up for the same extractor, images, passes and seed, so
    a later `get` reuses them instead of running the extractor. Returns the path.
    """
    key = content_key(x, model_fingerprint(extractor), passes=passes, seed=seed)
    path = pathlib.Path(cache_dir) / f"{name}-{key[:20]}.npy"
    _write_atomic(path.with_suffix(".labels.npy"),
                  lambda tmp: np.save(tmp, np.asarray(labels, np.int64)))
    _write_atomic(path, lambda tmp: np.save(tmp, np.asarray(features, "float32")))
    return path


def _writable(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _write_atomic(path, write):
    with fileio.atomic_path(path, suffix=".npy") as tmp:  # np.save keeps a name ending .npy
        write(tmp)


def as_dataset(features, labels, batch_size=32, *, shuffle=False, seed=0, repeat=False):
    """In-memory features and labels as a batched `tf.data.Dataset` (reshuffled each epoch;
    `repeat`: endlessly, for `fit(steps_per_epoch=...)`).

    Keras's own adapter for NumPy arrays costs about a third more per epoch for a small head
    on cached features (it re-slices the arrays every epoch); the arrays become tensors once.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, np.asarray(labels)))
    if shuffle:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    return (ds.repeat() if repeat else ds).prefetch(2)


class FeatureBatches(keras.utils.PyDataset):
    """Shuffled batches of (features, labels) read from a (memory-mapped) array.

    Keras would copy a whole memmap into a tensor; this reads one batch at a time, so features
    larger than memory train from disk.
    """

    def __init__(self, features, labels, batch_size=32, shuffle=True, seed=0):
        super().__init__()
        self.features, self.labels = features, np.asarray(labels)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(self.labels))
        self.on_epoch_end()

    def __len__(self):
        return int(np.ceil(len(self.labels) / self.batch_size))

    def __getitem__(self, i):
        idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        return np.asarray(self.features[idx]), self.labels[idx]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


def sample(features, labels, passes, limit, seed=0):
    """A copy of at most `limit` un-augmented rows of cached `features` and their `labels`
    (a seeded choice among pass 0's rows, which come first), e.g. for calibration."""
    n0 = len(labels) // max(passes, 1)
    keep = np.arange(n0)
    if n0 > limit:
        keep = np.sort(np.random.default_rng(seed).choice(n0, limit, replace=False))
    return np.array(features[keep]), np.asarray(labels)[keep]
