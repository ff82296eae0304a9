"""What a model looks at: feature maps, Grad-CAM and first-layer filters.

Layer: a tool on the layers below (data, models, deploy's saved models); no workflow
imports it, and it imports none.

Every tlkit model takes raw pixels (0..255, float, (height, width, channels)); images passed
here are raw pixels too, never preprocessed. The computing functions return numpy arrays and
write nothing; the `save_*` functions write labelled PNG figures; `explain_path` is the one
call behind `tlkit explain`.

The package, one concept a module:
    - `layers`: naming layers (`conv_layers`, `default_layers`), nested bases included;
    - `taps`: one model from the input to `[taps..., predictions]`, and `feature_maps`;
    - `cam`: Grad-CAM (`gradcam`, `GradCam` for many images);
    - `filters`: the first convolution's kernel (`first_layer_filters`);
    - `grids`: the pictures as arrays (tiles, the Grad-CAM overlay);
    - `figures`: the labelled figures and the PNGs (`save_gradcam`, `save_feature_maps`,
      `save_filter_grid`);
    - `run`: `explain_path` (a saved model and image files in, PNGs out).

Example:
    >>> import numpy as np
    >>> from tlkit.models import zoo
    >>> from tlkit.explain import conv_layers, gradcam
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> conv_layers(model)[:3]
    ['block1_conv', 'block1_bn', 'block1_relu']
    >>> heatmap, class_index, probs = gradcam(model, np.zeros((28, 28, 1)) + 128)
    >>> heatmap.shape, probs.shape   # at block2_relu, fashion_cnn's last conv output
    ((12, 12), (10,))
"""

from tlkit.data.decode import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from tlkit.data.listing import image_files
from tlkit.explain.cam import GradCam, gradcam
from tlkit.explain.figures import (MIN_SIDE, feature_maps_figure, filters_figure,
                                   gradcam_figure, save_feature_maps, save_filter_grid,
                                   save_gradcam)
from tlkit.explain.filters import first_layer_filters
from tlkit.explain.grids import (MAX_CHANNELS, feature_grid, filter_grid, gradcam_overlay,
                                 grid_shape)
from tlkit.explain.layers import conv_layers, default_layers
from tlkit.explain.run import METHODS, explain_path, load_image, read_class_names
from tlkit.explain.taps import FeatureMaps, feature_maps

__all__ = ["METHODS", "IMAGE_SUFFIXES", "MAX_CHANNELS", "MIN_SIDE", "conv_layers",
           "default_layers", "feature_maps", "FeatureMaps", "gradcam", "GradCam",
           "first_layer_filters", "feature_grid", "filter_grid", "grid_shape",
           "gradcam_overlay", "gradcam_figure", "feature_maps_figure", "filters_figure",
           "save_feature_maps", "save_gradcam", "save_filter_grid", "read_class_names",
           "image_files", "load_image", "explain_path"]
