"""Array sources kept in memory (`npz:`, `fashion_mnist`, `digits`) and array conversion.

These sources are arrays to begin with, so they stay arrays behind the same `Dataset`
interface as image folders; everything else streams from disk (`tlkit.data.files`).

Example:
    >>> convert_images(np.zeros((2, 8, 8), np.uint8), image_size=(4, 6), channels=3).shape
    (2, 4, 6, 3)
"""

import gzip
import numbers
import os

import numpy as np

from tlkit.core.errors import TlkitError

FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
_CHUNK = 512  # images resized per tf.image.resize call (bounds the float32 copy)


def convert_images(x, image_size=None, channels=None):
    """Resize images and convert their channels; returns a new uint8 array, `x` is unchanged.

    Resizing is `tf.image.resize` (bilinear, antialias); grayscale becomes RGB by copying the
    channel, RGB becomes grayscale with ITU-R 601 luma weights, RGBA drops its alpha.

    Args:
        x: images (N, H, W) or (N, H, W, C) with C in 1, 3, 4; values 0..255.
        image_size: int or (height, width); None keeps the size.
        channels: 1 or 3; None keeps grayscale grayscale and makes RGBA RGB.

    Returns:
        uint8 array (N, height, width, channels).
    """
    import tensorflow as tf

    original = x
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise TlkitError(f"Images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4. "
                         f"Received: shape={tuple(x.shape)}.")
    size = size_arg(image_size)
    if channels not in (None, 1, 3):
        raise TlkitError(f"channels must be 1, 3 or None. Received: channels={channels!r}.")
    if x.dtype != np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    target = channels or (1 if x.shape[-1] == 1 else 3)
    if target < x.shape[-1]:
        x = _to_channels(x, target)  # fewer channels first: less to resize
    if size and size != x.shape[1:3]:
        out = np.empty((len(x), *size, x.shape[-1]), np.uint8)
        for i in range(0, len(x), _CHUNK):
            resized = tf.image.resize(x[i:i + _CHUNK], size, antialias=True).numpy()
            out[i:i + _CHUNK] = np.clip(np.round(resized), 0, 255)
        x = out
    x = _to_channels(x, target)
    return x.copy() if np.may_share_memory(x, original) else x


def _to_channels(x, channels):
    """Numpy channel conversion on (..., C): RGBA -> RGB, 1 -> 3 by copying, 3 -> 1 by luma."""
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    luma = x.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def load_npz(path):
    if not os.path.isfile(path):
        raise TlkitError(f"npz file not found: {path!r}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise TlkitError(f"Cannot read npz file {path!r}: {e}") from None
    if "x" not in arrays or "y" not in arrays:
        raise TlkitError(f"{path} must hold arrays 'x' (N,H,W[,C]) and 'y' (N,). "
                         f"Found: {', '.join(sorted(arrays)) or 'none'}.")
    label_arrays = [arrays[k] for k in ("y", "y_val", "y_test") if k in arrays]
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
    elif any(a.dtype.kind in "UO" for a in label_arrays):
        names = sorted({str(v) for a in label_arrays for v in a})
    else:
        names = [str(i) for i in range(1 + max(int(a.max()) for a in label_arrays if a.size))]
    splits = {}
    keys = (("train", "x", "y"), ("val", "x_val", "y_val"), ("test", "x_test", "y_test"))
    for key, xk, yk in keys:
        if xk not in arrays:
            continue
        x, y = arrays[xk], arrays.get(yk)
        if y is None or y.ndim != 1 or len(y) != len(x):
            raise TlkitError(f"{path}: {yk!r} must be a 1-D array as long as {xk!r} ({len(x)}).")
        if y.dtype.kind in "UO":
            lookup = {n: i for i, n in enumerate(names)}
            if not set(map(str, y)) <= set(lookup):
                raise TlkitError(f"{path}: labels in {yk!r} missing from class_names.")
            y = np.array([lookup[str(v)] for v in y])
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= len(names))):
            raise TlkitError(f"{path}: {yk!r} must hold class ids 0..{len(names) - 1} "
                             f"(one per class name) or class-name strings.")
        splits[key] = (_npz_images(x, path, xk), y.astype(np.int64))
    if len(names) < 2:
        raise TlkitError(f"{path} has {len(names)} class; a classifier needs at least two.")
    return splits, names


def _npz_images(x, path, key):
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise TlkitError(f"{path}: {key!r} must be (N,H,W) or (N,H,W,C) with C in 1, 3, 4. "
                         f"Received: shape={x.shape}.")
    if x.dtype.kind not in "uif":
        raise TlkitError(f"{path}: {key!r} must be numeric. Received: dtype={x.dtype}.")
    if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise TlkitError(f"{path}: {key!r} holds {bad} NaN or infinite value(s); images must "
                         f"be finite raw pixels 0..255.")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise TlkitError(f"{path}: {key!r} must hold raw pixels 0..255. "
                         f"Received: values {x.min()}..{x.max()}.")
    if x.dtype.kind == "f" and x.size and 0 < x.max() <= 1.0:
        raise TlkitError(f"{path}: {key!r} looks normalised to 0..1; tlkit wants raw pixels "
                         f"0..255 (models normalise inside): save x * 255.")
    x = x if x.ndim == 4 else x[..., None]
    return convert_images(x) if x.dtype != np.uint8 or x.shape[-1] == 4 else x


def load_fashion_mnist():
    files = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    for folder in (FASHION_MNIST_DEBIAN, os.path.join(keras_home, "datasets", "fashion-mnist")):
        if all(os.path.isfile(os.path.join(folder, f)) for f in files):
            x_tr, y_tr, x_te, y_te = (_read_idx(os.path.join(folder, f)) for f in files)
            break
    else:
        import keras

        try:
            (x_tr, y_tr), (x_te, y_te) = keras.datasets.fashion_mnist.load_data()
        except Exception:  # noqa: BLE001 - no network, proxy, certificate, ...: all mean "not here"
            raise TlkitError("Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
                             "(apt-get install dataset-fashion-mnist) or connect to the "
                             "internet.") from None
    return ({"train": (x_tr[..., None], y_tr.astype(np.int64)),
             "test": (x_te[..., None], y_te.astype(np.int64))}, list(FASHION_MNIST_CLASSES))


def _read_idx(path):
    """A gzipped IDX file (the MNIST format) as a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return {"train": (x, digits.target.astype(np.int64))}, [str(i) for i in range(10)]


def size_arg(image_size):
    """None, or (height, width) from an int or a pair of positive ints."""
    if image_size is None:
        return None
    size = (image_size, image_size) if _is_int(image_size) else tuple(image_size) \
        if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        raise TlkitError(f"image_size must be a positive int or (height, width). "
                         f"Received: image_size={image_size!r}.")
    return tuple(int(s) for s in size)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
