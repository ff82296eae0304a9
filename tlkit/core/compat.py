"""Every use of a private Keras, TensorFlow or KerasTuner API, fenced in one module.

tlkit otherwise uses public APIs only. Each function here names the private piece it reads
and why; everything was checked against the versions in `CHECKED` (run
`pip show keras tensorflow keras-tuner`). When one of those libraries is upgraded, this is
the only module to re-check. Patches are context managers: what they change is put back on
exit, even on an error.

- Keras Functional graphs: `tensor._keras_history`, `op._inbound_nodes`, `model._nodes` (which
  nodes belong to a model) and `Functional._run_through_graph` (replaying a graph with other
  layers). Backbone graph surgery and stage computation need them; Keras has no public graph
  walking API.
- Keras's TensorFlow trainer: `multiworker_training` works around keras-team/keras#20585.
- Keras backends: `backend`, `require_tensorflow` (what only TensorFlow has: tf.distribute,
  Grad-CAM's GradientTape) and `tensorflow_env` (a TensorFlow child for the TF-only exports).
- TensorFlow's gradient registry: `gradient_registry` (freeing memory between tuning trials).
- KerasTuner: `best_epoch_metrics` (tuner_utils), `is_save_best_epoch`, the trial
  checkpoint name, the worker's local oracle, the gRPC chief's servicer and protos, and
  `silent_condition_protos` (a debug print in 1.4.8).

Example:
    >>> from tlkit.core import compat
    >>> sorted(compat.CHECKED)
    ['keras', 'keras-tuner', 'tensorflow']
"""

import contextlib
import inspect
import os
import sys

from tlkit.core.errors import TlkitError

CHECKED = {"keras": "3.15.1", "tensorflow": "2.21.0", "keras-tuner": "1.4.8"}


# ---------------------------------------------------------------------------------------------
# Keras Functional graphs


def producer(tensor):
    """`(operation, node_index, tensor_index)` that made a Keras symbolic tensor, or None.

    Reads `tensor._keras_history` (keras/src/ops/node.py: `KerasHistory`).
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None or history[0] is None:
        return None
    return tuple(history)


def inbound_nodes(op):
    """The nodes where `op` was called (`op._inbound_nodes`), in call order."""
    return list(getattr(op, "_inbound_nodes", []))


def nodes_in(op, model):
    """The inbound nodes of `op` that belong to `model`'s graph.

    A layer shared by two models (a base called inside a classifier) has a node per call;
    a Functional model keeps the keys of its own nodes in `model._nodes`, spelled
    `f"{id(op)}_ib-{index}"` (keras/src/models/functional.py, `make_node_key`).
    """
    keys = getattr(model, "_nodes", None)
    return [node for i, node in enumerate(inbound_nodes(op))
            if keys is None or f"{id(op)}_ib-{i}" in keys]


def run_through_graph(model, inputs, operation_fn):
    """Replay Functional `model` on `inputs`, calling `operation_fn(op)` for every operation.

    `Functional._run_through_graph` (keras/src/ops/function.py): `operation_fn(op)` returns
    the callable to use in place of `op`, which is how a graph is rebuilt with other layers.
    """
    return model._run_through_graph(inputs, operation_fn=operation_fn)  # noqa: SLF001


# ---------------------------------------------------------------------------------------------
# Keras's TensorFlow trainer under MultiWorkerMirroredStrategy


@contextlib.contextmanager
def multiworker_training(model, strategy):
    """Work around keras-team/keras#20585 while training `model` under `strategy`.

    Two private pieces of Keras's TensorFlow trainer fail under
    `MultiWorkerMirroredStrategy`:

    - `model._maybe_symbolic_build` builds the metrics from one batch that it first averages
      across workers with a collective `strategy.reduce` ("Attempt to convert a value
      (PerReplica...)"). Building needs only shapes and dtypes: inside the block the model
      builds from this worker's local batch (`model._symbolic_build`).
    - `keras/src/backend/tensorflow/trainer.reduce_per_replica` averages each step's logs with
      `strategy.reduce("MEAN", v, axis=0)`, which fails for a scalar ("Invalid reduction
      dimension 0"). Inside the block scalars are averaged with `axis=None`; everything else
      goes to Keras's own function.

    Both are put back on exit. Nothing changes in the trained or saved model. Other strategies
    (or None) leave everything as it is.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield model
        return
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

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
            model._symbolic_build(data_batch=data_batch)  # noqa: SLF001

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        if isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy) and \
                reduction in ("auto", "mean"):
            def mean(v):
                rank = v.values[0].shape.rank if hasattr(v, "values") else v.shape.rank
                return strategy_.reduce("MEAN", v, axis=0 if rank else None)

            return tree.map_structure(mean, values)
        return original(values, strategy_, reduction)

    had_own = "_maybe_symbolic_build" in vars(model)
    saved = vars(model).get("_maybe_symbolic_build")
    model._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield model
    finally:
        tf_trainer.reduce_per_replica = original
        if had_own:
            model._maybe_symbolic_build = saved
        else:
            del model._maybe_symbolic_build


# ---------------------------------------------------------------------------------------------
# Keras backends: tlkit trains and predicts on TensorFlow and JAX (`KERAS_BACKEND`); the pieces
# that exist only on TensorFlow say so up front (`require_tensorflow`) or run in a TensorFlow
# child process (`tensorflow_env`, for the SavedModel, TFLite and ONNX exports).


def backend():
    """The Keras backend this process runs (`keras.backend.backend()`: "tensorflow", "jax"...)."""
    import keras

    return keras.backend.backend()


def require_tensorflow(what, instead=""):
    """Refuse `what` on any backend but TensorFlow, in one line that names the backend.

    Example:
        >>> require_tensorflow("Grad-CAM") if backend() == "tensorflow" else None
    """
    if backend() != "tensorflow":
        raise TlkitError(f"{what} needs the TensorFlow backend; this process runs Keras on "
                         f"{backend()}. Run it with KERAS_BACKEND=tensorflow{instead}.")


def training_forward(model):
    """`images -> model(images, training=True)`, compiled where the backend allows it: a
    `tf.function` on TensorFlow (an eager call per batch costs 5-10x more); an eager call on
    the other backends, where Keras's layers update their state (BatchNormalization's moving
    statistics) only outside a JAX trace."""
    if backend() != "tensorflow":
        return lambda images: model(images, training=True)
    import tensorflow as tf

    return tf.function(lambda images: model(images, training=True), reduce_retracing=True)


def tensorflow_env():
    """The environment for a child process that runs Keras on TensorFlow."""
    return {**os.environ, "KERAS_BACKEND": "tensorflow"}


# ---------------------------------------------------------------------------------------------
# TensorFlow


def gradient_registry():
    """TensorFlow's global gradient-function registry (a dict), or None if not found.

    `tensorflow.python.framework.ops._gradient_registry._registry`: every traced Keras train
    step adds a graph-mode `tf.custom_gradient` entry (`CustomGradient-N`) there and nothing
    removes it; see `tlkit.tuning.release_trial_memory`.
    """
    try:
        from tensorflow.python.framework import ops
        return ops._gradient_registry._registry  # noqa: SLF001
    except (ImportError, AttributeError):
        return None


# ---------------------------------------------------------------------------------------------
# KerasTuner


def best_epoch_metrics(results, objective):
    """The metrics of a trial's best epoch as a dict (`tuner_utils.convert_to_metrics_dict`)."""
    from keras_tuner.src.engine import tuner_utils

    return tuner_utils.convert_to_metrics_dict(results, objective)


def is_save_best_epoch(callback):
    """True for the checkpoint callback KerasTuner adds to every trial (`SaveBestEpoch`)."""
    try:
        from keras_tuner.src.engine.tuner_utils import SaveBestEpoch
    except ImportError:  # moved: fall back to the class name
        return type(callback).__name__ == "SaveBestEpoch"
    return isinstance(callback, SaveBestEpoch)


def trial_checkpoint(tuner, trial_id):
    """The path of the best-epoch weights KerasTuner saved for a trial
    (`Tuner._get_checkpoint_fname`)."""
    return tuner._get_checkpoint_fname(trial_id)  # noqa: SLF001


def local_space(oracle):
    """This process's own search space: on a distributed worker `tuner.oracle` is a gRPC
    client (`OracleClient`) whose local oracle is `oracle._oracle`."""
    inner = getattr(oracle, "_oracle", oracle)
    return inner.get_space()


def oracle_chief():
    """KerasTuner's gRPC chief pieces: `(OracleServicer base class, add_servicer(servicer,
    server), exit_chief(oracle))` (`keras_tuner.src.distribute.oracle_chief`, `protos`)."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief as chief

    add = protos.get_service_grpc().add_OracleServicer_to_server
    return chief.OracleServicer, add, chief.exit_chief


@contextlib.contextmanager
def silent_condition_protos(active=True):
    """Mute the debug `print` in keras-tuner 1.4.8's `conditions.Parent.to_proto`.

    It prints the first parent value every time a conditional hyperparameter crosses gRPC
    (twice per trial and process). Only the print is dropped; the proto is unchanged. The
    method is put back on exit.
    """
    from keras_tuner.src.engine import conditions

    original = conditions.Parent.to_proto
    if not active or "print(" not in inspect.getsource(original):
        yield
        return

    def to_proto(self):
        saved = sys.stdout
        sys.stdout = open(os.devnull, "w")
        try:
            return original(self)
        finally:
            sys.stdout.close()
            sys.stdout = saved

    conditions.Parent.to_proto = to_proto
    try:
        yield
    finally:
        conditions.Parent.to_proto = original
