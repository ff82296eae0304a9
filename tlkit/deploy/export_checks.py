"""The checks `tlkit.deploy.export.export` runs on an artifact against the Keras model: the
sample batch's shape, the probabilities (within a tolerance for float exports, top-1 on
clear-cut images for quantized ones) and the unknown score of a feature score
(`tlkit.deploy.feature_score`), relative to its scale.

Every failure is a `TlkitError` that says nothing was written (the export then removes its
temporary folder); a quantized export further from Keras than usual only warns.
"""

import warnings

import numpy as np

from tlkit.core.errors import TlkitError

# Share of clear-cut sample images that must keep their top-1 class. Weight-only quantization
# keeps all; full-integer int8 quantizes activations too and may flip a few (measured in
# tlkit.deploy.export's docstring).
MIN_CLEAR_AGREEMENT = {"float16": 1.0, "dynamic": 1.0, "int8": 0.95}


def top1(y):
    """The top-1 class per row (for one sigmoid unit: p > 0.5)."""
    y = y.reshape(len(y), -1)
    return (y[:, 0] > 0.5).astype(int) if y.shape[1] == 1 else y.argmax(axis=1)


def margin(y):
    """Top-1 minus top-2 probability per row (for one sigmoid unit: |2p - 1|)."""
    y = y.reshape(len(y), -1)
    if y.shape[1] == 1:
        return np.abs(2 * y[:, 0] - 1)
    top2 = np.sort(y, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def check_batch(x, input_shape, what="sample"):
    """`x` as float32, refused (one line) unless it is a non-empty batch of `input_shape`."""
    x = np.asarray(x, dtype="float32")
    if x.ndim != len(input_shape) + 1 or any(
            e is not None and e != g for e, g in zip(input_shape, x.shape[1:])) or not len(x):
        raise TlkitError(f"{what} must be a batch of shape (n, "
                         f"{', '.join(map(str, input_shape))}). Received: {what}.shape={x.shape}.")
    return x


def check_score(fmt, quantize, out, got, expected, tolerance):
    """Raise (nothing written) when a float export's unknown score differs from Keras's by
    more than `tolerance` relative to the scores' scale (squared distances in the
    hundreds: float32 sums of D products carry ~1e-7 x D relative error); returns that
    relative difference."""
    if got is None:
        raise TlkitError(f"The {fmt} export lost its unknown_score output; nothing was "
                         f"written to {str(out)!r}.")
    scale = max(1.0, float(np.max(np.abs(expected))))
    rel = float(np.max(np.abs(np.asarray(got, "float64") - expected))) / scale
    if quantize == "none" and not rel <= tolerance:
        raise TlkitError(f"The {fmt} export's unknown score differs from the Keras model's by "
                         f"{rel:.3g} of its scale > tolerance {tolerance:g}; nothing was "
                         f"written to {str(out)!r}.")
    return rel


def check(fmt, quantize, out, diff, agree, top1, tolerance, expected, random=False):
    """Raise (nothing written) or warn when the artifact does not reproduce Keras."""
    if quantize == "none" and not diff <= tolerance:  # "not <=" also catches NaN
        raise TlkitError(f"The {fmt} export differs from the Keras model by {diff:.3g} > "
                         f"tolerance {tolerance:g} (top-1 agreement {top1:.0%}); nothing "
                         f"was written to {str(out)!r}.")
    if quantize == "none":
        return
    clear = margin(expected) > 2 * tolerance
    kept = float(agree[clear].mean()) if clear.any() else 1.0
    if not np.isfinite(diff) or kept < MIN_CLEAR_AGREEMENT[quantize]:
        raise TlkitError(
            f"The {quantize}-quantized TFLite export changes the top-1 class of "
            f"{int((~agree[clear]).sum())} of {int(clear.sum())} clear-cut sample images "
            f"(Keras margin > {2 * tolerance:g}; at most "
            f"{1 - MIN_CLEAR_AGREEMENT[quantize]:.0%} may change; max difference "
            f"{diff:.3g}); nothing was written to {str(out)!r}. Try quantize='float16' or "
            f"'none'.")
    if diff > tolerance:
        warnings.warn(f"The {quantize}-quantized TFLite export differs from the Keras "
                      f"model by up to {diff:.3g} (typical: < {tolerance:g}); top-1 "
                      f"agreement {top1:.0%}" + (". Check it on real images (sample=)."
                                                 if random else " on real images."),
                      stacklevel=3)
