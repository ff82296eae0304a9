"""Near duplicates from the pixels: a small grey thumbnail per image, candidates from a
shift-normalised signature, each candidate pair aligned and compared pixel by pixel.

Why pixels, not the backbone's features (measured on bench/bench_audit.py: Fashion-MNIST, copies
of 2% of the training images planted in test, JPEG-re-encoded at quality 50-90, shifted by up to
3 px, brightness-changed by up to +-10%; 3 seeds): pooled features put thousands of unrelated
look-alikes above cosine 0.95 of each other, so the original was among a copy's 10 feature
neighbours for 24-38% of the copies, and a threshold on the cosine reported 13,600 pairs at
precision 0.006. A copy differs from its original by a shift, a gain and JPEG noise; all three
can be undone or measured on the pixels:

1. `thumbnail`: each image, in grey, on a `SIDE` px canvas. Images up to `SIDE` px keep their
   pixels (resampling a 28 px image to 32 px turned its integer shifts into sub-pixel ones and
   more than doubled the difference of true copies); larger ones are scaled to fit. It is made
   in the pass that reads every image for the property checks (`properties.scan`): 1 KB an
   image (2.3 KB with the signatures and candidate lists while `near_pairs` runs; everything
   else is per batch).
2. `signatures`: the thumbnail moved so that the centroid of its squared intensity sits at the
   centre (a shift moves the centroid with the content; what the shift crops off moves it back
   by up to 2 px), high-passed (minus a Gaussian blur of sigma 2: the outline of a garment is
   what look-alikes share, the print and seams are what a copy keeps), blurred (sigma 1, to
   forgive the centroid's error), averaged 2 x 2, and cut to the central 12 x 12 (the outer
   4 px ring is background for images smaller than the canvas, and where a shift crops): 144
   numbers, mean-subtracted, unit length. The original was among a copy's 20 nearest
   signatures for 97-99% of the copies (98-99% when a pair may come from either image's list,
   as it does here). Measured worse: the same without the centring 17-19%, the magnitude of
   the Fourier transform (shift invariant) 82%, HOG 27%, alignment to k-means cluster
   templates 92%, the whole 16 x 16 cut to 64 dimensions by PCA 96%.
3. `candidates`: each image's `CANDIDATES` nearest signatures, with the brute-force batched
   search of `tlkit.audit.duplicates.neighbours` (memory `batch` x N).
4. `correlate`: for every candidate pair, the Pearson correlation of the two thumbnails over
   their overlap, at every integer shift within `SEARCH` px of the one their centroids predict;
   the best shift is kept. Matrix products (a query's shifted copies against its candidates,
   for the cross sums and, with box masks, the sums over the overlap), in batches. Pairs under
   `MIN_CORRELATION` stop here: planted copies scored 0.96-0.98, 97.5% of the other candidates
   less than 0.95. On all 60,000 Fashion-MNIST images, 7 pairs between 0.90 and 0.95 passed
   the next test: low-contrast images (where 12 grey levels is much), some of them different
   garments by eye.
5. `difference`: at that shift, the brightness of one image is fitted to the other (gain and
   offset, least squares over the overlap), the residual is blurred (Gaussian, sigma 1, so that
   JPEG's pixel noise averages out and a real local difference stays) and its 99th percentile
   over the overlap, in grey levels, is the difference `d`; `score = 1 - d / 255`. The global
   correlation cannot tell a copy from a look-alike on Fashion-MNIST (copies 0.96-0.98,
   look-alikes up to 0.99); the difference can: a look-alike differs somewhere by 14 grey
   levels or more, a planted copy nowhere by more than 8.5 (JPEG at quality 50). Divided by the
   images' contrast instead of 255 the gap was narrower (1.4x against 2.3x).

`DEFAULT_THRESHOLD` 0.95 (d <= 12.75 grey levels) sits in that gap; bench/results/audit.json
has recall and precision by threshold and the time at 6,150 images. On 60,000 Fashion-MNIST
images (two cores) `near_pairs` takes 23 s: signatures 3 s, candidate search 8 s, correlations
9 s, differences 2 s (the thumbnails, made in the property pass, 0.3 s).

Example:
    >>> rng = np.random.default_rng(0)
    >>> art = rng.integers(0, 200, (3, 28, 28), dtype=np.uint8)
    >>> copy = np.zeros_like(art[0])
    >>> copy[:, 2:] = art[0][:, :-2] * 1.1  # moved 2 px right, 10% brighter
    >>> thumbs, boxes = stack([thumbnail(a) for a in [*art, copy]])
    >>> near_pairs(thumbs, boxes)
    [(0, 3, 0.99...)]
"""

import numpy as np
from tlkit.audit import duplicates

SIDE = 32
CANDIDATES = 20
SEARCH = 2
MAX_OFFSET = SIDE // 4
MIN_CORRELATION = 0.95
DEFAULT_THRESHOLD = 0.95
PERCENTILE = 99
BATCH = 32
_HIGHPASS_SIGMA = 2.0
_BLUR_SIGMA = 1.0


def thumbnail(image):
    """An image as a grey `SIDE` x `SIDE` uint8 canvas and the box `(y0, y1, x0, x1)` it fills.

    Images up to `SIDE` px a side keep their pixels, centred on the canvas; larger ones are
    scaled (bilinear, aspect kept) so that their longer side is `SIDE`.

    Example:
        >>> t, box = thumbnail(np.full((10, 20, 3), 9, np.uint8))
        >>> t.shape, box, int(t[16, 16]), int(t[0, 0])
        ((32, 32), (11, 21, 6, 26), 9, 0)
    """
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 3:
        a = (a[..., :3] @ np.array([0.299, 0.587, 0.114])[:a.shape[-1]] if a.shape[-1] >= 3
             else a[..., 0])
    a = np.clip(np.rint(a), 0, 255).astype(np.uint8) if a.dtype != np.uint8 else a
    h, w = a.shape
    if max(h, w) > SIDE:
        f = SIDE / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        a = np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR, reducing_gap=3.0))
        h, w = a.shape
    out = np.zeros((SIDE, SIDE), np.uint8)
    y0, x0 = (SIDE - h) // 2, (SIDE - w) // 2
    out[y0:y0 + h, x0:x0 + w] = a
    return out, (y0, y0 + h, x0, x0 + w)


def stack(thumbs):
    """`(pixels (N, SIDE, SIDE) uint8, boxes (N, 4) int)` from a list of `thumbnail` results."""
    pixels = np.zeros((len(thumbs), SIDE, SIDE), np.uint8)
    boxes = np.zeros((len(thumbs), 4), np.int64)
    for i, (t, box) in enumerate(thumbs):
        pixels[i], boxes[i] = t, box
    return pixels, boxes


def _shift1d(x, shift, axis):
    """Each image of x (B, S, S) moved by its own sub-pixel `shift` along `axis`, bilinear,
    zero fill: out[y] = x[y - shift]."""
    lo = np.floor(shift).astype(np.int64)
    frac = (shift - lo).astype(np.float32)
    pos = np.arange(SIDE)[None, :] - lo[:, None]  # source of out[y] is x[y - lo] and x[y - lo - 1]
    out = 0
    for src, w in ((pos, 1 - frac), (pos - 1, frac)):
        ok = (src >= 0) & (src < SIDE)
        idx = np.clip(src, 0, SIDE - 1)
        idx = idx[:, :, None] if axis == 1 else idx[:, None, :]
        got = np.take_along_axis(x, np.broadcast_to(idx, x.shape), axis=axis)
        keep = ok[:, :, None] if axis == 1 else ok[:, None, :]
        out = out + got * (keep * w[:, None, None])
    return out


def signatures(pixels, batch=4096):
    """The candidate signatures (N, 144) float32 (unit rows) and the centroids (N, 2).

    See the module docstring: centred on the centroid of the squared intensity, high-passed,
    blurred, averaged 2 x 2, the central 12 x 12 kept.
    """
    n = len(pixels)
    half, ring = SIDE // 2, SIDE // 8
    grid = np.arange(SIDE, dtype=np.float64)
    sig = np.zeros((n, (half - 2 * ring) ** 2), np.float32)
    cen = np.zeros((n, 2), np.float64)
    for s in range(0, n, batch):
        t = pixels[s:s + batch].astype(np.float32)
        m = t.astype(np.float64) ** 2
        mass = np.maximum(m.sum((1, 2)), 1e-9)
        c = np.stack([(m.sum(2) * grid).sum(1) / mass, (m.sum(1) * grid).sum(1) / mass], 1)
        c[m.sum((1, 2)) == 0] = (SIDE - 1) / 2
        cen[s:s + batch] = c
        off = (SIDE - 1) / 2 - c
        centred = _shift1d(_shift1d(t, off[:, 0], 1), off[:, 1], 2)
        v = _blur(centred - _blur(centred, _HIGHPASS_SIGMA), _BLUR_SIGMA)
        v = v.reshape(len(t), half, 2, half, 2).mean((2, 4))
        v = v[:, ring:half - ring, ring:half - ring].reshape(len(t), -1)
        v -= v.mean(1, keepdims=True)
        sig[s:s + batch] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)
    return sig, cen


def candidates(sig, k=CANDIDATES):
    """Each row's `k` nearest other rows of `sig` (N, k) (see `duplicates.neighbours`)."""
    return duplicates.neighbours(sig, k=k)[1]


def _windows(x, pad):
    """x (B, H, W) zero-padded by `pad`, as a view (B, 2 pad + 1, 2 pad + 1, H, W) of every
    H x W window: [b, u, v][y, x] = x[b, y + u - pad, x + v - pad] (zero outside)."""
    from numpy.lib.stride_tricks import sliding_window_view

    h, w = x.shape[1:]
    padded = np.zeros((len(x), h + 2 * pad, w + 2 * pad), x.dtype)
    padded[:, pad:pad + h, pad:pad + w] = x
    return sliding_window_view(padded, (h, w), axis=(1, 2))


def _moved(x, ey, ex):
    """out[p][y] = x[p][y + e_p] (zero outside), for per-row integer shifts |e| <= MAX_OFFSET."""
    w = _windows(x, MAX_OFFSET)
    return w[np.arange(len(x)), ey + MAX_OFFSET, ex + MAX_OFFSET]


def _gauss(sigma, n=SIDE):
    """The (n, n) matrix of a Gaussian blur along one axis, zero outside the image:
    `Gh @ x @ Gw.T` blurs images x (B, h, w) (a matrix product, faster than a filter on
    32 px images)."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= 4 * sigma)
    full = np.exp(-0.5 * (np.arange(-4 * sigma, 4 * sigma + 1) / sigma) ** 2).sum()
    return (g / full).astype(np.float32)


def _blur(x, sigma):
    h, w = x.shape[-2:]
    return np.matmul(np.matmul(_gauss(sigma, h), x), _gauss(sigma, w).T)


def _box_masks(boxes, ey=0, ex=0, shape=(SIDE, SIDE)):
    """Float masks (..., h, w) of `boxes` (..., 4) moved by -e: m[y] = box[y + e]."""
    ey, ex = np.asarray(ey), np.asarray(ex)
    gy, gx = np.arange(shape[0]), np.arange(shape[1])
    rows = (gy >= (boxes[..., 0] - ey)[..., None]) & (gy < (boxes[..., 1] - ey)[..., None])
    cols = (gx >= (boxes[..., 2] - ex)[..., None]) & (gx < (boxes[..., 3] - ex)[..., None])
    return (rows[..., :, None] & cols[..., None, :]).astype(np.float32)


def _overlap(box_a, box_b, ey, ex):
    """The overlap, in a's frame, of a's box and b's box moved by -e (b[y + e] ~ a[y])."""
    y0 = np.maximum(box_a[..., 0], box_b[..., 0] - ey)
    y1 = np.maximum(np.minimum(box_a[..., 1], box_b[..., 1] - ey), y0)
    x0 = np.maximum(box_a[..., 2], box_b[..., 2] - ex)
    x1 = np.maximum(np.minimum(box_a[..., 3], box_b[..., 3] - ex), x0)
    return y0, y1, x0, x1


def correlate(pixels, boxes, cand, centroids, search=SEARCH, batch=BATCH):
    """The best Pearson correlation over the overlap of each candidate pair, and its shift.

    Args:
        pixels, boxes: the thumbnails (`stack`).
        cand: (N, K) candidate rows of each row.
        centroids: (N, 2) from `signatures`: the shift e = centroid_b - centroid_a, rounded,
            is searched within +-`search` px.

    Returns:
        `(r, ey, ex)`, each (N, K): the correlation (-1 where the predicted shift exceeds
        `MAX_OFFSET` or the overlap is under a quarter of the smaller image), and the integer
        shift at which b[y + e] matches a[y].
    """
    n, k = cand.shape
    shape = pixels.shape[1:]
    span = 2 * search + 1
    r = np.full((n, k), -1.0, np.float32)
    ey = np.zeros((n, k), np.int64)
    ex = np.zeros((n, k), np.int64)
    sy = np.repeat(np.arange(-search, search + 1), span)
    sx = np.tile(np.arange(-search, search + 1), span)
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    means = pixels.reshape(n, -1).sum(1, dtype=np.float64) / np.maximum(area, 1)  # 0 outside
    for s in range(0, n, batch):
        rows = np.arange(s, min(s + batch, n))
        b_rows = cand[rows]
        e0 = np.rint(centroids[b_rows] - centroids[rows][:, None, :]).astype(np.int64)
        far = (np.abs(e0) > MAX_OFFSET - search).any(-1)
        e0[far] = 0
        # each image minus its mean over its box, zero outside (float32 sums stay accurate);
        # the query moved by every s (q_s[y] = a[y - s]) against b moved by -e0 (b[y + e0]):
        # sum_y q_s[y] b'[y] = sum_u a[u] b[u + e0 + s]
        ma = _box_masks(boxes[rows], shape=shape)
        za = (pixels[rows] - means[rows, None, None].astype(np.float32)) * ma
        flat = (len(rows), span * span, shape[0] * shape[1])
        q = _windows(za, search)[:, ::-1, ::-1].reshape(flat)
        qm = _windows(ma, search)[:, ::-1, ::-1].reshape(flat)
        b_flat, ey0, ex0 = b_rows.ravel(), e0[..., 0].ravel(), e0[..., 1].ravel()
        bm = _box_masks(boxes[b_flat], ey0, ex0, shape)
        bz = (_moved(pixels[b_flat], ey0, ex0) - means[b_flat, None, None].astype(np.float32)) * bm
        bz = bz.reshape(len(rows), k, -1).transpose(0, 2, 1)
        bm = bm.reshape(len(rows), k, -1).transpose(0, 2, 1)
        sab = np.matmul(q, bz)
        sa, saa = np.matmul(q, bm), np.matmul(q * q, bm)
        sb, sbb = np.matmul(qm, bz), np.matmul(qm, bz * bz)
        count = np.matmul(qm, bm)
        cnt = np.maximum(count, 1)
        cov = sab - sa * sb / cnt
        var = np.maximum(saa - sa ** 2 / cnt, 0) * np.maximum(sbb - sb ** 2 / cnt, 0)
        rho = np.where(var > 1e-6, cov / np.sqrt(np.maximum(var, 1e-12)), 0.0)
        small = np.minimum(area[rows][:, None], area[b_rows])[:, None, :]
        rho[(count * 4 < small) | far[:, None, :]] = -1
        best = rho.argmax(1)
        r[rows] = np.take_along_axis(rho, best[:, None], 1)[:, 0]
        ey[rows] = e0[..., 0] + sy[best]
        ex[rows] = e0[..., 1] + sx[best]
    return r, ey, ex


def difference(pixels, boxes, i, j, ey, ex, batch=2048):
    """The difference `d` (grey levels) of each pair: b = pixels[j] against a = pixels[i] at
    b[y + e] ~ a[y], after a gain and offset fit, the residual blurred, its `PERCENTILE`th
    percentile over the overlap (see the module docstring)."""
    out = np.full(len(i), np.inf)
    yy = np.arange(pixels.shape[1])[None, :, None]
    xx = np.arange(pixels.shape[2])[None, None, :]
    for s in range(0, len(i), batch):
        p = slice(s, s + batch)
        a = pixels[i[p]].astype(np.float32)
        b = _moved(pixels[j[p]].astype(np.float32), ey[p], ex[p])
        y0, y1, x0, x1 = (v[:, None, None] for v in _overlap(boxes[i[p]], boxes[j[p]],
                                                              ey[p], ex[p]))
        w = ((yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)).astype(np.float32)
        cnt = np.maximum(w.sum((1, 2)), 1)[:, None, None]
        ac = (a - (a * w).sum((1, 2))[:, None, None] / cnt) * w
        bc = (b - (b * w).sum((1, 2))[:, None, None] / cnt) * w
        gain = (ac * bc).sum((1, 2)) / np.maximum((ac * ac).sum((1, 2)), 1e-6)
        res = _blur(bc - gain[:, None, None] * ac, _BLUR_SIGMA)
        norm = _blur(w, _BLUR_SIGMA)  # normalised convolution: the blur of the overlap only
        res = np.where(w > 0, np.abs(res) / np.maximum(norm, 1e-3), -1).reshape(len(a), -1)
        # the PERCENTILE-th percentile over the overlap: the k-th largest value
        k = np.maximum(np.rint((1 - PERCENTILE / 100) * cnt[:, 0, 0]).astype(np.int64), 1)
        top = -np.partition(-res, int(k.max()) - 1, axis=1)[:, :int(k.max())]
        top = -np.sort(-top, axis=1)
        out[p] = top[np.arange(len(a)), k - 1]
    return out


def near_pairs(pixels, boxes, threshold=DEFAULT_THRESHOLD, k=CANDIDATES):
    """Near-duplicate pairs `(i, j, score)`, i < j, score = 1 - d / 255 >= `threshold`.

    Args:
        pixels, boxes: the thumbnails of N images (`stack`).
        threshold: the least score reported.
        k: candidates per image.

    Returns:
        A list of `(i, j, score)`, sorted, each pair once.
    """
    n = len(pixels)
    if n < 2:
        return []
    sig, cen = signatures(pixels)
    cand = candidates(sig, k=min(k, n - 1))
    # every image is zero outside its box: the rest of the canvas can go (28 px images: 23%
    # fewer pixels to compare); centroids only enter as differences
    y0, x0 = boxes[:, 0].min(), boxes[:, 2].min()
    pixels = pixels[:, y0:boxes[:, 1].max(), x0:boxes[:, 3].max()]
    boxes = boxes - np.array([y0, y0, x0, x0])
    r, ey, ex = correlate(pixels, boxes, cand, cen)
    keep = r >= MIN_CORRELATION
    i = np.repeat(np.arange(n), cand.shape[1])[keep.ravel()]
    j = cand.ravel()[keep.ravel()]
    e = np.stack([ey[keep], ex[keep]], 1)
    # a pair found from both images' lists is compared once: (i < j), b[y + e] ~ a[y]
    flip = i > j
    i, j, e[flip] = np.where(flip, j, i), np.where(flip, i, j), -e[flip]
    _, first = np.unique(i * n + j, return_index=True)
    i, j, e = i[first], j[first], e[first]
    d = difference(pixels, boxes, i, j, e[:, 0], e[:, 1])
    score = np.round(np.clip(1 - d / 255, 0, 1), 4)
    hit = score >= threshold
    return [(a, b, v) for a, b, v in zip(i[hit].tolist(), j[hit].tolist(), score[hit].tolist())]
