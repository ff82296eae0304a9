"""tlkit's own Keras callbacks: divergence as an error, and the run's epoch record.

Example:
    >>> guard = DivergenceGuard("head", 1e-3)
    >>> guard.on_epoch_end(0, {"loss": 0.5})
    >>> try:
    ...     guard.on_epoch_end(1, {"loss": float("nan")})
    ... except DivergedError as e:
    ...     print(str(e).split(" with ")[0])
    Training diverged in phase 'head' at epoch 2 (loss nan)
"""

import contextlib
import math
import pathlib
import signal
import threading
import time

import keras

from tlkit.core import fileio
from tlkit.core.errors import TlkitError

# The epoch backup (BackupAndRestore) and the best-weights checkpoint are written at most once
# every this many seconds of training, and always after the first epoch. Epochs on cached
# features take milliseconds: a small-data head ran 81 epochs in 2 s and spent 1.8 s more
# writing a backup and a checkpoint after each (cProfile of a demo run, 150 images: 8.3 s ->
# 6.5 s). A kill -9 now loses at most this much training (plus the epoch in progress); epochs
# longer than this are backed up every epoch, as before.
MIN_SAVE_SECONDS = 2.0


def _throttle(model, min_seconds):
    """`min_seconds`, or 0 (every epoch) under a multi-worker strategy: the workers' clocks
    differ, and every worker must make the same saving decision at the same epoch."""
    strategy = getattr(model, "distribute_strategy", None)
    return 0.0 if type(strategy).__name__.startswith("MultiWorker") else min_seconds


class DivergedError(TlkitError):
    """A NaN or infinite loss: the run stops, nothing is saved (the CLI exits with 3)."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raise `DivergedError` at the first NaN or infinite training loss.

    Unlike Keras's `TerminateOnNaN`, which ends `fit` as if it had finished, this stops the
    run with an error that names the phase, the epoch and the learning rate, so that no
    model trained into NaN is ever saved. Put it before `BackupAndRestore`: the diverged
    epoch is then never backed up.
    """

    def __init__(self, phase, learning_rate, epoch_offset=0):
        super().__init__()
        self.phase, self.learning_rate = phase, float(learning_rate)
        self.epoch_offset = epoch_offset
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check((logs or {}).get("loss"), self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._check((logs or {}).get("loss"), epoch)

    def _check(self, loss, epoch):
        if loss is None:
            return
        loss = float(loss)
        if math.isfinite(loss):
            return
        lr = self.learning_rate
        raise DivergedError(
            f"Training diverged in phase {self.phase!r} at epoch {epoch + 1 + self.epoch_offset} "
            f"(loss {loss}) with learning rate {lr:g}: nothing was saved. Try a lower rate, "
            f"e.g. --lr {lr / 10:g} (with --restart to discard the saved state).")


class EpochRecorder(keras.callbacks.Callback):
    """Append each finished epoch to `records` and rewrite `history.csv` and a state file.

    Each record has the phase, the run's global `epoch` (1-based, counting every phase), the
    phase's own `phase_epoch`, and Keras's logs. A resumed phase starts from the records it
    had; an epoch trained again after a kill replaces its earlier record.
    """

    def __init__(self, phase, records, *, offset=0, csv_path=None, state_path=None):
        super().__init__()
        self.phase, self.records, self.offset = phase, records, offset
        self.csv_path, self.state_path = csv_path, state_path

    def on_epoch_end(self, epoch, logs=None):
        row = {"phase": self.phase, "epoch": self.offset + epoch + 1, "phase_epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.records[:] = [r for r in self.records if r["epoch"] != row["epoch"]] + [row]
        if self.state_path is not None:
            fileio.write_json([r for r in self.records if r["phase"] == self.phase],
                              self.state_path)
        if self.csv_path is not None:
            write_history_csv(self.records, self.csv_path)


def write_history_csv(records, path):
    """history.csv: one row per epoch, the phase and the global epoch first."""
    keys = ["epoch", "phase", "phase_epoch"]
    for r in records:
        keys.extend(k for k in r if k not in keys)
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(",".join(keys) + "\n")
            for r in records:
                f.write(",".join(_cell(r.get(k, "")) for k in keys) + "\n")


def history_of(records):
    """Per-epoch lists (Keras's `History.history` form) from epoch records, with `phase`."""
    out = {"phase": [r["phase"] for r in records]}
    for r in records:
        for k, v in r.items():
            if k not in ("phase", "epoch", "phase_epoch"):
                out.setdefault(k, [])
    for k in list(out):
        if k != "phase":
            out[k] = [float(r.get(k, float("nan"))) for r in records]
    return out


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def make_callbacks(out_dir, phase_index, phase, records, *, patience=5, tensorboard=False,
                   extra=(), state=None, offset=0):
    """tlkit's callbacks for one phase, in order.

    `DivergenceGuard` (a NaN or infinite loss is an error), EarlyStopping on val_loss with
    the best weights restored, `EpochRecorder` (history.csv with the phase and the global
    epoch), `BestCheckpoint` of the phase's best weights, TensorBoard on request, and, given a
    `state` folder, Keras's `BackupAndRestore` there (last: it backs up only epochs that
    passed the guard), then `extra`. Both write at most every `MIN_SAVE_SECONDS`.
    """
    cbs = [DivergenceGuard(phase.name, phase.learning_rate, epoch_offset=offset),
           keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True, verbose=0)]
    csv = None
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        csv = out_dir / "history.csv"
        cbs.append(BestCheckpoint(
            str(out_dir / "checkpoints" / f"phase{phase_index + 1}.weights.h5")))
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard")))
    cbs.append(EpochRecorder(phase.name, records, offset=offset, csv_path=csv,
                                    state_path=state / "epochs.json" if state else None))
    if state is not None:
        cbs.append(InterruptSafeBackup(str(state / "backup"), double_checkpoint=True))
    return cbs + list(extra)


@contextlib.contextmanager
def sigint_deferred():
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it.

    Only the main thread can install signal handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
        else:
            raise KeyboardInterrupt


class InterruptSafeBackup(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore` whose epoch backup Ctrl-C cannot cut in half.

    A KeyboardInterrupt raised while `save_weights` writes leaves a well-formed HDF5 file with
    groups missing; on the rerun Keras loads it, fails with a ValueError (only an OSError makes
    it fall back to the previous backup) and the run cannot resume. The interrupt is held back
    until the backup is complete, so the rerun continues from that epoch.

    Backups are written at most every `min_seconds` (the first epoch always): a rerun after a
    kill continues from the last epoch backed up, and the epochs after it run again.
    """

    def __init__(self, backup_dir, *, min_seconds=MIN_SAVE_SECONDS, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.min_seconds = min_seconds
        self._saved_at = -math.inf

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self._saved_at < _throttle(self.model, self.min_seconds):
            return  # the next backup records its own epoch
        with sigint_deferred():
            super().on_epoch_end(epoch, logs)
        self._saved_at = time.monotonic()


class BestCheckpoint(keras.callbacks.Callback):
    """The phase's best weights by val_loss in `path`, written at most every `min_seconds`.

    Keras's `ModelCheckpoint(save_best_only=True)` writes at every improvement, which on
    cached features costs more than the epochs. Here an improvement within `min_seconds` of
    the last write is written at the end of training instead, when EarlyStopping (earlier in
    the list, same monitor) has restored the best weights. So the file holds the best weights
    once the phase ends; while it runs (or after a kill) it may hold an earlier best.
    """

    def __init__(self, path, *, monitor="val_loss", min_seconds=MIN_SAVE_SECONDS):
        super().__init__()
        self.path, self.monitor, self.min_seconds = str(path), monitor, min_seconds

    def on_train_begin(self, logs=None):
        self.best, self.pending, self._saved_at = math.inf, False, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or not value < self.best:
            return
        self.best, self.pending = value, True
        if time.monotonic() - self._saved_at >= _throttle(self.model, self.min_seconds):
            self._write()

    def on_train_end(self, logs=None):
        if self.pending:
            self._write()

    def _write(self):
        self.model.save_weights(self.path, overwrite=True)
        self.pending, self._saved_at = False, time.monotonic()

