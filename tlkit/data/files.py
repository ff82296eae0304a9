"""`ImageFiles`: images that stay on disk and are decoded in tf.data, used like an array.

An `ImageFiles` has a length, a `shape` (N, height, width, channels) and a uint8 `dtype`, and
indexing it with positions gives another `ImageFiles`, so code written for in-memory image
arrays (splits, `select`, `pipeline`, the feature cache, `report.evaluate`) works on folders
of any size: no array of all images is ever built. `as_dataset` decodes the files in
parallel (`num_parallel_calls`), skipping any that fail to decode (`ignore_errors`) and
recording which, so that a file that turned bad after the scan costs one image, not the run
(Keras's own loader stops the epoch instead: keras-team/keras#20006).

Example:
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> paths = [os.path.join(d, f"{i}.png") for i in range(3)]
    >>> for p in paths: Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(p)
    >>> files = ImageFiles(paths, image_size=(4, 4), channels=3)
    >>> files.shape, files[[0, 2]].shape
    ((3, 4, 4, 3), (2, 4, 4, 3))
    >>> [tuple(im.shape) for im in files.as_dataset().take(1)]
    [(4, 4, 3)]
"""

import hashlib
import os

import numpy as np

from tlkit.core.errors import TlkitError
from tlkit.data import decode


class StreamedImages:
    """What streamed image sources share: an array's `shape` and `dtype`, and the record
    of which items a pass delivered (`failed()` lists the ones it expected and never got).

    Subclasses set `image_size`, `channels`, `paths` and `len()`, call
    `_start_tracking(n)`, and pass their decoded stream of `(image, [label,] item)` elements
    (or batches) through `_tracked`.
    """

    dtype = np.dtype("uint8")

    def _start_tracking(self, n):
        self._seen = np.zeros(n, bool)
        self._expected = np.zeros(n, bool)

    @property
    def shape(self):
        """(N, height, width, channels), like the array these images stand for."""
        return (len(self), *self.image_size, self.channels)

    def failed(self):
        """The items a pass expected but never delivered (they failed to decode)."""
        return [str(p) for p in self.paths[self._expected & ~self._seen]]

    def _tracked(self, ds, ids, with_ids):
        """Record the items of `ds` as they arrive: one Python call per element or batch."""
        import tensorflow as tf

        self._expected[ids] = True
        seen = self._seen

        def mark(items):
            seen[items] = True
            return np.int64(len(items))

        def tracked(image, *rest):
            *label, item = rest
            done = tf.numpy_function(mark, [tf.reshape(item, [-1])], tf.int64, stateful=True)
            with tf.control_dependencies([done]):
                image = tf.identity(image)
            return (image, *label, item) if with_ids else (image, *label) if label else image

        return ds.map(tracked)


class ImageFiles(StreamedImages):
    """Image files decoded on the fly to `image_size` x `channels` uint8 (see module doc).

    Args:
        paths: the files (strings), in item order.
        image_size: (height, width) every image is resized to.
        channels: 1 or 3.
        resize: `"squash"`, `"crop"` or `"pad"` (see `tlkit.data.decode.resize_image`).
        use_pil: per file, True where the PIL fallback decodes it (from `decode.probe`);
            None decodes every file with TensorFlow.
        stats: per file (size in bytes, mtime in ns), the part of the content key that says
            a file changed; None reads them now.
    """

    def __init__(self, paths, image_size, channels, resize=decode.DEFAULT_RESIZE, use_pil=None,
                 stats=None):
        self.paths = np.asarray([os.fspath(p) for p in paths], dtype=object)
        n = len(self.paths)
        self.image_size = tuple(int(s) for s in image_size)
        self.channels = int(channels)
        self.resize = decode.check_resize(resize)
        self.use_pil = np.zeros(n, bool) if use_pil is None else np.asarray(use_pil, bool)
        self.stats = _stats(self.paths) if stats is None else np.asarray(stats, np.int64)
        self.stats = self.stats.reshape(n, 2)
        self._start_tracking(n)

    # -- array-like --------------------------------------------------------------------------

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        index = np.arange(len(self))[index]
        if np.ndim(index) == 0:
            return decode.read_image(self.paths[index], image_size=self.image_size,
                                     channels=self.channels, resize=self.resize)
        return ImageFiles(self.paths[index], self.image_size, self.channels, self.resize,
                          self.use_pil[index], self.stats[index])

    def __repr__(self):
        return f"ImageFiles({len(self)} files, shape={self.shape})"

    def to_numpy(self):
        """Decode every file into one uint8 array (N, H, W, C): only for small sets."""
        out = np.empty(self.shape, np.uint8)
        for i in range(len(self)):
            out[i] = self[i]
        return out

    def fingerprint(self):
        """A hash of the paths, their sizes and mtimes, and the decoding settings.

        The feature cache keys on it: a file that changes (size or mtime), is added or
        removed, or a different image size, channel count or resize mode changes the key.
        Content hashes would survive a `touch` but cost a full read of every file.
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.image_size, self.channels, self.resize, len(self))).encode())
        for p in self.paths:
            h.update(p.encode("utf-8", "surrogateescape") + b"\0")
        h.update(np.ascontiguousarray(self.stats).tobytes())
        return h.hexdigest()

    # -- streaming ---------------------------------------------------------------------------

    def as_dataset(self, labels=None, *, shuffle=False, seed=0, shard=None, parallel=None,
                   with_ids=False, batch_size=None, drop_remainder=False):
        """A `tf.data.Dataset` of uint8 images, or (image, label) pairs.

        Args:
            labels: int labels (N,) travelling with their images, or None.
            shuffle: shuffle the file order (cheap: names, not pixels), anew each epoch.
            seed: shuffle seed.
            shard: (num_shards, index): keep only this shard's files, before any decoding
                (each multi-worker worker reads its own files).
            parallel: parallel decode calls (None: `tf.data.AUTOTUNE`).
            with_ids: also yield each item's position (int64) as the last element.
            batch_size: batch here (None: unbatched). Which files arrived is then recorded
                once per batch, not per image (one Python call each: per image it cost
                about a tenth of the pass's throughput).
            drop_remainder: with `batch_size`, drop the last, smaller batch.

        Files that fail to decode are skipped; after a full pass `failed()` lists them.
        """
        import tensorflow as tf

        ids = shard_positions(len(self), shard)
        # Paths as bytes: a name that is not UTF-8 (kept by Python as surrogates) still opens.
        columns = [np.array([os.fsencode(p) for p in self.paths[ids]], dtype=object),
                   self.use_pil[ids], ids]
        if labels is not None:
            labels = np.asarray(labels, np.int64)
            if len(labels) != len(self):
                raise TlkitError(f"{len(self)} image files but {len(labels)} labels.")
            columns.append(labels[ids])
        ds = tf.data.Dataset.from_tensor_slices(tuple(columns))
        if shuffle:
            ds = ds.shuffle(max(len(ids), 1), seed=seed, reshuffle_each_iteration=True)
        size, channels, mode = self.image_size, self.channels, self.resize
        any_pil = bool(self.use_pil[ids].any())

        def load(path, use_pil, item, *label):
            # A Python False leaves the PIL branch out of the graph when no file needs it.
            image = decode.decode_and_resize(path, use_pil if any_pil else False,
                                             image_size=size, channels=channels, resize=mode)
            return (image, *label, item)

        ds = ds.map(load, num_parallel_calls=parallel or tf.data.AUTOTUNE,
                    deterministic=not shuffle)
        ds = ds.ignore_errors()
        if batch_size:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if shard is not None:  # multi-worker: files are not tracked (skips go uncounted)
            return ds.map(lambda image, *rest: (image, *rest) if with_ids else
                          (image, *rest[:-1]) if len(rest) > 1 else image)
        return self._tracked(ds, ids, with_ids)


def _stats(paths):
    out = np.zeros((len(paths), 2), np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
            out[i] = (st.st_size, st.st_mtime_ns)
        except OSError:
            out[i] = (-1, -1)
    return out


def shard_positions(n, shard=None):
    """Positions 0..n-1 of one shard `(num_shards, index)`: every num-th item, equal counts.

    Equal shards (the remainder of n / num_shards left out) give every worker the same
    number of steps, which multi-worker training needs; None gives all positions.
    """
    ids = np.arange(n, dtype=np.int64)
    if shard is None:
        return ids
    num, index = shard
    return ids[index::num][:n // num] if n >= num else ids[index::num]


def concat(parts):
    """One array, or one `ImageFiles`, from several of the same kind and settings."""
    if not parts:
        raise TlkitError("Nothing to concatenate.")
    if not is_files(parts[0]):
        return np.concatenate([np.asarray(p) for p in parts])
    first = parts[0]
    return ImageFiles(np.concatenate([p.paths for p in parts]), first.image_size,
                      first.channels, first.resize,
                      np.concatenate([p.use_pil for p in parts]),
                      np.concatenate([p.stats for p in parts]))


def is_files(x):
    """True for an `ImageFiles` (or anything streaming like it), False for arrays."""
    return hasattr(x, "as_dataset")
