"""TensorFlow's start-up lines stay off stderr once tlkit is imported; TLKIT_TF_LOGS=1 shows
them; an import that fails still shows what TensorFlow printed."""

import os
import subprocess
import sys

import pytest

from tlkit.core import console

# tlkit first, then Keras (which imports TensorFlow), then a model run: every start-up line
# (absl, oneDNN, the CPU guard, CUDA probing, cuInit) would come in this process.
API_RUN = """
import tlkit
import keras
import numpy as np
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
print(model.predict(np.ones((1, 2)), verbose=0).shape)
"""


def run_api(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", console.SHOW_LOGS)}
    return subprocess.run([sys.executable, "-c", API_RUN], capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


def test_python_api_starts_quietly_and_the_switch_shows_the_lines():
    quiet = run_api()
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "(1, 1)" and quiet.stderr == ""
    shown = run_api(**{console.SHOW_LOGS: "1"})
    assert shown.returncode == 0 and shown.stdout.strip() == "(1, 1)"
    assert shown.stderr.strip(), "TLKIT_TF_LOGS=1 showed nothing TensorFlow printed"


def test_captured_lines_come_back_when_the_body_fails(capfd):
    with console.quiet_fd2():
        os.write(2, b"start-up chatter\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError):
        with console.quiet_fd2():
            os.write(2, b"libfoo.so: cannot open shared object file\n")
            raise ImportError("no TensorFlow")
    assert "libfoo.so" in capfd.readouterr().err


def test_install_is_a_no_op_once_tensorflow_is_loaded():
    import tensorflow  # noqa: F401  (the test process has it already)

    before = list(sys.meta_path)
    console.install()
    assert sys.meta_path == before
