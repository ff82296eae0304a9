"""Grad-CAM (Selvaraju et al. 2017): where in an image the evidence for a class lies.

The class score is the logit (before softmax) when the model ends in a Dense softmax or
sigmoid layer, else the model output. The heatmap is the ReLU of the feature maps at a
layer, weighted by the mean gradient of the score over each channel, divided by its peak.
Nested bases are reached through `tlkit.explain.taps`.

Example:
    >>> import numpy as np
    >>> from tlkit.models import zoo
    >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
    >>> heatmap, class_index, probs = gradcam(model, np.zeros((28, 28, 1)) + 128)
    >>> heatmap.shape, probs.shape   # at block2_relu, fashion_cnn's last conv output
    ((12, 12), (10,))
"""

import numpy as np

from tlkit.core import compat
from tlkit.core.errors import TlkitError
from tlkit.explain.layers import display_name, last_layer, resolve
from tlkit.explain.taps import as_batch, tap_model


class GradCam:
    """Grad-CAM for one model and layer, built once and called for many images.

    Args:
        model: a `keras.Model` taking raw pixels (TensorFlow backend).
        layer: a name from `conv_layers(model)`; default `last_layer(model)`.

    Calling it as `cam(image, class_index=None)` returns what `gradcam` returns.
    """

    def __init__(self, model, layer=None):
        import keras

        require_backend()
        self.model = model
        self.path = last_layer(model) if layer is None else resolve(model, layer)
        self.layer = display_name(model, self.path)
        out = model.layers[-1] if model.layers else None
        act = getattr(getattr(out, "activation", None), "__name__", "")
        # Grad-CAM uses the class score before softmax: tap the input of a final
        # Dense(softmax|sigmoid) and compute its logits under the tape.
        self.dense = out if isinstance(out, keras.layers.Dense) and act in (
            "softmax", "sigmoid") and getattr(out, "quantization_mode", None) is None else None
        self.tapped = tap_model(model, [self.path], output_layer=self.dense)
        self.num_outputs = int(model.outputs[0].shape[-1])
        self.num_classes = 2 if self.num_outputs == 1 else self.num_outputs

    def __call__(self, image, class_index=None):
        import tensorflow as tf

        x = tf.convert_to_tensor(as_batch(image, self.model))
        with tf.GradientTape() as tape:
            outs = self.tapped(x, training=False)
            feats, preds = outs[0], outs[1]
            if self.dense is not None:
                logits = tf.matmul(outs[-1], tf.convert_to_tensor(self.dense.kernel))
                if self.dense.use_bias:
                    logits = logits + tf.convert_to_tensor(self.dense.bias)
            else:
                logits = preds
            if self.num_outputs == 1:  # one sigmoid unit: class 1 is the unit, class 0 is 1 - it
                p = float(preds[0, 0])
                probs = np.array([1.0 - p, p], dtype="float32")
                logits = tf.concat([-logits, logits], axis=-1)
            else:
                probs = np.asarray(preds[0], dtype="float32")
            if class_index is None:
                class_index = int(np.argmax(probs))
            class_index = check_index(class_index, len(probs))
            score = logits[:, class_index]
        grads = tape.gradient(score, feats)
        if grads is None:
            raise TlkitError(f"The prediction does not depend on layer {self.layer!r}; "
                             "choose a layer before the classifier head.")
        feats, grads = np.asarray(feats[0]), np.asarray(grads[0])
        weights = grads.mean(axis=(0, 1))
        cam = np.maximum((feats * weights).sum(axis=-1), 0.0)
        peak = cam.max()
        cam = cam / peak if peak > 0 else np.zeros_like(cam)
        return cam.astype("float32"), class_index, probs


def require_backend():
    """Refuse Grad-CAM on a backend other than TensorFlow (it takes gradients with
    `tf.GradientTape`), in one line that names the backend."""
    compat.require_tensorflow("Grad-CAM (tlkit explain --method gradcam: tf.GradientTape)",
                              "; --method feature-maps and filters run on any backend")


def check_index(class_index, n):
    """`class_index` as an int in 0..n-1, or a `TlkitError` saying what is valid."""
    try:
        i = int(class_index)
    except (TypeError, ValueError):
        i = None
    if i is None or i != class_index or not 0 <= i < n:
        raise TlkitError(f"class_index must be an int in 0..{n - 1}. "
                         f"Received: class_index={class_index!r}.")
    return i


def gradcam(model, image, class_index=None, layer=None):
    """Grad-CAM heatmap: where in `image` the evidence for a class lies, at `layer`'s resolution.

    Works on flat models and on transfer models whose conv base is a nested model.

    Args:
        model: a `keras.Model` taking raw pixels (TensorFlow backend).
        image: one image, (height, width, channels), raw pixels 0..255.
        class_index: class to explain; default the predicted class. For a model with one
            sigmoid unit, class 1 is the unit and class 0 its complement.
        layer: a name from `conv_layers(model)`; default the last convolution's output (after
            its BN / activation, before pooling), e.g. `out_relu` in MobileNetV2.

    Returns:
        (heatmap, class_index, probs): heatmap is float32 (h, w) in [0, 1] at the layer's
        resolution (all zeros when no positive evidence); probs is the model's output (1-D).

    Example:
        >>> import numpy as np
        >>> from tlkit.models import zoo
        >>> model = zoo.build("fashion_cnn", (28, 28, 1), 10)
        >>> heatmap, k, probs = gradcam(model, np.full((28, 28, 1), 128.0), 3, "block1_relu")
        >>> heatmap.shape, k
        ((28, 28), 3)
    """
    return GradCam(model, layer)(image, class_index)
