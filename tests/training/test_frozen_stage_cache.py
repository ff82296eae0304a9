"""The fine-tuning phase's cache of the frozen stages below the unfrozen ones."""

import numpy as np

from tlkit.models import backbones
from tlkit.training import frozen, strategies, train


def test_fine_tune_phase_from_disk_and_without_a_folder(tiny_digits, tmp_path, capsys):
    bb = backbones.build("mobilenet_v2", (32, 32, 3), weights=None)

    def run(**kw):
        p = strategies.plan("large-similar", bb, epochs=2, unfreeze=1)
        return train.fit(p, tiny_digits, augment=False, seed=1, **kw)

    # Over the memory limit with a folder: memory-mapped from disk, predictions still those
    # of the full model.
    disk = run(cache_dir=tmp_path / "c", cache_memory_limit=0, verbose=0)
    fine = disk.info["phases"][1]
    assert fine["cached"] and fine["cache"]["train"]["where"] == "disk"
    assert len(fine["cache"]["train_features"]) == 4  # a feature map, not pooled features
    extractor, trainer = frozen.frozen_prefix_split(disk.model)
    x = tiny_digits.x_test.astype("float32")
    np.testing.assert_allclose(trainer.predict(extractor.predict(x, verbose=0), verbose=0),
                               disk.model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    # Spilled to the run's folder only for lack of memory (no cache_dir): removed afterwards.
    spill = run(out_dir=tmp_path / "run", cache_memory_limit=0, verbose=0)
    assert spill.info["phases"][1]["cache"]["train"]["where"] == "disk"
    assert not list((tmp_path / "run" / "feature_cache").glob("*.npy"))
    # Over the limit and nowhere to put it: the phase trains on images, and says why.
    p = strategies.plan("large-similar", bb, epochs=2, unfreeze=1)
    fine_only = strategies.Plan(p.strategy, p.backbone, [p.phases[1]], p.head)
    capsys.readouterr()
    live = train.fit(fine_only, tiny_digits, augment=False, seed=1, cache_memory_limit=0,
                     verbose=1)
    assert live.info["phases"][0]["cached"] is False
    assert "trains without a feature cache" in capsys.readouterr().out
