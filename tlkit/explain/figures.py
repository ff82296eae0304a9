"""The explanation PNGs: labelled figures of Grad-CAM, feature maps and filters.

Each `*_figure` function returns a matplotlib `Figure` (see `tlkit.evaluation.plots`); each `save_*`
function writes one through `tlkit.evaluation.plots.save_figure` (atomic, mode 0644).

- Grad-CAM: the original and the overlay side by side, each at least `MIN_SIDE` (224) pixels
  on its longer side (small inputs are enlarged, pixels kept sharp), with the class, its
  probability, the layer and a colorbar of the heatmap.
- Feature maps and filters: one tile per channel (filter), its index in the corner, and a
  title naming the layer, the image and how many channels are shown.

Example:
    >>> import numpy as np
    >>> fig = gradcam_figure(np.zeros((28, 28, 1)), np.ones((7, 7)), label="Sandal",
    ...                      probability=0.93)
    >>> fig._suptitle.get_text()
    'Grad-CAM for class Sandal: probability 0.930'
"""

import re
from pathlib import Path

import numpy as np

from tlkit.evaluation import plots
from tlkit.explain.grids import (MAX_CHANNELS, as_rgb, feature_grid, filter_grid,
                                 gradcam_overlay, grid_shape, scale_for, upscale)

MIN_SIDE = 224  # pixels: the smallest longer side of a Grad-CAM panel


def safe_name(text):
    """`text` as a file-name part: "/" becomes "-", other unsafe characters "_"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text).replace("/", "-")).strip("_") or "x"


def gradcam_figure(image, heatmap, *, label, probability, alpha=0.4, layer=None,
                   predicted=None):
    """The original image and its Grad-CAM overlay side by side, with a colorbar.

    Args:
        image: (height, width, channels) raw pixels 0..255.
        heatmap: (h, w) in [0, 1], as `gradcam` returns.
        label: the explained class's name.
        probability: the model's probability of that class.
        alpha: weight of the heatmap colour in the overlay.
        layer: the layer the heatmap comes from (shown under the overlay).
        predicted: `(name, probability)` of the predicted class, shown when it is not the
            explained one.

    Returns:
        A `Figure` with the original, the overlay and the colorbar axes.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    big = upscale(rgb, scale_for(max(h, w), MIN_SIDE))
    overlay = gradcam_overlay(big, heatmap, alpha)
    panel = MIN_SIDE * 1.25 / plots.DPI  # inches of a panel's longer side
    pw, ph = (panel, panel * h / w) if w >= h else (panel * w / h, panel)
    fig = plots.new_figure(2 * pw + 1.3, ph + 1.0)
    left, right = fig.subplots(1, 2)
    gray = np.asarray(image).ndim == 2 or np.shape(image)[-1] == 1
    left.imshow(big[..., 0] if gray else big.astype("uint8"), cmap="gray" if gray else None,
                vmin=0, vmax=255, interpolation="nearest")
    left.set_title(f"original\n{w}x{h} px" + (f", shown x{big.shape[0] // h}"
                                                if big.shape[0] > h else ""), fontsize=9)
    right.imshow(overlay, interpolation="nearest")
    right.set_title("Grad-CAM overlay" + (f"\nat {layer}" if layer else ""), fontsize=9,
                    wrap=True)
    for ax in (left, right):
        ax.set_axis_off()
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=[left, right],
                       fraction=0.035, pad=0.03)
    bar.set_label("evidence for the class (relative)", fontsize=8)
    title = f"Grad-CAM for class {label}: probability {float(probability):.3f}"
    if predicted is not None and predicted[0] != label:
        title += f"\n(predicted: {predicted[0]}, probability {float(predicted[1]):.3f})"
    fig.suptitle(title, fontsize=10)
    return fig


def save_gradcam(image, heatmap, path, alpha=0.4, *, label="?", probability=float("nan"),
                 layer=None, predicted=None):
    """Write `gradcam_figure(...)` as a PNG.

    Args:
        image: (height, width, channels) raw pixels 0..255.
        heatmap: (h, w) in [0, 1].
        path: the PNG to write (atomically).
        alpha, label, probability, layer, predicted: as in `gradcam_figure`.

    Returns:
        `path` as a string.
    """
    fig = gradcam_figure(image, heatmap, label=label, probability=probability, alpha=alpha,
                         layer=layer, predicted=predicted)
    return str(plots.save_figure(fig, path))


def _tiles_figure(grid, n, tile_hw, title, gap=1):
    """A tile grid (from `tile_grid`) drawn with each tile's index in its corner."""
    rows, cols = grid_shape(n)
    th, tw = tile_hw
    side = max(0.55, 5.5 / cols) if cols > 1 else 2.5  # inches per tile
    fig = plots.new_figure(max(3.5, cols * side), rows * side * th / tw + 0.7)
    ax = fig.add_subplot()
    ax.imshow(grid, interpolation="nearest")
    size = 7 if cols <= 8 else 6
    for i in range(n):
        r, c = divmod(i, cols)
        ax.text(c * (tw + gap) + 0.5, r * (th + gap) + 0.5, str(i), fontsize=size,
                color="white", ha="left", va="top",
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "black", "alpha": 0.6,
                      "linewidth": 0})
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return fig


def feature_maps_figure(fmap, layer, image_name=None, max_channels=MAX_CHANNELS):
    """One layer's feature maps as a titled grid; every tile shows its channel index.

    Args:
        fmap: (h, w, channels), as `feature_maps` returns for one layer.
        layer: the layer's name (for the title).
        image_name: the image's name (for the title), or None.
        max_channels: most channels shown (the first ones).

    Returns:
        A `Figure`; its texts are the channel indices 0..n-1.
    """
    fmap = np.asarray(fmap)
    grid = feature_grid(fmap, max_channels)
    h, w, c = fmap.shape
    n = min(c, max_channels)
    s = scale_for(max(h, w))
    shown = f"channels 0-{n - 1} of {c}" if n < c else f"{c} channels"
    title = (f"{image_name}: " if image_name else "") + f"feature maps of {layer}\n" \
        f"{shown}, {h}x{w} each (viridis, each channel scaled to its own range)"
    return _tiles_figure(grid, n, (h * s, w * s), title)


def save_feature_maps(maps, out_dir, prefix):
    """Write one PNG per layer: `<out_dir>/<prefix>_<layer>_maps.png`.

    Each is `feature_maps_figure(map, layer, prefix)`: at most 64 channels in a near-square
    grid (`cols = ceil(sqrt(n))`, tile i is channel i). A "/" in a layer path becomes "-" in
    the file name.

    Args:
        maps: {layer name: (h, w, channels) array}, as `feature_maps` returns.
        out_dir: folder, created if missing.
        prefix: start of every file name (e.g. the image's stem).

    Returns:
        The written paths, in the order of `maps`.
    """
    out_dir = Path(out_dir)
    return [str(plots.save_figure(feature_maps_figure(fmap, name, prefix),
                                  out_dir / f"{safe_name(prefix)}_{safe_name(name)}_maps.png"))
            for name, fmap in maps.items()]


def filters_figure(filters, layer=None, max_filters=MAX_CHANNELS):
    """First-layer filters as a titled grid (see `filter_grid`); tiles show their index.

    Args:
        filters: (kh, kw, in_channels, n), as `first_layer_filters` returns.
        layer: the conv layer's name (for the title).
        max_filters: most filters shown.

    Returns:
        A `Figure`.
    """
    filters = np.asarray(filters)
    grid = filter_grid(filters, max_filters)
    kh, kw, cin, n = filters.shape
    k = min(n, max_filters)
    s = scale_for(max(kh, kw))
    colour = ("RGB weights" if cin == 3 else "gray" if cin == 1
              else f"gray: the mean over {cin} input channels")
    title = (f"first-layer filters of {layer}\n" if layer else "first-layer filters\n") + \
        f"{k} of {n}, {kh}x{kw} ({colour}, one shared scale)"
    return _tiles_figure(grid, k, (kh * s, kw * s), title)


def save_filter_grid(filters, path, layer=None):
    """Write `filters_figure(filters, layer)` as one PNG; returns `path` as a string."""
    return str(plots.save_figure(filters_figure(filters, layer), path))
