"""Pretrained convolutional bases that take raw pixels, split into stages.

Layer: part of `tlkit.models`: builds models, knows no training.

A backbone is a flat Functional `keras.Model` from a raw image input (pixel values 0..255,
RGB) to a 4-D feature map. The model's own preprocessing sits inside the graph as standard
Keras layers (no Lambda, no custom classes), so a classifier built on it and saved as `.h5`
loads in plain Keras and takes raw pixels. Three sources:

- a registry name (`names()`): a `keras.applications` model with `include_top=False`;
- `zoo:NAME`: a from-scratch `tlkit.models.zoo` model cut below its classifier head;
- a path to a `.h5` / `.keras` classifier: its convolutional base, with its trained weights.

Preprocessing per family is keras.applications' `preprocess_input` as layers (`"tf"`,
`"torch"`, `"caffe"`, `"builtin"`: see `tlkit.models.backbones.preprocessing`).

Stages are the groups of layers between downsampling points, from input to output
(`compute_stages`); strategies freeze and unfreeze whole stages. The preprocessing layers
(`Backbone.preprocessing_layers`) always stay frozen.

The package's modules: `specs` (the registry and how a name is read), `preprocessing`,
`builders` (`build` for the three sources), `surgery` (a classifier's base, graphs rebuilt
flat for `.h5`), `stages` (`compute_stages`) and `backbone` (the `Backbone` and `Stage`
types, `describe`).

Example:
    >>> from tlkit.models import backbones
    >>> bb = backbones.build("mobilenet_v2", (96, 96, 3), weights=None)
    >>> bb.model.output_shape
    (None, 3, 3, 1280)
    >>> [s.resolution for s in bb.stages]
    [(48, 48), (24, 24), (12, 12), (6, 6), (3, 3)]
    >>> bb.preprocessing_layers
    ('preprocess_rescale',)
"""

from tlkit.models.backbones.backbone import Backbone, Stage, describe
from tlkit.models.backbones.builders import build, default_input_shape
from tlkit.models.backbones.preprocessing import (
    IMAGENET_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, preprocessing_layer_names,
)
from tlkit.models.backbones.specs import (
    MODEL_EXTENSIONS, PREPROCESSING_MODES, SOURCES, ZOO_PREFIX, BackboneSpec,
    names, spec,
)
from tlkit.models.backbones.stages import compute_stages

__all__ = ["BackboneSpec", "Stage", "Backbone", "names", "spec", "build", "compute_stages",
           "default_input_shape", "describe", "preprocessing_layer_names",
           "PREPROCESSING_MODES", "SOURCES"]
