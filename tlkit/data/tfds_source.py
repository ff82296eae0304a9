"""TensorFlow Datasets sources as records that stream: images decoded as they are read.

The labels of a split are read once with the images left encoded
(`tfds.decode.SkipDecoding`), which is all the stratified split needs; a `TfdsRecords`
then stands for a subset of a split's examples, like `ImageFiles` does for files, and
decodes only the examples it holds, in parallel, each time it is read.
"""

import hashlib
import os

import numpy as np

from tlkit.core.errors import TlkitError
from tlkit.data import decode
from tlkit.data.files import StreamedImages, shard_positions


def open_builder(name, download):
    """The tfds builder of `name` (prepared when `download`); clear errors for the rest."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.registered import DatasetNotFoundError

    data_dir = os.environ.get("TFDS_DATA_DIR") or None  # read now, not at tfds import
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # "Variant folder ... has no ..." notes
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if download and not getattr(builder, "is_prepared", lambda: False)():
            _check_online(name)
    except DatasetNotFoundError:
        import difflib

        close = difflib.get_close_matches(name, tfds.list_builders(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TlkitError(f"Unknown tfds data set {name!r}.{hint} tfds.list_builders() lists "
                         f"them all (https://www.tensorflow.org/datasets/catalog).") from None
    finally:
        absl_logging.set_verbosity(level)
    return builder


def _check_online(name, host="storage.googleapis.com"):
    """Fail in a second, not after minutes of retries, when the download cannot work.

    TFDS fetches prepared data sets from Google Cloud Storage first, and its downloads retry
    with back-off for minutes when there is no network; a name that does not resolve means
    no download will work.
    """
    import concurrent.futures
    import socket

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(socket.getaddrinfo, host, 443).result(timeout=5)
        except (OSError, concurrent.futures.TimeoutError):
            raise TlkitError(f"Cannot download tfds:{name}: {host} is not reachable (no "
                             f"internet?). Prepare the data set where there is a connection "
                             f"and point TFDS_DATA_DIR at it.") from None


def read_labels(builder, name, split, download):
    """(labels (N,), image feature key, label key) of one split, images left encoded."""
    import tensorflow_datasets as tfds

    keys = builder.info.supervised_keys
    if not keys or len(keys) < 2:
        raise TlkitError(f"tfds:{name} has no (image, label) supervised keys.")
    image_key, label_key = keys[0], keys[1]
    try:
        ds = tfds.load(builder.name, split=split, download=download,
                       data_dir=os.environ.get("TFDS_DATA_DIR") or None,
                       decoders={image_key: tfds.decode.SkipDecoding()})
    except AssertionError:  # tfds: "could not find data in <data dir>"
        where = os.environ.get("TFDS_DATA_DIR") or tfds.core.constants.DATA_DIR
        raise TlkitError(f"tfds data set {name!r} is not in the tfds data dir ({where}); "
                         f"pass download=True (--download) to fetch it.") from None
    except (ValueError, KeyError):
        raise  # an unknown split: the caller decides
    except Exception as e:  # noqa: BLE001 - network, checksum, disk: one line, not a traceback
        if not download or getattr(builder, "is_prepared", lambda: False)():
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TlkitError(f"Cannot download tfds:{name} ({type(e).__name__}: {first}). Check "
                         f"the internet connection, or prepare it where there is one and "
                         f"set TFDS_DATA_DIR.") from None
    shape = builder.info.features[image_key].shape
    if shape is not None and len(shape) != 3:
        raise TlkitError(f"tfds:{name} is not an image data set (example shape {shape}).")
    labels = np.fromiter((int(v) for v in tfds.as_numpy(ds.map(lambda ex: ex[label_key]))),
                         np.int64)
    return labels, image_key, label_key


class TfdsRecords(StreamedImages):
    """Examples `positions` of tfds split `split`, decoded on the fly (see `ImageFiles`)."""

    def __init__(self, name, split, positions, total, image_size, channels, keys,
                 resize=decode.DEFAULT_RESIZE):
        self.name, self.split, self.total, self.keys = name, split, int(total), tuple(keys)
        self.positions = np.asarray(positions, np.int64)
        self.image_size = tuple(int(s) for s in image_size)
        self.channels = int(channels)
        self.resize = decode.check_resize(resize)
        self.use_pil = np.zeros(len(self.positions), bool)  # for `Dataset.converted`
        self.paths = np.asarray([f"tfds:{name}:{split}#{p}" for p in self.positions], object)
        self.stats = np.zeros((len(self.positions), 2), np.int64)
        self._start_tracking(len(self.positions))

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, index):
        index = np.arange(len(self))[index]
        if np.ndim(index) == 0:
            raise TlkitError("tfds records are read as a stream; use as_dataset().")
        return TfdsRecords(self.name, self.split, self.positions[index], self.total,
                           self.image_size, self.channels, self.keys, self.resize)

    def __repr__(self):
        return f"TfdsRecords(tfds:{self.name}:{self.split}, {len(self)} examples)"

    def fingerprint(self):
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.name, self.split, self.total, self.image_size, self.channels,
                       self.resize)).encode())
        h.update(np.ascontiguousarray(self.positions).tobytes())
        return h.hexdigest()

    def as_dataset(self, labels=None, *, shuffle=False, seed=0, shard=None, parallel=None,
                   with_ids=False, batch_size=None, drop_remainder=False):
        """Like `ImageFiles.as_dataset`; the order is the split's (shuffled when asked)."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        image_key, label_key = self.keys
        items = shard_positions(len(self), shard)
        item_of = np.full(self.total, -1, np.int64)
        item_of[self.positions[items]] = items
        label_of = np.full(max(len(self), 1), -1, np.int64)
        if labels is not None:
            label_of[:len(self)] = np.asarray(labels, np.int64)
        item_of = tf.constant(item_of)
        label_of = tf.constant(label_of)
        ds = tfds.load(self.name, split=self.split, shuffle_files=False,
                       data_dir=os.environ.get("TFDS_DATA_DIR") or None,
                       decoders={image_key: tfds.decode.SkipDecoding()})
        ds = ds.enumerate().map(lambda i, ex: (tf.gather(item_of, i), ex[image_key],
                                               ex[label_key]))
        ds = ds.filter(lambda item, _, __: item >= 0)
        if shuffle:
            ds = ds.shuffle(min(max(len(items), 1), 4096), seed=seed,
                            reshuffle_each_iteration=True)
        size, channels, mode = self.image_size, self.channels, self.resize
        given = labels is not None

        def load(item, encoded, label):
            # channels=3 always (channels=1 fails on BMP, GIF and WebP data), then luma
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            if channels == 1:
                image = tf.cast(tf.round(tf.image.rgb_to_grayscale(
                    tf.cast(image, tf.float32))), tf.uint8)
            image = decode.resize_image(image, size, mode)
            image = tf.ensure_shape(image, (*size, channels))
            label = tf.gather(label_of, item) if given else tf.cast(label, tf.int64)
            return (image, label, item) if given else (image, item)

        ds = ds.map(load, num_parallel_calls=parallel or tf.data.AUTOTUNE,
                    deterministic=not shuffle).ignore_errors()
        if batch_size:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        return self._tracked(ds, items, with_ids)
