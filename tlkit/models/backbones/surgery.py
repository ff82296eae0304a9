"""Graph surgery: a classifier's convolutional base, and graphs rebuilt flat for `.h5`.

`_head_entrance` finds where a classifier's head starts, `_nested_base` the sub-model that
feeds it, and `_rebuild` replays a graph with fresh copies of its layers, inlining a nested
base and turning keras ops that `.h5` cannot load into layers. The graph is read through
`tlkit.core.compat`.
"""

import keras
import numpy as np
from keras import layers

from tlkit.core import compat
from tlkit.core.errors import TlkitError
from tlkit.models.backbones.stages import _is_spatial, _nodes_in, _parents


def _nested_base(model, label):
    """The sub-model that feeds the classifier head (Input -> base -> pooling -> dense), or
    None when the head reads a plain layer; and whether layers come before that base."""
    entrance = _head_entrance(model, label)
    base = compat.producer(entrance)[0]
    if not isinstance(base, keras.Model):
        return None, False
    upstream = not all(isinstance(p, layers.InputLayer) for p in _parents(base, model))
    return base, upstream


def _outer_output(layer, model):
    return _nodes_in(layer, model)[0].outputs[0]


def _flatten(outer, base, input_shape, name, label):
    """Rebuild `outer` up to its base on a new input, with `base` expanded into its layers."""
    target = _outer_output(base, outer) if base is not None else _head_entrance(outer, label)
    trunk = keras.Model(outer.inputs[0], target)
    return _rebuild(trunk, input_shape, name, expand=base)


_MERGE_LAYERS = {"Add": layers.Add, "Multiply": layers.Multiply, "Subtract": layers.Subtract}


def _needs_standard_layers(model):
    return any(_is_layer_scale(op) or (not isinstance(op, layers.Layer)
                                       and type(op).__name__ in _MERGE_LAYERS)
               for op in model.operations)


def _is_layer_scale(op):
    return type(op).__name__ == "LayerScale" and hasattr(op, "gamma")


def _rebuild(graph, input_shape, name, expand=None):
    """Replay Functional `graph` on a new `keras.Input(input_shape)` with fresh copies of its
    layers (from their configs, weights copied), so that the result is one flat graph whose
    layers each have a single inbound node and that the legacy `.h5` format can load:

    - `expand` (a nested Functional/Sequential called in `graph`) is inlined layer by layer;
    - keras ops in the graph, which `.h5` cannot deserialize, become layers: `x + y`,
      `x * y`, `x - y` (ConvNeXt's residuals) become `Add`/`Multiply`/`Subtract`, and
      `x + c`, `x * c` with a number (MobileNetV3's hard sigmoid) `Rescaling` (the same
      arithmetic);
    - ConvNeXt's `LayerScale` (not a registered Keras class: `.h5` cannot load it) becomes a
      bias-free 1x1 `DepthwiseConv2D` with the same per-channel factors.
    """
    pairs = []  # (old layer, new layer): weights are copied once the graph is built

    def clone(op):
        if _is_layer_scale(op):
            new = layers.DepthwiseConv2D(1, use_bias=False, name=op.name)
        elif isinstance(op, layers.Layer):
            new = type(op).from_config(op.get_config())
        else:
            return _op_fn(op)
        pairs.append((op, new))
        return new

    counter = [0]

    def _op_fn(op):
        kind = type(op).__name__

        def call(*args, **kwargs):
            if kind not in _MERGE_LAYERS or len(args) != 2 or kwargs:
                return op(*args, **kwargs)  # another stateless keras op: reuse it
            counter[0] += 1
            numbers = [a for a in args if isinstance(a, (int, float, np.number))]
            if not numbers:
                return _MERGE_LAYERS[kind](name=f"{name}_{kind.lower()}_{counter[0]}")(list(args))
            x = next(a for a in args if not isinstance(a, (int, float, np.number)))
            c = float(numbers[0])
            if kind == "Add" and len(numbers) == 1:
                return layers.Rescaling(1.0, offset=c, name=f"{name}_offset_{counter[0]}")(x)
            if kind == "Multiply" and len(numbers) == 1:
                return layers.Rescaling(c, name=f"{name}_scale_{counter[0]}")(x)
            return op(*args, **kwargs)

        return call

    def operation_fn(op):
        if expand is not None and op is expand:
            return inline
        return clone(op)

    def inline(x, *args, **kwargs):
        if isinstance(expand, keras.Sequential):
            for layer in expand.layers:
                x = clone(layer)(x)
            return x
        return compat.run_through_graph(expand, x, clone)

    inputs = keras.Input(input_shape, name=graph.inputs[0].name)
    outputs = compat.run_through_graph(graph, inputs, operation_fn)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    model = keras.Model(inputs, outputs, name=name)
    for old, new in pairs:
        _copy_weights(new, old)
    return model


def _copy_weights(dst, src):
    """`dst.set_weights(src.get_weights())`, reshaping where only the shape differs."""
    values = src.get_weights()
    if len(values) != len(dst.weights):
        raise ValueError(f"cannot copy the weights of {src.name} into {dst.name}")
    dst.set_weights([np.reshape(v, w.shape) for v, w in zip(values, dst.weights)])
    if values and hasattr(dst, "finalize_state"):
        dst.finalize_state()  # Normalization reads its adapted variables only there


def _standard_layers(model):
    """`model` itself, or a rebuilt copy when it holds pieces `.h5` cannot load."""
    if not _needs_standard_layers(model):
        return model
    return _rebuild(model, tuple(model.inputs[0].shape[1:]), model.name)


def _head_entrance(model, label=None):
    """The 4-D tensor that enters the classifier head: walking back from the output through
    the non-spatial layers (Dense, Dropout, Flatten, global pooling), the first 4-D one."""
    t = model.outputs[0]
    while not _is_spatial(tuple(t.shape)):
        op, node_index, _ = compat.producer(t)
        node = compat.inbound_nodes(op)[node_index]
        if node.is_input or not node.input_tensors:
            t = None
            break
        t = node.input_tensors[0]
    if t is None or any(t is x for x in model.inputs):
        raise TlkitError(f"{label or model.name!r} has no convolutional (4-D) layer to use as "
                         f"a backbone.")
    return t
