"""The run's files written at most every few seconds: the epoch backup and the best weights."""

import json

import keras
import numpy as np
import pytest

from tlkit.training.callbacks import BestCheckpoint, InterruptSafeBackup


def _model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    m.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    return m


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("killed")


@pytest.mark.parametrize("min_seconds, backed_up", [(3600, 1), (0, 3)])
def test_the_backup_is_written_after_the_first_epoch_then_at_most_every_min_seconds(
        tmp_path, min_seconds, backed_up):
    x, y = _data()
    backup = InterruptSafeBackup(str(tmp_path / "backup"), min_seconds=min_seconds,
                                 double_checkpoint=True)
    with pytest.raises(RuntimeError, match="killed"):
        _model().fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                     callbacks=[backup, _StopAt(3)])
    meta = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == backed_up  # a rerun continues after this epoch


def test_the_checkpoint_holds_the_best_weights_when_the_phase_ends(tmp_path):
    x, y = _data()
    path = tmp_path / "best.weights.h5"
    model = _model()
    writes = []
    ckpt = BestCheckpoint(str(path), min_seconds=3600)
    original = ckpt._write
    ckpt._write = lambda: (writes.append(1), original())
    model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=8, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=8, restore_best_weights=True),
                         ckpt])
    # one write after the first epoch (an improvement), one at the end for the best epoch
    assert len(writes) == 2
    best = [w.copy() for w in model.get_weights()]  # EarlyStopping restored the best epoch
    other = _model()
    other.load_weights(path)
    for a, b in zip(best, other.get_weights()):
        np.testing.assert_array_equal(a, b)
