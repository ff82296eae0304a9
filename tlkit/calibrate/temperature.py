"""Temperature scaling (Guo et al., ICML 2017): one T > 0 that divides the logits.

tlkit models end in softmax, so the logits are the log-probabilities, `z = log p` (equal to
the pre-softmax logits up to a per-image constant, which softmax ignores). Calibrated
probabilities are `softmax(z / T)`; dividing by one positive number keeps every image's
arg-max, so the predicted classes never change.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> bool(np.allclose(apply(p, 1.0), p))
    True
    >>> bool(apply(p, 2.0)[0, 0] < 0.9)
    True
"""

import numpy as np

EPS = 1e-12  # probabilities are clipped here before the log (softmax outputs can round to 0)
LOG_T_BOUNDS = (-4.0, 4.0)  # T in [0.018, 54.6]: far wider than any T measured (0.5-5)
MIN_GAIN = 1e-6  # nats per image: a T that lowers the fitted NLL by less is no calibration


def logits(probabilities):
    """Logits from softmax probabilities (N, C): `log(max(p, 1e-12))`, float64.

    A single sigmoid unit (N, 1) is read as two classes, [1 - p, p].
    """
    p = np.asarray(probabilities, "float64")
    if p.ndim == 2 and p.shape[1] == 1:
        p = np.concatenate([1 - p, p], axis=1)
    return np.log(np.clip(p, EPS, 1.0))


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll_at(z, y, temperature):
    """Mean negative log-likelihood of integer labels `y` under `softmax(z / T)`."""
    y = np.asarray(y).astype(int)
    return float(-_log_softmax(z / temperature)[np.arange(len(y)), y].mean())


def fit_temperature(probabilities, y):
    """The T > 0 that minimises the NLL of `y` under `softmax(log p / T)`.

    A bounded scalar search over log T (`scipy.optimize.minimize_scalar`), so T stays
    positive; the NLL of temperature scaling is convex in 1/T, so the minimum is unique.

    Args:
        probabilities: softmax outputs (N, C) of the validation images.
        y: their integer labels (N,).

    Returns:
        T as a float (> 1 softens over-confident outputs, < 1 sharpens); exactly 1.0 where
        no T lowers the NLL by more than `MIN_GAIN`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=(4000, 5)) * 3
        >>> y = np.array([rng.choice(5, p=np.exp(r) / np.exp(r).sum()) for r in z])
        >>> p = np.exp(2 * z) / np.exp(2 * z).sum(1, keepdims=True)  # planted T = 2
        >>> round(fit_temperature(p, y), 1)
        2.0
    """
    from scipy.optimize import minimize_scalar

    z = logits(probabilities)
    res = minimize_scalar(lambda t: nll_at(z, y, np.exp(t)), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-5})
    t = float(np.exp(res.x))
    # T = 1 unless it lowers the NLL it was fitted on by more than MIN_GAIN: a head whose
    # scale was already fitted on val (tlkit.training.head_solver) gave T = 1 +- 1e-5, a
    # no-op that only added rounding noise to the probabilities
    return t if nll_at(z, y, t) < nll_at(z, y, 1.0) - MIN_GAIN else 1.0


def apply(probabilities, temperature):
    """Calibrated probabilities `softmax(log p / T)` (N, C), float32.

    Args:
        probabilities: softmax outputs (N, C) (or (N, 1) sigmoid, returned as (N, 2)).
        temperature: T > 0 (1 or None: the probabilities unchanged, as float32).

    Returns:
        Probabilities of the same arg-max as the input.
    """
    p = np.asarray(probabilities)
    if temperature is None or float(temperature) == 1.0:
        if p.ndim == 2 and p.shape[1] == 1:
            p = np.concatenate([1 - p, p], axis=1)
        return np.asarray(p, "float32")
    return np.exp(_log_softmax(logits(p) / float(temperature))).astype("float32")
