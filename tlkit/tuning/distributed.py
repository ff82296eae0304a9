"""Distributed search: KerasTuner's chief and workers over gRPC, with bounded waits."""

import contextlib
import os
import time

from tlkit.core import compat
from tlkit.core.errors import TlkitError
from tlkit.tuning.constants import ENV_ORACLE_IP, ENV_ORACLE_PORT, ENV_TUNER_ID
from tlkit.tuning.search import trial_line
from tlkit.tuning.space import _fmt


def distributed_role(tuner_id=None, oracle=None):
    """`(role, tuner_id, host, port)` from arguments or the KERASTUNER_* variables.

    Args:
        tuner_id: "chief" (or any id containing "chief") for the oracle server, anything else
            ("tuner0", ...) for a worker; default `KERASTUNER_TUNER_ID`.
        oracle: `"HOST:PORT"` of the chief; default `KERASTUNER_ORACLE_IP` and
            `KERASTUNER_ORACLE_PORT`.

    Returns:
        `("single", None, None, None)` when neither is set, else `("chief" | "worker", id,
        host, port)`.

    Example:
        >>> distributed_role("tuner1", "10.0.0.5:8000")
        ('worker', 'tuner1', '10.0.0.5', 8000)
    """
    tuner_id = tuner_id or os.environ.get(ENV_TUNER_ID)
    if oracle:
        host, sep, port = str(oracle).rpartition(":")
        if not sep or not host:
            raise TlkitError(f"--oracle expects HOST:PORT (e.g. 10.0.0.5:8000). "
                             f"Received: {oracle!r}.")
    else:
        host, port = os.environ.get(ENV_ORACLE_IP), os.environ.get(ENV_ORACLE_PORT)
    if not tuner_id and not host and not port:
        return "single", None, None, None
    missing = [what for what, v in (("a tuner id (--tuner-id or KERASTUNER_TUNER_ID)", tuner_id),
                                    ("the chief's address (--oracle HOST:PORT or "
                                     "KERASTUNER_ORACLE_IP)", host),
                                    ("the chief's port (KERASTUNER_ORACLE_PORT)", port)) if not v]
    if missing:
        raise TlkitError("A distributed search needs " + " and ".join(missing) + ".")
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise TlkitError(f"The chief's port must be 1..65535. Received: {port!r}.") from None
    return ("chief" if "chief" in tuner_id else "worker"), tuner_id, host, port


@contextlib.contextmanager
def _kerastuner_env(role, tuner_id, host, port):
    """Set the KERASTUNER_* variables KerasTuner reads while the block runs, then restore."""
    keys = (ENV_TUNER_ID, ENV_ORACLE_IP, ENV_ORACLE_PORT)
    saved = {k: os.environ.get(k) for k in keys}
    with compat.silent_condition_protos(role != "single"):
        try:
            for k in keys:
                os.environ.pop(k, None)
            if role != "single":
                os.environ.update({ENV_TUNER_ID: tuner_id, ENV_ORACLE_IP: host,
                                   ENV_ORACLE_PORT: str(port)})
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def wait_for_chief(host, port, timeout):
    """Wait up to `timeout` seconds for the chief's gRPC server; TlkitError naming it if not up.

    Example:
        >>> wait_for_chief("127.0.0.1", 9, 0.2)
        Traceback (most recent call last):
        ...
        tlkit.core.errors.TlkitError: No tuning chief answered at 127.0.0.1:9 within 0.2 s. ...
    """
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise TlkitError(f"No tuning chief answered at {host}:{port} within "
                         f"{_fmt(float(timeout))} s. "
                         f"Start the chief first (KERASTUNER_TUNER_ID=chief), check the "
                         f"address and port and that the port is reachable from this "
                         f"machine, or raise --connect-timeout.") from None
    finally:
        channel.close()


def _check_same_space(tuner, host, port):
    """Refuse to work for a chief whose search space is not this worker's."""
    def kinds(hps):
        return {p.name: (type(p).__name__, _fmt(p.value) if type(p).__name__ == "Fixed" else "")
                for p in hps.space}

    mine = kinds(compat.local_space(tuner.oracle))
    try:
        chief = kinds(tuner.oracle.get_space())
    except Exception as e:  # noqa: BLE001 - any gRPC failure
        raise TlkitError(f"Lost the tuning chief at {host}:{port}: {e}") from None
    if mine != chief:
        diff = sorted(set(mine.items()) ^ set(chief.items()))
        shown = ", ".join(f"{n} ({k}{' ' + v if v else ''})" for n, (k, v) in diff[:4])
        raise TlkitError(f"This worker's search space differs from the chief's at "
                         f"{host}:{port} ({shown}). Start every worker with the chief's "
                         f"--model/--backbone, --strategy, --fix and --space.")


def serve_oracle(tuner, host, port, *, poll=0.5, verbose=1, owners=None):
    """Run the chief: serve `tuner.oracle` over gRPC until every worker has finished.

    This is KerasTuner's chief (`tlkit.core.compat.oracle_chief`): the same servicer
    and protocol, with a shorter poll than KerasTuner's 20 s, a clean shutdown, a progress
    line per finished trial and the worker that ran each trial recorded in `owners`.
    """
    import grpc
    from concurrent import futures

    servicer_base, add_servicer, exit_chief = compat.oracle_chief()
    objective = tuner.oracle.objective
    owners = {} if owners is None else owners

    class Servicer(servicer_base):
        def CreateTrial(self, request, context):  # noqa: N802 - gRPC method name
            response = super().CreateTrial(request, context)
            trial = self.oracle.ongoing_trials.get(request.tuner_id)
            if trial is not None:
                owners[trial.trial_id] = request.tuner_id
            return response

        def EndTrial(self, request, context):  # noqa: N802 - gRPC method name
            response = super().EndTrial(request, context)
            if verbose:
                trial = self.oracle.get_trial(request.trial.trial_id)
                print(trial_line(trial, objective, owners.get(trial.trial_id)), flush=True)
            return response

    servicer = Servicer(tuner.oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    add_servicer(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise TlkitError(f"The tuning chief cannot listen on {host}:{port}: the address is not "
                         f"this machine's or the port is in use. Pick another port.")
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(tuner.oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)
    return owners
