"""Preprocessing inside the graph: raw pixels (0..255, RGB) to a backbone's input range.

As keras.applications' `preprocess_input` does it, per family (`BackboneSpec.preprocessing`),
with standard layers only (no Lambda), so that a saved `.h5` loads in plain Keras:

- `"tf"`: `Rescaling(1/127.5, offset=-1)` (pixels to -1..1);
- `"torch"`: `Rescaling(1/255)` then `Normalization` with the ImageNet mean and std;
- `"caffe"`: RGB to BGR and minus the ImageNet BGR mean, as one frozen 1x1 `Conv2D` whose
  kernel is the channel permutation and whose bias is the negative mean;
- `"builtin"`: the application has it already (EfficientNet, ConvNeXt, MobileNetV3).
"""

import keras
import numpy as np
from keras import layers

# keras.applications.imagenet_utils: caffe subtracts the mean in BGR order, torch uses RGB.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def _preprocessing(x, mode):
    """Apply the `mode` preprocessing as standard layers; return (tensor, layer names)."""
    if mode == "tf":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_rescale")(x)
        return x, ("preprocess_rescale",)
    if mode == "torch":
        x = layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(x)
        x = layers.Normalization(mean=list(IMAGENET_MEAN_RGB),
                                 variance=[s ** 2 for s in IMAGENET_STD_RGB],
                                 name="preprocess_normalize")(x)
        return x, ("preprocess_rescale", "preprocess_normalize")
    if mode == "caffe":
        # out[..., j] = in[..., 2 - j] - mean_bgr[j]: RGB -> BGR, then minus the mean.
        conv = layers.Conv2D(3, 1, trainable=False, name="preprocess_caffe")
        x = conv(x)
        _set_caffe_weights(conv)
        return x, ("preprocess_caffe",)
    return x, ()


def _set_caffe_weights(layer_or_model):
    """Set the caffe preprocessing conv: out[..., j] = in[..., 2 - j] - mean_bgr[j]."""
    conv = layer_or_model
    if isinstance(conv, keras.Model):
        conv = next((l for l in conv.layers if l.name == "preprocess_caffe"), None)
    if conv is None:
        return
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for j in range(3):
        kernel[0, 0, 2 - j, j] = 1.0
    conv.set_weights([kernel, -np.asarray(IMAGENET_MEAN_BGR, dtype="float32")])


def _fix_efficientnet_normalization(model):
    """Fold keras' EfficientNet ImageNet variance fix into the Normalization layer.

    keras' ImageNet EfficientNet files store the std (not std**2) as the Normalization
    variance, and `EfficientNetB*(weights="imagenet")` adds a `Rescaling(1/sqrt(std))` after
    it; that layer is missing when weights come from a file. When the loaded variance is the
    ImageNet std, set it to std**2: the same arithmetic with the layers we have.
    """
    for layer in model.layers:
        if isinstance(layer, layers.Normalization) and hasattr(layer, "adapt_variance"):
            var = np.asarray(layer.adapt_variance).reshape(-1)
            if var.shape == (3,) and np.allclose(var, IMAGENET_STD_RGB, atol=1e-3):
                layer.adapt_variance.assign(np.reshape(var ** 2, layer.adapt_variance.shape))
                layer.finalize_state()
            return


def preprocessing_layer_names(model):
    """Names of the layers of `model` that only rescale raw pixels.

    Those are the layers named `preprocess_*`, and the `Rescaling`/`Normalization` layers
    before the first layer with weights (keras.applications' built-in preprocessing).

    Args:
        model: a Functional `keras.Model`.

    Returns:
        A tuple of layer names, in `model.layers` order.

    Example:
        >>> from tlkit.models.backbones import build
        >>> preprocessing_layer_names(build("efficientnet_b0", (32, 32, 3), weights=None).model)
        ('rescaling', 'normalization')
    """
    found, leading = [], True
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if layer.name.startswith("preprocess_") or (
                leading and isinstance(layer, (layers.Rescaling, layers.Normalization))):
            found.append(layer.name)
        elif layer.weights:
            leading = False
    return tuple(found)
