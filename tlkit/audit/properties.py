"""Image properties that need no model: cleanvision's checks, on the streamed images.

Each image is read once, at its stored size (a file is decoded from its bytes; an array row
is used as it is), and gives a content hash of its pixels (exact duplicates, see
`tlkit.audit.duplicates`), the grey 32 px thumbnail that near duplicates are matched on
(`tlkit.audit.pixels.thumbnail`), and a few statistics computed on a thumbnail of at most
`THUMBNAIL` px a side, so that a 4000 px photo costs as little as a 96 px one:

- `small`: the shorter side is under `min_side` px;
- `constant`: the pixel standard deviation is under `CONSTANT_STD` (0..255 scale);
- `dark` / `bright`: the mean brightness is under `DARK` / over `BRIGHT`;
- `blurry`: the variance of the Laplacian of the grey image is under `BLURRY` (the usual
  focus measure; a constant image is reported as constant, not also as blurry);
- `aspect_ratio`: the longer side is more than `MAX_ASPECT` times the shorter one;
- `grayscale`: an RGB image whose three channels are equal (stored as colour, holds grey).

Memory is one image at a time, plus 1 KB an image for the near-duplicate thumbnails. Files that
cannot be read are counted, not fatal.

Example:
    >>> import numpy as np
    >>> img = np.zeros((40, 40, 3), np.uint8)
    >>> sorted(check(stats(img)))
    ['constant', 'dark', 'grayscale']
"""

import hashlib

import numpy as np
from tlkit.audit import pixels
from tlkit.data import decode

THUMBNAIL = 256
MIN_SIDE = 32
CONSTANT_STD = 2.0
DARK = 30.0
BRIGHT = 235.0
BLURRY = 10.0
MAX_ASPECT = 3.0
KINDS = ("small", "constant", "dark", "bright", "blurry", "aspect_ratio", "grayscale")


def pixel_hash(image):
    """A hash of an image's pixels and shape: equal for the same picture in any file format.

    Example:
        >>> a = np.ones((4, 4, 3), np.uint8)
        >>> pixel_hash(a) == pixel_hash(a.copy()), pixel_hash(a) == pixel_hash(a[:2])
        (True, False)
    """
    image = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _thumbnail(image):
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / THUMBNAIL)))
    return image[::step, ::step]


def stats(image):
    """The statistics `check` reads, of one uint8 image (H, W) or (H, W, C).

    Returns:
        A dict: `height`, `width`, `mean` and `std` brightness (0..255), `laplacian` (the
        variance of the Laplacian of the grey thumbnail), `grey_rgb` (RGB with equal channels).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    h, w = image.shape[:2]
    small = _thumbnail(image).astype(np.float32)
    grey = small.mean(axis=-1)
    lap = 0.0
    if grey.shape[0] >= 3 and grey.shape[1] >= 3:
        # 4-neighbour Laplacian, as cv2.Laplacian(ksize=1), without OpenCV
        lap_img = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
                   - 4 * grey[1:-1, 1:-1])
        lap = float(lap_img.var())
    grey_rgb = bool(small.shape[-1] >= 3 and np.array_equal(small[..., 0], small[..., 1])
                    and np.array_equal(small[..., 1], small[..., 2]))
    return {"height": int(h), "width": int(w), "mean": float(grey.mean()),
            "std": float(grey.std()), "laplacian": lap, "grey_rgb": grey_rgb}


def check(s, min_side=MIN_SIDE):
    """The property issues of one image's `stats`: {kind: score}, score in (0, 1], 1 worst.

    Example:
        >>> check({"height": 10, "width": 40, "mean": 120.0, "std": 50.0,
        ...        "laplacian": 300.0, "grey_rgb": False})
        {'small': 0.8438, 'aspect_ratio': 0.25}
    """
    found = {}
    short, long_ = min(s["height"], s["width"]), max(s["height"], s["width"])
    if short < min_side:
        found["small"] = round(1 - short / min_side / 2, 4)
    if s["std"] < CONSTANT_STD:
        found["constant"] = round(1 - s["std"] / CONSTANT_STD / 2, 4)
    if s["mean"] < DARK:
        found["dark"] = round(1 - s["mean"] / DARK / 2, 4)
    if s["mean"] > BRIGHT:
        found["bright"] = round(1 - (255 - s["mean"]) / (255 - BRIGHT) / 2, 4)
    if s["laplacian"] < BLURRY and "constant" not in found:
        found["blurry"] = round(1 - s["laplacian"] / BLURRY / 2, 4)
    if short and long_ / short > MAX_ASPECT:
        found["aspect_ratio"] = round(1 - MAX_ASPECT * short / long_, 4)
    if s["grey_rgb"]:
        found["grayscale"] = 0.5
    return found


def read_file(path):
    """Decode an image file at its stored size: `(uint8 array (H, W, C), None)`, or
    `(None, reason)` when it cannot be read."""
    try:
        return decode.read_image(str(path)), None
    except Exception as e:  # noqa: BLE001 - any unreadable file is counted, never fatal
        return None, str(e).splitlines()[0] if str(e) else type(e).__name__


def scan(images, *, paths=None, min_side=MIN_SIDE, progress=None):
    """Hash and check every image: arrays row by row, files (`paths`) one at a time.

    Args:
        images: uint8 images (an array (N, H, W[, C]) or any iterable of (H, W[, C]) arrays),
            or None when `paths` are given.
        paths: image files to read at their stored size (instead of `images`).
        min_side: the `small` threshold in px.
        progress: a callable taking the count done so far, or None.

    Returns:
        `(hashes, found, unreadable, thumbs)`: a list of N pixel hashes (None where
        unreadable), a list of N `{kind: score}` dicts, {position: reason} of the unreadable
        ones, and the near-duplicate thumbnails `(pixels (N, 32, 32) uint8, boxes (N, 4))` of
        `tlkit.audit.pixels.stack` (blank where unreadable).
    """
    hashes, found, unreadable, thumbs = [], [], {}, []
    blank = pixels.thumbnail(np.zeros((1, 1), np.uint8))
    n = 0
    for i, item in enumerate(paths if paths is not None else images):
        n = i + 1
        image = item
        if paths is not None:
            image, reason = read_file(item)
            if image is None:
                hashes.append(None)
                found.append({})
                thumbs.append(blank)
                unreadable[i] = reason
                continue
        hashes.append(pixel_hash(image))
        found.append(check(stats(image), min_side))
        thumbs.append(pixels.thumbnail(image))
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1)
    if progress is not None:
        progress(n)
    return hashes, found, unreadable, pixels.stack(thumbs)
