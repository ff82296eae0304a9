"""tf.distribute: two MultiWorkerMirroredStrategy workers as processes on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tlkit import distribute
from tlkit.errors import TlkitError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_finish_with_the_same_weights(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                         "task": {"type": "worker", "index": i}}),
                       CUDA_VISIBLE_DEVICES="")
            cmd = [sys.executable, "-m", "tlkit.cli", "finetune", "--data", "digits",
                   "--backbone", "zoo:simple_cnn", "--weights", "none",
                   "--strategy", "large-dissimilar", "--epochs", "1", "--batch-size", "64",
                   "--no-augment", "--distribute", "multiworker", "--quiet",
                   "--out", str(tmp_path / f"worker{i}.h5")]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True,
                                          start_new_session=True))
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    import h5py

    def weights(path):
        with h5py.File(path, "r") as f:
            out = {}
            f["model_weights"].visititems(
                lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
            return out

    w0, w1 = weights(tmp_path / "worker0.h5"), weights(tmp_path / "worker1.h5")
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
