"""What an earlier demo in the same `--out` trained and a rerun can reuse: the source net and
the `fashion_cnn` baseline, each recognised by a key over everything that shapes it.

A rerun of the same configuration (a README edit, a new strategy default) then re-measures
the matrix and the curves without pretraining the source (110 s) or the baseline (230 s)
again; a different class split, config, seed or tlkit/Keras version trains them afresh.
Delete the file to force it.

Example:
    >>> import tempfile, pathlib
    >>> from tlkit.experiments import config
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> k = source_key([0, 1], config.QUICK, 0)
    >>> len(k), k == source_key([0, 2], config.QUICK, 0), cached(out, SOURCE_RECORD, k, [])
    (16, False, None)
"""

import hashlib
import json

from tlkit.core.version import __version__

SOURCE_RECORD = "source.json"
BASELINE_RECORD = "baseline.json"
_SOURCE_FIELDS = ("widths", "convs", "source_per_class", "source_epochs", "large_batch",
                  "patience", "pooling", "test_per_class")
_BASELINE_FIELDS = ("baseline_per_class", "baseline_epochs", "baseline_batch",
                    "test_per_class")


def _key(parts):
    import keras

    return hashlib.sha1(json.dumps([*parts, __version__, keras.__version__],
                                   default=str).encode()).hexdigest()[:16]


def source_key(src_ids, config, seed):
    """What makes two demos' source nets the same: its classes, settings, seed, versions."""
    return _key([list(src_ids), {k: getattr(config, k) for k in _SOURCE_FIELDS}, seed])


def baseline_key(config, seed):
    """What makes two demos' baselines the same: its settings, seed and versions."""
    return _key(["fashion_cnn", {k: getattr(config, k) for k in _BASELINE_FIELDS}, seed])


def cached(out, record_name, key, files):
    """The record `out/record_name` of an earlier demo when its key is `key` and every path
    in `files` still exists; else None."""
    try:
        record = json.loads((out / record_name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or \
            not all(f.is_file() for f in files):
        return None
    return record
