"""Shared test helpers that run other processes: the `.h5` round trip in a process without
tlkit, and CLI runs in a background process (started by conftest.py when collection ends)."""

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
import time

import numpy as np
import pytest

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


def fresh_load_process():
    """The session's plain-Keras process (started on first use): (Popen, reply queue, log)."""
    if "proc" not in _fresh or _fresh["proc"].poll() is not None:
        workdir = tempfile.mkdtemp(prefix="tlkit-fresh-load-")
        log = open(os.path.join(workdir, "stderr.txt"), "w+")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.Popen([sys.executable, "-c", FRESH_LOAD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, cwd=workdir,
                                env=env)
        _lower_priority(proc.pid)
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
    proc, replies, log = fresh_load_process()
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


def _lower_priority(pid):
    """Give process `pid` the lowest CPU priority (nice 19), so that it runs mostly on the CPU
    time the test process leaves idle.

    Set from outside after the start (no preexec_fn in a process with TensorFlow's threads);
    threads that the process starts later inherit it. The process stays in pytest's session:
    with the kernel's autogroup scheduling a new session would get an equal share of the CPU
    whatever its priority.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    except (AttributeError, OSError):
        pass


class BackgroundProcesses:
    """Processes started now (by default at the lowest CPU priority) and collected later
    (`result`).

    `commands` maps a name to {"argv": [...], "env": {...}}: `env` changes os.environ for
    the process (a None value removes the variable). Each process writes NAME.out and
    NAME.err in `workdir`, its working directory.
    """

    def __init__(self, workdir, commands, low_priority=True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs, self._files = {}, {}
        try:
            for name, cmd in commands.items():
                out = open(self.workdir / f"{name}.out", "w+")
                err = open(self.workdir / f"{name}.err", "w+")
                self._files[name] = (out, err)
                env = {**os.environ, **cmd.get("env", {})}
                self.procs[name] = subprocess.Popen(
                    [str(a) for a in cmd["argv"]], stdout=out, stderr=err, cwd=self.workdir,
                    env={k: v for k, v in env.items() if v is not None})
                if low_priority:
                    _lower_priority(self.procs[name].pid)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)

    def result(self, timeout=900):
        """Wait (at most `timeout` s for all) and return {name: {"code", "out", "err"}};
        a process still running then is killed, and its code is None."""
        deadline = time.monotonic() + timeout
        unfinished = set()
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                unfinished.add(name)
        self.stop()
        results = {}
        for name, proc in self.procs.items():
            out, err = self._files[name]
            out.seek(0)
            err.seek(0)
            results[name] = {"code": None if name in unfinished else proc.returncode,
                             "out": out.read(), "err": err.read()}
            if name in unfinished:
                results[name]["err"] += f"\n[{name}: killed after {timeout} s]"
        return results

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def cli_command(*argv, env=None):
    """A `BackgroundProcesses` command for `python -m tlkit.cli ARGV`."""
    return {"argv": [sys.executable, "-m", "tlkit.cli", *argv], "env": env or {}}


class _BackgroundRun:
    def __init__(self, start, timeout):
        self._start = start
        self.timeout = timeout
        self._lock = threading.Lock()
        self._handle = None
        self._result = None
        self.workdir = None

    def begin(self):
        with self._lock:
            if self._handle is None:
                self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="tlkit-test-bg-"))
                self._handle = self._start(self.workdir)
        return self._handle

    def result(self):
        handle = self.begin()
        with self._lock:
            if self._result is None:
                self._result = handle.result(self.timeout)
            return self._result

    def stop(self):
        if self._handle is not None:
            self._handle.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)


_RUNS = {}


def background_fixture(name, start, timeout=900):
    """A session fixture NAME whose value is `start(workdir).result(timeout)`.

    `start(workdir)` starts the processes of a slow end-to-end run (a `BackgroundProcesses`).
    When collection ends, conftest.py begins the runs that the selected tests use, one after
    another in a background thread, at the lowest CPU priority: the test process leaves
    about one of the machine's 2 cores idle (tracing models is single-threaded Python), so
    they mostly run there while the in-process tests go on. A test that needs a run not
    begun yet begins it at once. `result` values carry "workdir" (the runs' files).
    """
    _RUNS[name] = _BackgroundRun(start, timeout)

    @pytest.fixture(scope="session", name=name)
    def _fixture():
        run = _RUNS[name]
        return {**run.result(), "workdir": run.workdir}

    return _fixture


def begin_background_runs(items):
    """Begin the background runs that `items` (the selected tests) use, one after another
    in a daemon thread, in the order of the first test that needs each."""
    names = []
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in _RUNS and name not in names:
                names.append(name)
    runs = [_RUNS[n] for n in names]

    def work():
        for run in runs:
            try:
                run.result()
            except Exception:  # noqa: BLE001 - the fixture reports it when a test asks
                pass

    threading.Thread(target=work, daemon=True).start()


def stop_background_runs():
    for run in _RUNS.values():
        run.stop()
