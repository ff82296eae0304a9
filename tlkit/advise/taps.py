"""Tapping every stage of a frozen base in one pass: pooled features per stage.

Example:
    >>> from tlkit.models import backbones
    >>> bb = backbones.build("zoo:simple_cnn", (28, 28, 1), weights=None)
    >>> model = stage_model(bb.model, bb.stages)
    >>> [tuple(o.shape) for o in model.outputs]
    [(None, 10), (None, 20)]
"""

import sys

import keras
import numpy as np
from tlkit import data as data_lib


def stage_model(base, stages):
    """A model from `base`'s input to the global average pool of each stage's output."""
    outputs = []
    for stage in stages:
        out = base.get_layer(stage.layers[-1]).output
        if len(out.shape) == 4:
            out = keras.layers.GlobalAveragePooling2D(name=f"tap_{stage.name}")(out)
        elif len(out.shape) != 2:
            out = keras.layers.Flatten(name=f"tap_{stage.name}")(out)
        outputs.append(out)
    return keras.Model(base.inputs, outputs, name=f"{base.name}_stage_taps")


def features(tapped, x, y, *, batch_size=32, verbose=0):
    """`([features of each stage], labels)` of images `x` (arrays or streamed files).

    One forward pass; features are written batch by batch into preallocated arrays, and the
    labels are those of the images actually read (a file that fails to decode has no row).
    """
    n = len(x)
    outs = [np.empty((n, int(o.shape[-1])), "float32") for o in tapped.outputs]
    labels, row = [], 0
    # Keras's bar on a terminal; off one (a log, a pipe) Keras's verbose=2: one line at the end
    bar = keras.utils.Progbar(n, unit_name="image", verbose=1 if sys.stdout.isatty() else 2) \
        if verbose else None
    for images, batch_labels in data_lib.model_batches(data_lib.pipeline(x, y,
                                                                      batch_size=batch_size)):
        got = tapped.predict_on_batch(images)
        got = got if isinstance(got, (list, tuple)) else [got]
        k = len(batch_labels)
        for out, g in zip(outs, got):
            out[row:row + k] = np.asarray(g)
        labels.append(np.asarray(batch_labels))
        row += k
        if bar:
            bar.update(row)
    return [o[:row] for o in outs], (np.concatenate(labels) if labels else
                                     np.zeros(0, np.int64))
