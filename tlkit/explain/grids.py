"""The pictures as arrays: tiles of feature maps and filters, and the Grad-CAM overlay.

These functions compute uint8 RGB arrays and write nothing; `tlkit.explain.figures` puts them
in labelled figures and writes the PNGs.

Example:
    >>> import numpy as np
    >>> feature_grid(np.random.rand(7, 7, 10)).shape   # 10 tiles: 3 x 4, 35-pixel tiles
    (107, 143, 3)
    >>> grid_shape(10)
    (3, 4)
"""

import math

import numpy as np

from tlkit.core.errors import TlkitError

MAX_CHANNELS = 64


def grid_shape(n):
    """(rows, cols) of a near-square grid for n tiles: cols = ceil(sqrt(n))."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def normalize(a):
    """`a` min-max scaled to [0, 1] (float64); a constant array becomes zeros."""
    a = np.asarray(a, dtype="float64")
    lo, hi = np.nanmin(a), np.nanmax(a)
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def tile_grid(tiles, gap=1):
    """Stack equally sized tiles (n, h, w[, 3]) in a near-square grid; gaps are black."""
    n, h, w = tiles.shape[:3]
    rows, cols = grid_shape(n)
    shape = (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap) + tiles.shape[3:]
    grid = np.zeros(shape, dtype=tiles.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return grid


def scale_for(size, min_size=32):
    """The integer upscaling factor that makes `size` pixels at least `min_size`.

    Example:
        >>> scale_for(28, 224), scale_for(300, 224)
        (8, 1)
    """
    return max(1, math.ceil(min_size / max(1, size)))


def upscale(image, factor):
    """`image` (h, w[, c]) enlarged by an integer `factor`, nearest neighbour (sharp pixels)."""
    return np.asarray(image).repeat(factor, axis=0).repeat(factor, axis=1)


def feature_grid(fmap, max_channels=MAX_CHANNELS, min_tile=32, gap=1):
    """One (h, w, channels) feature map as a grid of tiles, uint8 RGB.

    The first `min(channels, max_channels)` channels become tiles, each min-max normalized on
    its own and coloured with viridis (dark: low, yellow: high; a constant channel is dark).
    A tile is the map upscaled by the integer `s = ceil(min_tile / max(h, w))` (nearest
    neighbour). Tiles fill a grid row by row with `cols = ceil(sqrt(n))`, `rows = ceil(n /
    cols)`, separated by `gap` black pixels: the picture is `rows*h*s + (rows-1)*gap` high and
    `cols*w*s + (cols-1)*gap` wide. Tile i is channel i.

    Args:
        fmap: array (h, w, channels).
        max_channels: most channels shown.
        min_tile: smallest tile side in pixels.
        gap: pixels between tiles.

    Returns:
        uint8 array (height, width, 3).
    """
    from matplotlib import colormaps

    fmap = np.asarray(fmap)
    if fmap.ndim != 3:
        raise TlkitError(f"A feature map must be (height, width, channels). "
                         f"Received: shape={fmap.shape}.")
    h, w, c = fmap.shape
    s = scale_for(max(h, w), min_tile)
    n = min(c, max_channels)
    tiles = upscale(np.stack([normalize(fmap[:, :, i]) for i in range(n)]).transpose(1, 2, 0),
                    s).transpose(2, 0, 1)
    rgb = (colormaps["viridis"](tiles)[..., :3] * 255).round().astype("uint8")
    return tile_grid(rgb, gap)


def filter_grid(filters, max_filters=MAX_CHANNELS, min_tile=32, gap=1):
    """First-layer filters as a grid of tiles, uint8 RGB.

    One tile per filter (at most `max_filters`), in the grid of `feature_grid`. All filters
    share one min-max normalization, so their contrast can be compared. A 3-channel filter is
    shown in colour (RGB weights); otherwise the mean over input channels in gray.

    Args:
        filters: (kh, kw, in_channels, n), as `first_layer_filters` returns.
        max_filters: most filters shown.
        min_tile: smallest tile side in pixels.
        gap: pixels between tiles.

    Returns:
        uint8 array (height, width, 3).
    """
    filters = np.asarray(filters, dtype="float32")
    if filters.ndim != 4:
        raise TlkitError(f"Filters must be (kh, kw, in_channels, n). "
                         f"Received: shape={filters.shape}.")
    kh, kw, cin, n = filters.shape
    f = np.moveaxis(filters[..., :max_filters], -1, 0)  # (n, kh, kw, cin)
    f = f if cin == 3 else np.repeat(f.mean(axis=-1, keepdims=True), 3, axis=-1)
    f = normalize(f)
    s = scale_for(max(kh, kw), min_tile)
    tiles = (f.repeat(s, axis=1).repeat(s, axis=2) * 255).round().astype("uint8")
    return tile_grid(tiles, gap)


def as_rgb(image):
    """A (h, w[, 1 or 3]) raw-pixel image as float32 RGB (h, w, 3) in 0..255."""
    image = np.asarray(image, dtype="float32")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise TlkitError(f"Expected an image (height, width, 1 or 3). "
                         f"Received: image.shape={image.shape}.")
    return np.clip(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image, 0, 255)


def resize_heatmap(heatmap, height, width):
    """A Grad-CAM heatmap resized (bilinear) to (height, width), clipped to [0, 1]."""
    from PIL import Image

    heat = Image.fromarray(np.asarray(heatmap, dtype="float32"), mode="F")
    return np.clip(np.asarray(heat.resize((width, height), Image.BILINEAR)), 0.0, 1.0)


def gradcam_overlay(image, heatmap, alpha=0.4):
    """The Grad-CAM overlay as a uint8 RGB array at the image's size.

    The heatmap is resized to the image (bilinear), coloured with the "jet" colormap (blue:
    no evidence, red: most) and blended: `(1 - alpha) * image + alpha * colour`. A grayscale
    image is shown in gray.

    Args:
        image: (height, width, channels) raw pixels 0..255 (1 or 3 channels).
        heatmap: (h, w) values in [0, 1], as `gradcam` returns.
        alpha: weight of the heatmap colour.

    Returns:
        uint8 array (height, width, 3).

    Example:
        >>> gradcam_overlay(np.zeros((28, 28, 1)), np.ones((7, 7)), alpha=1.0)[0, 0]  # dark red
        array([128,   0,   0], dtype=uint8)
    """
    from matplotlib import colormaps

    if not 0.0 <= alpha <= 1.0:
        raise TlkitError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}.")
    rgb = as_rgb(image)
    heat = resize_heatmap(heatmap, *rgb.shape[:2])
    colour = colormaps["jet"](heat)[..., :3] * 255.0
    return ((1.0 - alpha) * rgb + alpha * colour).round().clip(0, 255).astype("uint8")
