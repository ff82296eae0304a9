"""First-layer filters: the kernel of a model's first convolution, which a picture can show.

Example:
    >>> from tlkit.models import zoo
    >>> first_layer_filters(zoo.build("simple_cnn", (28, 28, 1), 10)).shape
    (5, 5, 1, 10)
"""

import numpy as np

from tlkit.core.errors import TlkitError
from tlkit.explain.layers import is_preprocessing, walk


def first_layer_filters(model):
    """The kernel of the model's first weighted layer, which must be a Conv2D.

    Preprocessing layers (Rescaling, Normalization, ...) before it are skipped; nested base
    models are searched.

    Args:
        model: a `keras.Model`.

    Returns:
        float32 array (kernel_height, kernel_width, in_channels, filters), Keras' layout.

    Raises:
        TlkitError: when the first weighted layer is not a Conv2D.

    Example:
        >>> from tlkit.models import zoo
        >>> first_layer_filters(zoo.build("fashion_cnn", (28, 28, 1), 10)).shape
        (3, 3, 1, 32)
    """
    return np.asarray(first_conv(model).kernel, dtype="float32")


def first_conv(model):
    """The model's first weighted layer, checked to be a Conv2D (see `first_layer_filters`)."""
    import keras

    for path, layer in walk(model):
        if is_preprocessing(layer) or not layer.weights:
            continue
        if type(layer) is keras.layers.Conv2D:
            return layer
        raise TlkitError(f"The first weighted layer of model {model.name!r} is "
                         f"{'/'.join(path)!r} ({type(layer).__name__}), not a Conv2D: "
                         "there are no first-layer filters to show.")
    raise TlkitError(f"Model {model.name!r} has no weighted layer.")
