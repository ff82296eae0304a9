"""`tlkit.lr_find`: load the data, build the model `tlkit.finetune` would train, and sweep its
learning rate (`tlkit.training.lr_sweep.sweep`, where the rule and the files are described).

Example:
    >>> from tlkit.workflows.lr_find import lr_find
    >>> r = lr_find("digits", backbone="mobilenet_v2", weights=None,
    ...             image_size=32, steps=30, verbose=0)  # doctest: +SKIP
    >>> r.suggested_lr > 0  # doctest: +SKIP
    True
"""

import keras

from tlkit import data as data_lib
from tlkit.core import fileio
from tlkit.data import data_folder
from tlkit.models import backbones as backbones_lib
from tlkit.models.backbones.builders import resolve_input_shape
from tlkit.training import strategies
from tlkit.training.lr_sweep import (DEFAULT_MAX_LR, DEFAULT_MIN_LR, DEFAULT_STEPS, check_range,
                                     sweep)
from tlkit.training.runs import check_not_a_run


def lr_find(data, backbone="mobilenet_v2", strategy="small-similar", *, weights="imagenet",
            image_size=None, out_dir=None, phase=0, min_lr=DEFAULT_MIN_LR,
            max_lr=DEFAULT_MAX_LR, steps=DEFAULT_STEPS, batch_size=32, seed=0,
            val_fraction=0.1, test_fraction=0.1, on_bad_image="skip", download=False,
            resize="squash", index=None, exclude=None, relabel=None, dropout=None, dense=(),
            head_bn="none", pooling="avg", unfreeze=None, cut_stage=None, autotune=None,
            verbose=1):
    """Build the model `tlkit.finetune` would train and sweep its learning rate (`sweep`).

    The arguments mean what they mean for `tlkit.finetune`; `out_dir` receives
    `lr_find.png` and `lr_find.json` (None: no files). Returns an `LRFindResult`.
    """
    check_range(min_lr, max_lr, steps)
    if out_dir is not None:
        fileio.check_outside(out_dir, data_folder(data), "--out")
        check_not_a_run(out_dir, "--out")
    strategies.get(strategy)  # validated before any data is read
    shape = resolve_input_shape(backbone, image_size)
    load = {} if isinstance(data, data_lib.Dataset) else dict(
        resize=resize, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        on_bad_image=on_bad_image, download=download, index=index, exclude=exclude,
        relabel=relabel, verbose=verbose)
    dataset = data_lib.load_for(data, shape, **load)
    keras.utils.set_random_seed(seed)
    bb = backbones_lib.build(backbone, shape, weights=weights)
    plan = strategies.plan(strategy, bb, dataset.summary(), epochs=2, dropout=dropout,
                           dense=dense, head_bn=head_bn, pooling=pooling, unfreeze=unfreeze,
                           cut_stage=cut_stage)
    model = plan.build_model(dataset.num_classes)
    return sweep(model, plan, dataset, phase=phase, min_lr=min_lr, max_lr=max_lr, steps=steps,
                 batch_size=batch_size, seed=seed, autotune=autotune, out_dir=out_dir,
                 verbose=verbose)
