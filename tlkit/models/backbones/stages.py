"""Stages: the groups of layers between downsampling points, computed from any graph.

Strategies freeze and unfreeze whole stages. The graph is walked through
`tlkit.core.compat` (Keras has no public API for a layer's inbound nodes).
"""

import keras
import numpy as np
from keras import layers

from tlkit.core import compat
from tlkit.models.backbones.backbone import Stage


def _as_functional(model):
    """`model` as a Functional model (a Sequential is wrapped)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def compute_stages(model, skip=()):
    """Split a Functional model into stages: the layer groups between downsampling points.

    Every layer gets a "trunk resolution": the output resolution of an input or of a
    downsampling layer (a 4-D layer whose output is smaller than its input; stride-1
    "valid" convolutions and global pooling do not count), otherwise the smallest one among
    the layers it reads from. So padding belongs with the layers before the stride,
    branches (ResNet shortcuts, Inception towers, DenseNet concatenations,
    squeeze-and-excite) stay in the stage they start from, and layers after the last 4-D
    one (a head) go in the last stage. Stages are the distinct trunk resolutions, largest
    first. A stage without parameters (the input and preprocessing, a final pooling) is
    merged into the next stage, or the previous one at the end, so that every stage has
    parameters.

    Args:
        model: a Functional `keras.Model` with a static input shape.
        skip: names of layers whose parameters do not count (the preprocessing layers).

    Returns:
        A list of `Stage`, input side first.

    Example:
        >>> from tlkit.models.backbones import build
        >>> bb = build("vgg16", (32, 32, 3), weights=None)
        >>> [(s.resolution, len(s.layers)) for s in compute_stages(bb.model)]
        [((32, 32), 4), ((16, 16), 3), ((8, 8), 4), ((4, 4), 4), ((1, 1), 5)]
    """
    model = _as_functional(model)
    skip = set(skip)
    trunk = {}
    for op in model.operations:
        nodes = _nodes_in(op, model)
        node = nodes[0] if nodes else None
        out_shape = _output_shape(op, node)
        parents = _parents(op, model)
        res = [trunk[p] for p in parents if trunk.get(p) is not None]
        if not parents or node is None or node.is_input:
            trunk[op] = _hw(out_shape)
        elif _downsamples(op, node, out_shape):
            trunk[op] = _hw(out_shape)
        else:
            trunk[op] = min(res, key=_area) if res else _hw(out_shape)
    sizes = sorted({r for r in trunk.values() if r is not None}, key=_area, reverse=True)
    groups = [[] for _ in sizes] or [[]]
    for layer in model.layers:
        r = trunk.get(layer)
        groups[sizes.index(r) if r is not None else -1].append(layer)
    resolutions = list(sizes) or [None]

    def params(group):
        return sum(l.count_params() for l in group if l.name not in skip)

    merged = []  # [layers, resolution]
    pending = []
    for group, r in zip(groups, resolutions):
        pending += group
        if params(group) > 0:
            merged.append([pending, r])
            pending = []
    if pending:
        if merged:
            merged[-1][0] += pending
            merged[-1][1] = resolutions[-1]
        else:
            merged.append([pending, resolutions[-1]])
    order = {id(l): i for i, l in enumerate(model.layers)}
    stages = []
    for i, (group, r) in enumerate(merged):
        group.sort(key=lambda l: order[id(l)])
        stages.append(Stage(index=i, name=f"stage{i}", layers=tuple(l.name for l in group),
                            resolution=r, params=params(group)))
    return stages


def _nodes_in(op, model):
    """The inbound nodes of `op` that belong to `model`'s graph."""
    return compat.nodes_in(op, model)


def _parents(op, model):
    parents = []
    for node in _nodes_in(op, model):
        for t in node.input_tensors:
            history = compat.producer(t)
            if history is not None and history[0] not in parents:
                parents.append(history[0])
    return parents


def _output_shape(op, node=None):
    if node is not None and node.outputs:
        return tuple(node.outputs[0].shape)
    try:
        return tuple(op.output.shape)
    except Exception:
        return ()


def _is_spatial(shape):
    return len(shape) == 4


def _hw(shape):
    return (shape[1], shape[2]) if _is_spatial(shape) and None not in shape[1:3] else None


def _area(hw):
    return hw[0] * hw[1]


_GLOBAL_POOLING = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)


def _downsamples(op, node, out_shape):
    out = _hw(out_shape)
    if out is None or isinstance(op, _GLOBAL_POOLING):
        return False
    ins = [_hw(tuple(t.shape)) for t in node.input_tensors]
    ins = [r for r in ins if r is not None]
    if not ins or _area(out) >= max(_area(r) for r in ins):
        return False
    strides = getattr(op, "strides", None)
    if strides is not None and all(s == 1 for s in np.ravel(strides)):
        return False  # a "valid" convolution trims the border: same stage
    return True
