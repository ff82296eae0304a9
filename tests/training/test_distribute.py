"""tf.distribute: two MultiWorkerMirroredStrategy workers as processes on 127.0.0.1."""

import json
import socket

import numpy as np
import pytest

from process_helpers import BackgroundProcesses, background_fixture, cli_command
from tlkit.training import distribute
from tlkit.core.errors import TlkitError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two_workers(workdir):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return BackgroundProcesses(workdir, {
        f"worker{i}": cli_command(
            "finetune", "--data", "digits", "--backbone", "zoo:simple_cnn", "--weights", "none",
            "--strategy", "large-dissimilar", "--epochs", "1", "--batch-size", "64",
            "--no-augment", "--distribute", "multiworker", "--quiet",
            "--out", workdir / f"worker{i}.h5",
            env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}),
                 "CUDA_VISIBLE_DEVICES": ""})
        for i in range(2)})


# Started in the background when collection ends (process_helpers.background_fixture).
two_workers = background_fixture("two_workers", _start_two_workers, timeout=300)


def test_two_workers_finish_with_the_same_weights(two_workers):
    for name in ("worker0", "worker1"):
        run = two_workers[name]
        assert run["code"] == 0, (run["out"] + run["err"])[-3000:]
    import h5py

    def weights(path):
        with h5py.File(path, "r") as f:
            out = {}
            f["model_weights"].visititems(
                lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
            return out

    w0, w1 = weights(two_workers["workdir"] / "worker0.h5"), weights(
        two_workers["workdir"] / "worker1.h5")
    assert w0.keys() == w1.keys() and len(w0) > 4
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)


@pytest.mark.parametrize("value,match", [
    (None, "needs the TF_CONFIG"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {}}', "cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "index"),
])
def test_bad_tf_config(value, match):
    env = {} if value is None else {"TF_CONFIG": value}
    with pytest.raises(TlkitError, match=match):
        distribute.parse_tf_config(env)


def test_cli_multiworker_without_tf_config(capsys, monkeypatch):
    from tlkit import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = cli.main(["finetune", "--data", "digits", "--weights", "none", "--backbone",
                     "zoo:simple_cnn", "--distribute", "multiworker"])
    err = capsys.readouterr().err
    assert code == 2 and "TF_CONFIG" in err and len(err.strip().splitlines()) == 1


def test_multiworker_patches_last_only_while_the_model_trains():
    import keras
    import tensorflow as tf

    from tlkit.core import compat

    trainer = pytest.importorskip("keras.src.backend.tensorflow.trainer")
    original = trainer.reduce_per_replica
    # An instance that is a MultiWorkerMirroredStrategy without joining a cluster.
    fake = tf.distribute.MultiWorkerMirroredStrategy.__new__(
        tf.distribute.MultiWorkerMirroredStrategy)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with compat.multiworker_training(model, fake):
        patched = trainer.reduce_per_replica
        assert patched is not original and "_maybe_symbolic_build" in vars(model)
        with compat.multiworker_training(model, fake):  # nested: validation inside fit
            pass
        assert trainer.reduce_per_replica is patched
    assert trainer.reduce_per_replica is original and "_maybe_symbolic_build" not in vars(model)

    model.fit = lambda *args, **kwargs: trainer.reduce_per_replica  # what fit would see
    distribute.patch_symbolic_build(model, fake)
    assert model.fit() is not original and trainer.reduce_per_replica is original
    with distribute.training_patches(model, None):  # no strategy: nothing changes
        assert trainer.reduce_per_replica is original
