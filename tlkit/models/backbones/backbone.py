"""The `Backbone` and its `Stage`s: what `tlkit.models.backbones.build` returns."""

import dataclasses

import keras
import numpy as np

from tlkit.core.errors import TlkitError, suggest


@dataclasses.dataclass(frozen=True)
class Stage:
    """A group of consecutive layers at one feature-map resolution.

    Attributes:
        index: 0 for the stage next to the input.
        name: `"stage0"`, `"stage1"`, ...
        layers: layer names, in `model.layers` order.
        resolution: (height, width) of the stage's output feature map.
        params: parameters of the stage's layers, preprocessing layers not counted.
    """

    index: int
    name: str
    layers: tuple[str, ...]
    resolution: tuple[int, int]
    params: int


@dataclasses.dataclass
class Backbone:
    """A convolutional base: raw pixels in, a 4-D feature map out, split into stages.

    Attributes:
        name: what `build` was called with (registry name, `zoo:NAME` or a file path).
        model: the flat Functional `keras.Model`.
        input_shape: (height, width, channels) of the raw input.
        stages: `Stage`s from input to output; every stage has parameters.
        weights: `"imagenet"`, a weights file path, `None` (random) or, for a classifier
            file, the file's path.
        preprocessing_layers: names of the layers that turn raw pixels into the model's
            input range; they have no trainable weights and strategies never unfreeze them.
        source: `"keras.applications"`, `"zoo"` or `"file"`.
    """

    name: str
    model: keras.Model
    input_shape: tuple[int, int, int]
    stages: list[Stage]
    weights: str | None
    preprocessing_layers: tuple[str, ...]
    source: str

    def stage_of(self, layer_name):
        """The index of the stage that holds layer `layer_name`.

        Args:
            layer_name: a name from `model.layers`.

        Returns:
            The stage index (0 is next to the input).

        Example:
            >>> from tlkit.models.backbones import build
            >>> bb = build("vgg16", (32, 32, 3), weights=None)
            >>> bb.stage_of("block1_conv1"), bb.stage_of("block5_conv3")
            (0, 4)
        """
        for stage in self.stages:
            if layer_name in stage.layers:
                return stage.index
        raise suggest(layer_name, [l.name for l in self.model.layers], f"layer in {self.name}:")

    def layers_of(self, stage_indices):
        """The layers of the given stages, in `model.layers` order.

        Args:
            stage_indices: one index or an iterable of them; negative ones count from the
                last stage (`-1` is the stage next to the output).

        Returns:
            A list of `keras.layers.Layer` (preprocessing layers included when they are in
            one of the stages: skip `preprocessing_layers` before unfreezing).

        Example:
            >>> from tlkit.models.backbones import build
            >>> bb = build("vgg16", (32, 32, 3), weights=None)
            >>> [l.name for l in bb.layers_of(-1)]  # a stage starts at its downsampling
            ['block4_pool', 'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']
        """
        if isinstance(stage_indices, (int, np.integer)):
            stage_indices = [stage_indices]
        n = len(self.stages)
        wanted = set()
        for i in stage_indices:
            if not isinstance(i, (int, np.integer)) or not -n <= i < n:
                raise TlkitError(f"No stage {i!r} in {self.name}: it has {n} stages, "
                                 f"indices 0..{n - 1} (or -{n}..-1).")
            wanted.update(self.stages[i].layers)
        return [l for l in self.model.layers if l.name in wanted]


def describe(backbone):
    """A printable table of the stages of `backbone`.

    Args:
        backbone: a `Backbone`.

    Returns:
        A multi-line string: a header line, the preprocessing layers, one row per stage.

    Example:
        >>> from tlkit.models.backbones import build
        >>> print(describe(build("vgg16", (32, 32, 3), weights=None)))  # doctest: +ELLIPSIS
        vgg16 (keras.applications, weights=None): input 32x32x3 -> (1, 1, 512), 14,714,688 params
        preprocessing (always frozen): preprocess_caffe
        stage   resolution  layers       params
        stage0  32x32            4       38,720
        stage1  16x16            3      221,440
        ...
    """
    m = backbone.model
    shape = "x".join(map(str, backbone.input_shape))
    skip = set(backbone.preprocessing_layers)
    total = sum(l.count_params() for l in m.layers if l.name not in skip)
    lines = [f"{backbone.name} ({backbone.source}, weights={backbone.weights}): input {shape} "
             f"-> {tuple(m.output.shape[1:])}, {total:,} params",
             f"preprocessing (always frozen): {', '.join(backbone.preprocessing_layers) or 'none'}",
             f"{'stage':<7} {'resolution':<11} {'layers':>6} {'params':>12}"]
    for s in backbone.stages:
        res = "x".join(map(str, s.resolution)) if s.resolution else "-"
        lines.append(f"{s.name:<7} {res:<11} {len(s.layers):>6} {s.params:>12,}")
    return "\n".join(lines)
