"""tf.distribute for `finetune`: several GPUs on one machine, or several machines.

- `"mirrored"`: `tf.distribute.MirroredStrategy`, every GPU of this machine (or the CPU).
- `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`; every machine runs the same
  command with its own `TF_CONFIG`, e.g. on the first of two machines:
  `TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
  "task": {"type": "worker", "index": 0}}'`. Worker 0 is the chief.

The global batch is `batch_size`, split across replicas. Under a strategy the feature cache is
off (each replica would need its own copy) and training runs through the base.

Example:
    >>> from tlkit.training import distribute
    >>> distribute.get_strategy(None) is None
    True
"""

import json
import os

from tlkit.core import compat
from tlkit.core.errors import TlkitError, check_choice

CHOICES = ("mirrored", "multiworker")


def parse_tf_config(env=None):
    """The parsed `TF_CONFIG` for multi-worker training; a clear error when it is not usable."""
    raw = (env if env is not None else os.environ).get("TF_CONFIG")
    if not raw:
        raise TlkitError("--distribute multiworker needs the TF_CONFIG environment variable, "
                         "e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
                         "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'.")
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TlkitError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}).")
    workers = (cfg.get("cluster") or {}).get("worker") if isinstance(cfg, dict) else None
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if not workers or not isinstance(workers, list) or not isinstance(task, dict):
        raise TlkitError("TF_CONFIG needs \"cluster\": {\"worker\": [host:port, ...]} and "
                         "\"task\": {\"type\": \"worker\", \"index\": N}.")
    index = task.get("index")
    if task.get("type") not in ("worker", "chief") or not isinstance(index, int) \
            or not 0 <= index < len(workers):
        raise TlkitError(f"TF_CONFIG task {task} is not valid: type must be \"worker\" and "
                         f"index between 0 and {len(workers) - 1}.")
    return cfg


def get_strategy(name):
    """A `tf.distribute.Strategy` for `name` (None: no strategy, returns None)."""
    if name is None:
        return None
    check_choice("distribute", name, CHOICES)
    compat.require_tensorflow(f"--distribute {name} (tf.distribute)",
                              " (JAX shards with keras.distribution instead)")
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    parse_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """True on the worker that should write shared outputs (always True without a strategy)."""
    if strategy is None or "TF_CONFIG" not in os.environ:
        return True
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    return task.get("type") == "chief" or task.get("index", 0) == 0


def training_patches(model, strategy):
    """A context manager for training `model` under `strategy` (keras-team/keras#20585).

    Under `MultiWorkerMirroredStrategy`, Keras's TensorFlow trainer fails to build the metrics
    and to average scalar logs across workers; inside the block it works (see
    `tlkit.core.compat.multiworker_training`, which puts everything back on exit). Other
    strategies, and None, change nothing.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> with training_patches(model, None):
        ...     pass
    """
    return compat.multiworker_training(model, strategy)


def patch_symbolic_build(model, strategy):
    """Make `model.fit` and `model.evaluate` run inside `training_patches(model, strategy)`.

    For callers that hand the model on to code that trains it: each call is patched for its
    own duration only, nothing global stays changed. Returns `model`.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    for name in ("fit", "evaluate"):
        method = getattr(model, name)

        def scoped(*args, _method=method, **kwargs):
            with training_patches(model, strategy):
                return _method(*args, **kwargs)

        setattr(model, name, scoped)
    return model
