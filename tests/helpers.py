"""Shared test helpers: one training step, and the `.h5` round trip in a process without tlkit."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

FRESH_LOAD = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import keras
    model = keras.models.load_model(sys.argv[1])          # safe_mode=True, the default
    x = np.load(sys.argv[2])
    np.save(sys.argv[3], model.predict(x, verbose=0))
    print(json.dumps({"tlkit_imported": any(m.split(".")[0] == "tlkit" for m in sys.modules)}))
""")


def random_batch(input_shape, num_classes, n=4, seed=0):
    """Raw-pixel images 0..255 and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,))
    return x, y


def one_training_step(model, num_classes, n=4):
    """Compile and run one step; return the loss (a finite float)."""
    x, y = random_batch(model.input_shape[1:], num_classes, n)
    loss = "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy"
    if num_classes == 1:
        y = (y % 2).astype("float32")
    model.compile(optimizer="adam", loss=loss)
    return float(model.train_on_batch(x, y))


def predict_in_fresh_process(path, x, tmp_path):
    """Load `path` with plain Keras in a new Python process that never imports tlkit.

    Returns (predictions, tlkit_was_imported).
    """
    x_path, y_path = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x_path, x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", FRESH_LOAD, str(path), str(x_path), str(y_path)],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return np.load(y_path), info["tlkit_imported"]
