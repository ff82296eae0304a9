"""Shared test helpers: one training step, the `.h5` round trip in a process without tlkit,
and CLI runs in a background process."""

import atexit
import json
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np

# One plain-Keras process serves every `predict_in_fresh_process` call of a test session:
# starting Python with TensorFlow costs seconds, a load request a fraction of one. It never
# imports tlkit (every reply says so), so each file still loads without tlkit's code.
FRESH_LOAD = textwrap.dedent("""
    import json, os, sys, traceback
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import keras
    for line in sys.stdin:
        model_path, x_path, y_path = json.loads(line)
        model = None
        try:
            model = keras.models.load_model(model_path)          # safe_mode=True, the default
            np.save(y_path, model.predict(np.load(x_path), verbose=0))
            reply = {"tlkit_imported": any(m.split(".")[0] == "tlkit" for m in sys.modules)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        model = None
        keras.backend.clear_session()
        print("FRESH_LOAD " + json.dumps(reply), flush=True)
""")
_fresh = {}


def random_batch(input_shape, num_classes, n=4, seed=0):
    """Raw-pixel images 0..255 and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,))
    return x, y


def compile_and_build(model, optimizer="adam", **compile_kwargs):
    """`model.compile(...)`, then build the optimizer's variables eagerly.

    With the TensorFlow backend Keras otherwise creates them inside the first traced train
    step, and TensorFlow then traces that step twice (about twice the seconds of a first
    `fit` / `train_on_batch`).
    """
    model.compile(optimizer=optimizer, **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    return model


def one_training_step(model, num_classes, n=4):
    """Compile and run one step; return the loss (a finite float)."""
    x, y = random_batch(model.input_shape[1:], num_classes, n)
    loss = "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy"
    if num_classes == 1:
        y = (y % 2).astype("float32")
    compile_and_build(model, loss=loss)
    return float(model.train_on_batch(x, y))


def _fresh_process():
    """The session's plain-Keras process (started on first use): (Popen, reply queue, log)."""
    if "proc" not in _fresh or _fresh["proc"].poll() is not None:
        workdir = tempfile.mkdtemp(prefix="tlkit-fresh-load-")
        log = open(os.path.join(workdir, "stderr.txt"), "w+")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.Popen([sys.executable, "-c", FRESH_LOAD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, cwd=workdir,
                                env=env, preexec_fn=_lower_priority)
        replies = queue.Queue()

        def read():
            for line in proc.stdout:
                if line.startswith("FRESH_LOAD "):
                    replies.put(json.loads(line[len("FRESH_LOAD "):]))
            replies.put(None)  # the process ended

        threading.Thread(target=read, daemon=True).start()
        _fresh.update(proc=proc, replies=replies, log=log)
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        atexit.register(proc.kill)  # atexit runs this first
    return _fresh["proc"], _fresh["replies"], _fresh["log"]


def predict_in_fresh_process(path, x, tmp_path):
    """Load `path` with plain Keras in another Python process that never imports tlkit.

    Returns (predictions, tlkit_was_imported).
    """
    x_path, y_path = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x_path, x)
    proc, replies, log = _fresh_process()
    proc.stdin.write(json.dumps([str(path), str(x_path), str(y_path)]) + "\n")
    proc.stdin.flush()
    try:
        reply = replies.get(timeout=300)
    except queue.Empty:
        proc.kill()  # the next call starts a new process rather than read this answer
        reply = {"error": "no answer in 300 s"}
    if reply is None:
        log.seek(0)
        reply = {"error": f"the process ended (exit code {proc.wait()}):\n{log.read()[-3000:]}"}
    assert "error" not in reply, reply["error"][-3000:]
    return np.load(y_path), reply["tlkit_imported"]


def _lower_priority():
    """Run only on CPU time the test process leaves idle (SCHED_IDLE; else nice 19).

    The process stays in pytest's session: with the kernel's autogroup scheduling a new
    session would get an equal share of the CPU whatever its priority.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


class BackgroundCLI:
    """`python -m tlkit.cli ARGV`, started now in a process of its own at the lowest CPU
    priority, and collected later with `result()`.

    The test process leaves about one of the machine's 2 cores idle (tracing models is
    single-threaded Python), so a slow end-to-end command started when the session starts
    runs there while the in-process tests go on.
    """

    def __init__(self, argv, workdir):
        self.argv = [str(a) for a in argv]
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.workdir / "stdout.txt", "w+")
        self._err = open(self.workdir / "stderr.txt", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "tlkit.cli", *self.argv],
                                     stdout=self._out, stderr=self._err, cwd=self.workdir,
                                     preexec_fn=_lower_priority)
        atexit.register(self.stop)

    def result(self, timeout=900):
        """Wait for the command; return (exit code, stdout, stderr). The exit code is None
        when it did not finish within `timeout` seconds (it is killed then)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            code = None
        self._out.seek(0)
        self._err.seek(0)
        out, err = self._out.read(), self._err.read()
        if code is None:
            err += f"\n[tlkit {' '.join(self.argv)}: killed after {timeout} s]"
        return code, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
