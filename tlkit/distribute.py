"""tf.distribute for `finetune`: several GPUs on one machine, or several machines.

- `"mirrored"`: `tf.distribute.MirroredStrategy`, every GPU of this machine (or the CPU).
- `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`; every machine runs the same
  command with its own `TF_CONFIG`, e.g. on the first of two machines:
  `TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
  "task": {"type": "worker", "index": 0}}'`. Worker 0 is the chief.

The global batch is `batch_size`, split across replicas. Under a strategy the feature cache is
off (each replica would need its own copy) and training runs through the base.

Example:
    >>> from tlkit import distribute
    >>> distribute.get_strategy(None) is None
    True
"""

import json
import os

from tlkit.errors import TlkitError, check_choice

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


def patch_symbolic_build(model, strategy):
    """Work around keras-team/keras#20585 for `MultiWorkerMirroredStrategy`.

    Keras 3's TensorFlow trainer builds the model's metrics from one batch before training and,
    under a strategy, first averages that batch across workers with a collective
    `strategy.reduce`, which fails for multi-worker strategies ("Attempt to convert a value
    (PerReplica...)"). Building needs only shapes and dtypes, so this gives the model a build
    step that takes this worker's local batch instead. Nothing changes in the saved model.
    """
    import tensorflow as tf
    from keras import tree

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
    _patch_metric_reduction()
    return model


def _patch_metric_reduction():
    """Second half of the keras-team/keras#20585 workaround.

    After each step Keras averages the logs (scalar losses and metrics) across workers with
    `strategy.reduce("MEAN", v, axis=0)`, which fails for a scalar ("Invalid reduction
    dimension 0 for input with 0 dimensions"). Scalars are averaged with `axis=None` instead;
    everything else goes to Keras's own function unchanged.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_tlkit_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
                reduction in ("auto", "mean"):
            from keras import tree

            def mean(v):
                rank = v.values[0].shape.rank if hasattr(v, "values") else v.shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._tlkit_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
