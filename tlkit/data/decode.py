"""Decoding image files: a header-only probe, a tf.data decode-and-resize, an eager reader.

`probe(path)` reads a file's header (no pixels) and says which decoder it needs: "tf" when
`tf.io` decodes it natively and correctly, "pil" for the rest (a `tf.numpy_function` around
Pillow), None when it cannot be read. `decode_and_resize` runs inside `tf.data` `map` and
gives a uint8 (height, width, channels) tensor; a file that fails to decode raises a TF
error, so `dataset.ignore_errors()` skips it. Both paths resize with the same TF op.

Decoders, as checked against Pillow on TF 2.21 / Pillow 13 (noise images, odd widths):
  "tf":  JPEG in L, RGB or CMYK/YCCK (also MPO; Adobe CMYK to RGB as Pillow does); every PNG
         (1/2/4/8/16 bits, palette with or without transparency, L, LA, RGBA; 16 bits keep
         their high byte, where Pillow's "I;16" -> "L" clips to 255); BMP 24 or 32 bits, or
         8 bits with a gray palette, uncompressed; GIF whose first frame covers the screen
         without transparency (first frame of an animation); WebP RGB, still.
  "pil": EXIF orientation other than 1; BMP 1/4 bits, 8 with a colour palette, 16, or RLE
         (tf.io reads palette indices as gray, refuses 1 bit and RLE); GIF with transparency
         (tf.io makes it black) or a first frame smaller than the screen (tf.io returns the
         frame); WebP with alpha or animated (decode_image(channels=3) refuses them, and
         channels=0 on an animated WebP aborts the process); any other format Pillow opens.
tf.io is always asked for 3 channels (channels=1 fails on BMP, GIF and WebP, and on CMYK
JPEG); grayscale is ITU-R 601 luma of that, as on the PIL path.
The tf path is Keras's image_dataset_from_directory loader (decode_image, bilinear resize,
no antialias) plus rounding to uint8. On 500x375 JPEGs to 224x224, one core, per image: Keras
1.04 ms, this 1.05 ms (use_pil a Python bool) or 1.07 ms (a tensor: one tf.cond), the PIL
path 1.44 ms; antialias=True 2.42 ms (2.3x), hence ANTIALIAS = False. TF's default JPEG
dct_method is INTEGER_FAST already (same pixels); INTEGER_ACCURATE matches Pillow exactly
(tf vs PIL path: mean 0.8 levels apart, max 5) but needs decode_jpeg and costs 1.5%.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "red.png")
    >>> Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    >>> probe(path)
    Probe(decoder='tf', problem=None, height=30, width=40, channels=3)
    >>> read_image(path, image_size=(16, 16)).shape
    (16, 16, 3)
    >>> ds = tf.data.Dataset.from_tensors((path, False)).map(
    ...     lambda p, pil: decode_and_resize(p, pil, image_size=(8, 8), channels=1))
    >>> next(iter(ds)).numpy()[0, 0]  # ITU-R 601 luma of pure red
    array([76], dtype=uint8)
"""

import dataclasses
import functools
import io
import os
import re

import numpy as np
import tensorflow as tf

from tlkit.core.errors import TlkitError, check_choice

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
RESIZE_MODES = ("squash", "crop", "pad")
DEFAULT_RESIZE = "squash"
ANTIALIAS = False             # measured: see the module docstring
INTERPOLATION = "bilinear"    # tf.image.resize's default, Keras's image_dataset_from_directory's
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L")
_LUMA = (0.2989, 0.5870, 0.1140)   # ITU-R 601, as tf.image.rgb_to_grayscale
_SWAPS_AXES = (5, 6, 7, 8)         # EXIF orientations that transpose the image
_ORIENTATION_TAG = 0x0112
_TF_BMP_RAWMODES = ("BGR", "BGRX", "BGRA", "L")
_NOT_AN_IMAGE = f"not an image file (extensions: {' '.join(IMAGE_EXTENSIONS)})"


@dataclasses.dataclass(frozen=True)
class Probe:
    """What a file's header says: its decoder ("tf", "pil", None) and its displayed size."""

    decoder: str | None
    problem: str | None
    height: int = 0
    width: int = 0
    channels: int = 0


def check_resize(resize):
    """Return `resize` if it is one of `RESIZE_MODES`, else raise `TlkitError` listing them."""
    return check_choice("resize", resize, RESIZE_MODES)


def resize_contract(resize=DEFAULT_RESIZE):
    """How image files are fitted to a model's input, as its metadata's `input` records it.

    Example:
        >>> resize_contract("pad")
        {'resize': 'pad', 'interpolation': 'bilinear', 'antialias': False}
    """
    return {"resize": check_resize(resize), "interpolation": INTERPOLATION,
            "antialias": ANTIALIAS}


def recorded_resize(metadata, name="the model"):
    """The resize mode an artifact's metadata records in `input` (`resize_contract`), or None
    when it records none (files written before tlkit recorded it: squash, bilinear, no
    antialias, as then).

    Raises:
        TlkitError: for a contract tlkit cannot apply (another mode, interpolation or
            antialias), naming `name`.

    Example:
        >>> recorded_resize({"input": resize_contract("crop")}), recorded_resize({})
        ('crop', None)
    """
    contract = (metadata or {}).get("input") or {}
    if not isinstance(contract, dict) or "resize" not in contract:
        return None
    mode = contract["resize"]
    interpolation = contract.get("interpolation", INTERPOLATION)
    antialias = contract.get("antialias", ANTIALIAS)
    if mode not in RESIZE_MODES or interpolation != INTERPOLATION or antialias is not ANTIALIAS:
        raise TlkitError(f"{name} records input resize {mode!r}, interpolation "
                         f"{interpolation!r}, antialias {antialias!r}; tlkit fits images by "
                         f"{', '.join(RESIZE_MODES)}, {INTERPOLATION}, antialias "
                         f"{ANTIALIAS} only.")
    return mode


def probe(path):
    """Read a file's header only (no pixel decoding) and say how to decode it.

    Never raises for a bad file: returns `Probe(None, reason)`.

    Args:
        path: str or path-like.

    Returns:
        `Probe`; height and width are after the EXIF orientation, channels is 1 for grayscale
        modes and 3 otherwise.
    """
    from PIL import Image

    path = os.fspath(path)
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return Probe(None, _NOT_AN_IMAGE)
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = _orientation(img)
            native = orientation == 1 and _tf_native(img)
            channels = 1 if img.mode in _GRAY_MODES else 3
    except Exception as e:  # noqa: BLE001 - any failure to read the header means "unreadable"
        return Probe(None, problem(e))
    if orientation in _SWAPS_AXES:
        height, width = width, height
    return Probe("tf" if native else "pil", None, height, width, channels)


def problem(error):
    """What a Pillow failure means to a user, without the exception's class name.

    Example:
        >>> from PIL import UnidentifiedImageError
        >>> problem(UnidentifiedImageError("cannot identify image file 'x.jpg'"))
        'not a readable image'
        >>> problem(OSError("image file is truncated"))
        'not a readable image (image file is truncated)'
    """
    from PIL import UnidentifiedImageError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UnidentifiedImageError) or not text:
        return "not a readable image"
    return f"not a readable image ({text})"


def _orientation(img):
    if not img.info.get("exif"):  # PNG's getexif() would decode the pixels to look further
        return 1
    try:
        return img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels readable
        return 1


def _tf_native(img):
    """Whether tf.io decodes this opened image natively and the same as Pillow."""
    fmt, mode = img.format, img.mode
    if fmt in ("JPEG", "MPO"):
        return mode in ("L", "RGB", "CMYK")
    if fmt == "PNG":
        return True
    if fmt == "BMP":
        tile = img.tile[0] if img.tile else None  # "L": 8 bits whose palette is gray 0..255
        return bool(tile) and tile.codec_name == "raw" and tile.args[0] in _TF_BMP_RAWMODES
    if fmt == "GIF":
        full = bool(img.tile) and tuple(img.tile[0].extents) == (0, 0, *img.size)
        return full and "transparency" not in img.info
    if fmt == "WEBP":
        return mode == "RGB" and not getattr(img, "is_animated", False)
    return False


def decode_and_resize(path, use_pil, *, image_size, channels, resize=DEFAULT_RESIZE):
    """Decode one image file and resize it; graph-mode, for `tf.data.Dataset.map`.

    Args:
        path: scalar tf.string tensor.
        use_pil: scalar tf.bool tensor, `probe(path).decoder == "pil"`; a Python bool (when
            every file has the same decoder) leaves the other decoder out of the graph.
        image_size: (height, width) ints.
        channels: 1 or 3 (grayscale becomes RGB by copying, RGB gray by ITU-R 601 luma,
            alpha is dropped).
        resize: one of `RESIZE_MODES` (see `resize_image`).

    Returns:
        uint8 tensor of static shape (height, width, channels). A file that does not decode
        raises a TF error (InvalidArgumentError) when the element is produced.
    """
    size = _size(image_size)
    channels = _check_channels(channels)
    check_resize(resize)
    image = _decode(path, use_pil, channels)
    return tf.ensure_shape(resize_image(image, size, resize), (*size, channels))


def resize_image(image, image_size, resize=DEFAULT_RESIZE):
    """Resize (H, W, C) or (N, H, W, C) images, values 0..255, to `image_size`; a tf op.

    Bilinear, antialias `ANTIALIAS`. 'squash' ignores the aspect ratio; 'crop' takes the
    largest centred window of the target aspect ratio first (Keras's crop_to_aspect_ratio);
    'pad' keeps the aspect ratio and pads with zeros (`tf.image.resize_with_pad`).

    Returns:
        uint8 tensor (..., height, width, C), rounded and clipped.

    Example:
        >>> wide = np.full((10, 40, 1), 200, np.uint8)
        >>> resize_image(wide, (20, 20), "pad").numpy()[:, 10, 0].tolist()[5:9]
        [0, 0, 200, 200]
        >>> resize_image(wide, (20, 20), "crop").shape
        TensorShape([20, 20, 1])
    """
    height, width = _size(image_size)
    check_resize(resize)
    image = tf.convert_to_tensor(image)
    if resize == "pad":
        out = tf.image.resize_with_pad(image, height, width, antialias=ANTIALIAS)
    else:
        if resize == "crop":
            image = _centre_crop(image, height, width)
        out = tf.image.resize(image, (height, width), antialias=ANTIALIAS)
    if image.dtype != tf.uint8:  # bilinear from uint8 stays within 0..255: no clip needed
        out = tf.clip_by_value(out, 0, 255)
    return tf.cast(out + 0.5, tf.uint8)  # rounds half up


def _centre_crop(image, height, width):
    """The largest centred crop with aspect ratio height:width (as Keras's smart_resize)."""
    shape = tf.shape(image)
    h, w = shape[-3], shape[-2]
    crop_h = tf.clip_by_value(tf.cast(tf.cast(w * height, tf.float32) / width, tf.int32), 1, h)
    crop_w = tf.clip_by_value(tf.cast(tf.cast(h * width, tf.float32) / height, tf.int32), 1, w)
    return tf.image.crop_to_bounding_box(image, (h - crop_h) // 2, (w - crop_w) // 2,
                                         crop_h, crop_w)


def read_image(path, *, image_size=None, channels=None, resize=DEFAULT_RESIZE):
    """Decode one image file eagerly, through the same decoders as `decode_and_resize`.

    Args:
        path: str or path-like.
        image_size: int or (height, width); None keeps the size.
        channels: 1 or 3; None keeps grayscale as 1 and makes colour 3.
        resize: one of `RESIZE_MODES`, when `image_size` is given.

    Returns:
        uint8 array (height, width, channels).

    Raises:
        TlkitError: naming the file, when it is not a readable image.
    """
    path = os.fspath(path)
    size = _size(image_size) if image_size is not None else None
    check_resize(resize)
    found = probe(path)
    if found.decoder is None:
        raise TlkitError(f"Cannot read image {path}: {found.problem}.")
    channels = _check_channels(channels or found.channels)
    try:
        image = _decode(tf.constant(os.fsencode(path)), found.decoder == "pil", channels)
    except (ValueError, tf.errors.OpError) as e:  # eager numpy_function raises ValueError
        raise TlkitError(f"Cannot read image {path}: {_reason(e, path)}.") from None
    return resize_image(image, size, resize).numpy() if size else image.numpy()


def _reason(error, path):
    """The first line of a decoder's message, without TF's op decorations."""
    text = (getattr(error, "message", None) or str(error)).strip().splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:.*$", "", text)
    return text.removeprefix(f"Cannot decode image {path}: ").rstrip(". ")


def _decode(path, use_pil, channels):
    """uint8 (H, W, channels) from tf.io or from Pillow; one tf.cond when `use_pil` is a tensor."""
    data = tf.io.read_file(path)
    pil = tf.get_static_value(use_pil)
    if pil is not None:
        return _decode_pil(path, data, channels) if pil else _decode_tf(data, channels)
    return tf.cond(tf.cast(use_pil, tf.bool), lambda: _decode_pil(path, data, channels),
                   lambda: _decode_tf(data, channels))


def _decode_tf(data, channels):
    """decode_image to 3 channels, then luma for 1 (see the module docstring)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = _luma(image) if channels == 1 else image
    image.set_shape((None, None, channels))
    return image


def _luma(image):
    gray = tf.tensordot(tf.cast(image, tf.float32), tf.constant(_LUMA), axes=[[-1], [0]])
    return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)[..., None]


def _decode_pil(path, data, channels):
    """Pillow decoding in a tf.numpy_function: uint8 (H, W, channels)."""
    image = tf.numpy_function(functools.partial(_pil_array, channels=channels),
                              [path, data], tf.uint8, stateful=False)
    image.set_shape((None, None, channels))
    return image


def _pil_array(path, data, channels):
    """The PIL decoder: EXIF transpose, modes as the old loader but 16 bits scaled to 8."""
    from PIL import Image, ImageOps

    path = os.fsdecode(path.item() if isinstance(path, np.ndarray) else path)
    data = data.item() if isinstance(data, np.ndarray) else data
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes now: truncated files fail here
            img = ImageOps.exif_transpose(img)
            image = _pil_to_uint8(img)
    except Exception as e:  # noqa: BLE001 - any decoder failure: a TF error for ignore_errors
        raise ValueError(f"Cannot decode image {path}: {problem(e)}") from None
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    luma = image.astype(np.float32) @ np.array(_LUMA, np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def _pil_to_uint8(img):
    """uint8 (H, W, 1) for grayscale modes, (H, W, 3) otherwise (alpha dropped)."""
    if img.mode in _SIXTEEN_BIT:  # the high byte, as libpng's strip_16 in tf.io
        image = (np.clip(np.asarray(img), 0, 65535) >> 8).astype(np.uint8)
    elif img.mode == "F":
        image = np.clip(np.round(np.asarray(img)), 0, 255).astype(np.uint8)
    else:
        image = np.asarray(img.convert("L" if img.mode in _GRAY_MODES else "RGB"))
    return image[..., None] if image.ndim == 2 else image


def _size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise TlkitError(f"image_size must be a positive int or (height, width). "
                         f"Received: image_size={image_size!r}.")
    return height, width


def _check_channels(channels):
    if channels not in (1, 3):
        raise TlkitError(f"channels must be 1 or 3. Received: channels={channels!r}.")
    return channels
