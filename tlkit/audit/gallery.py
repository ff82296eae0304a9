"""One PNG gallery per issue kind: the worst examples, titled, each image at least 96 px.

Label issues show the image titled `given -> suggested` with its score; duplicates and leaks
show each pair side by side (the copy, then the image it copies); the other kinds show the
image with its score. Images are enlarged with nearest-neighbour sampling to `CELL_PX`, so a
28 px image stays readable. Written through `tlkit.evaluation.plots.save_figure` (atomic).
"""

import numpy as np

from tlkit.evaluation import plots

CELL_PX = 128
MAX_SHOWN = 24
PAIRED = ("exact_duplicate", "near_duplicate", "leak")


def enlarge(image, px=CELL_PX):
    """A uint8 image (H, W, C) scaled by nearest neighbour so its longer side is `px`."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    h, w = image.shape[:2]
    scale = px / max(h, w, 1)
    rows = np.minimum((np.arange(max(1, round(h * scale))) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(max(1, round(w * scale))) / scale).astype(int), w - 1)
    return image[rows][:, cols]


def figure(kind, issues, read, cols=6, total=None):
    """The gallery `Figure` of one kind.

    Args:
        kind: the issue kind (its title).
        issues: its issue rows (dicts of `tlkit.audit.run`), worst first.
        read: a callable from a row's path to a uint8 image.
        cols: cells per row (a pair takes two).
        total: how many were found (default: `len(issues)`).

    Returns:
        A matplotlib `Figure`.
    """
    shown = issues[:MAX_SHOWN]
    paired = kind in PAIRED
    per = 2 if paired else 1
    cols = max(per, cols - cols % per)
    n_cells = len(shown) * per
    rows = max(1, -(-n_cells // cols))
    inch = CELL_PX / plots.DPI * 1.15
    fig = plots.new_figure(cols * inch, rows * inch * 1.3 + 0.6)
    total = len(issues) if total is None else total
    fig.suptitle(f"{kind}: {total} found" + (f", worst {len(shown)} shown"
                                             if total > len(shown) else ""))
    for c, row in enumerate(shown):
        items = [(row["path"], _title(kind, row))]
        if paired:
            items.append((row["other"], f"= {_short(row['other'])}"))
        for k, (path, title) in enumerate(items):
            ax = fig.add_subplot(rows, cols, c * per + k + 1)
            image = read(path)
            grey = image is not None and (image.ndim == 2 or image.shape[-1] == 1)
            if image is not None:
                ax.imshow(enlarge(image), cmap="gray" if grey else None, vmin=0, vmax=255,
                          interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _short(text, n=22):
    text = str(text)
    return text if len(text) <= n else "..." + text[-(n - 3):]


def _title(kind, row):
    if kind == "label":
        return f"{row['given']} -> {row['suggested']}\n{row['score']:.2f} {_short(row['path'])}"
    return f"{row['score']:.2f} {_short(row['path'])}"


def save(kind, issues, read, path, total=None):
    """Write the gallery of one kind to `path` (PNG); returns the path."""
    return plots.save_figure(figure(kind, issues, read, total=total), path)
