import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from tlkit.advise import scores
from tlkit.advise.scores import knn_accuracy, linear_probe_accuracy, logme, stage_scores
from tlkit.core.errors import TlkitError


def _problem(n, d, classes, seed, signal=0.7):
    """Features with class-dependent means (`signal` = 0: pure noise) and balanced labels."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    f = rng.normal(size=(n, d)) + signal * rng.normal(size=(classes, d))[y]
    return f, y


def _gauss_nll(cov, y):
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, y)
    return 0.5 * z @ z + np.log(np.diag(chol)).sum() + 0.5 * len(y) * np.log(2 * np.pi)


def _direct_logme(f, labels):
    """sup over (alpha, beta) of log N(y; 0, I/beta + FF'/alpha), by numerical optimisation.

    Multi-start L-BFGS-B over (log alpha, log beta) in a box, plus the two open edges the
    supremum can lie on: alpha -> inf (y ~ N(0, I/beta)) and, when FF' is invertible,
    beta -> inf (y ~ N(0, FF'/alpha)), each maximised over the remaining precision.
    """
    n = len(f)
    gram = f @ f.T
    out = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)

        def nll(p):
            return _gauss_nll(np.exp(-p[1]) * np.eye(n) + np.exp(-p[0]) * gram, y)

        cands = [minimize(nll, start, method="L-BFGS-B", bounds=[(-15, 15)] * 2,
                          options={"ftol": 1e-15, "gtol": 1e-10}).fun
                 for start in [(0, 0), (-4, 4), (4, -4), (4, 4), (-4, -4), (8, 8)]]
        cands.append(0.5 * n * (1 + np.log(2 * np.pi * (y @ y) / n)))       # alpha -> inf
        if np.linalg.matrix_rank(gram) == n:                                 # beta -> inf
            cands.append(minimize_scalar(lambda la: _gauss_nll(np.exp(-la) * gram, y),
                                         bounds=(-30, 30), method="bounded",
                                         options={"xatol": 1e-10}).fun)
        out.append(-min(cands) / n)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d", [(40, 8), (8, 30), (20, 20), (12, 40)])
@pytest.mark.parametrize("seed", range(4))
def test_logme_matches_the_numerically_maximised_evidence(n, d, seed):
    f, y = _problem(n, d, classes=2 + seed % 3, seed=seed)
    np.testing.assert_allclose(logme(f, y), _direct_logme(f, y), rtol=1e-6)


@pytest.mark.parametrize("n,d,signal,seed,scale", [
    (10, 12, 0.3, 6, 1.0), (10, 12, 1.5, 17, 1.0), (20, 20, 0.7, 22, 100.0),
    (15, 15, 0.7, 16, 100.0), (20, 20, 0.7, 0, 1.0),
])
def test_logme_finds_the_global_maximum(n, d, signal, seed, scale):
    # Evidences with two local maxima: the fixed point started at alpha = beta = 1, as in the
    # reference code, ends on the lower one for these (or on none: the last runs off to
    # beta -> inf, and only the closed-form limit gives the supremum exactly).
    f, y = _problem(n, d, classes=2 + seed % 3, seed=seed, signal=signal)
    np.testing.assert_allclose(logme(scale * f, y), _direct_logme(scale * f, y), rtol=1e-6)


def test_logme_takes_the_interpolation_limit_exactly():
    # N < D: y lies in span(F) and the supremum is at beta -> inf, which the fixed point only
    # approaches (to ~1e-8 here); the closed-form limit gives it to rounding.
    f, y = _problem(8, 30, classes=2, seed=0)
    np.testing.assert_allclose(logme(f, y), _direct_logme(f, y), rtol=1e-10)


def test_logme_rank_deficient_and_constant_features():
    f, y = _problem(30, 6, classes=3, seed=5)
    wide = np.hstack([f, f[:, :3] * 2.0, np.zeros((30, 4))])     # rank 6 of 13 columns
    np.testing.assert_allclose(logme(wide, y), _direct_logme(wide, y), rtol=1e-6)
    zero = np.zeros((30, 5))
    np.testing.assert_allclose(logme(zero, y), _direct_logme(zero, y), rtol=1e-4)


def test_logme_is_scale_invariant():
    # Rescaling F only rescales the best alpha, so the maximum evidence is the same.
    f, y = _problem(50, 10, classes=3, seed=1)
    np.testing.assert_allclose(logme(1e3 * f, y), logme(f, y), rtol=1e-6)
    np.testing.assert_allclose(logme(1e-3 * f, y), logme(f, y), rtol=1e-6)


def test_logme_ignores_label_ids():
    f, y = _problem(40, 8, classes=3, seed=2)
    np.testing.assert_allclose(logme(f, np.array([7, 3, 11])[y]), logme(f, y), rtol=1e-12)


def _split(signal, n=300, d=32, classes=4, seed=0):
    f, y = _problem(2 * n, d, classes, seed, signal)
    return f[:n], y[:n], f[n:], y[n:]


def test_informative_features_beat_noise():
    good, noise = _split(signal=1.0), _split(signal=0.0)
    assert logme(good[0], good[1]) > logme(noise[0], noise[1]) + 0.05
    assert knn_accuracy(*good) > knn_accuracy(*noise) + 0.3
    assert linear_probe_accuracy(*good) > linear_probe_accuracy(*noise) + 0.3


def test_separable_data_is_perfect_and_noise_is_chance():
    sep = _split(signal=6.0)
    assert knn_accuracy(*sep) == 1.0
    assert linear_probe_accuracy(*sep) == 1.0
    noise = _split(signal=0.0, n=800, classes=4)
    assert abs(knn_accuracy(*noise) - 0.25) < 0.07
    assert abs(linear_probe_accuracy(*noise) - 0.25) < 0.07


def test_probe_on_wide_features_is_deterministic():
    ftr, ytr, fva, yva = _split(signal=0.3, n=400, d=600, classes=3)  # D > N
    a = linear_probe_accuracy(ftr, ytr, fva, yva, seed=3)
    assert a == linear_probe_accuracy(ftr, ytr, fva, yva, seed=3)
    assert a > 0.6


def test_knn_caps_k_at_the_smallest_class():
    # Class 1 has 2 training samples; with k = 10 and a plain vote, it could never win.
    rng = np.random.default_rng(0)
    centers = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ytr = np.array([0] * 30 + [1] * 2)
    ftr = centers[ytr] + 0.05 * rng.normal(size=(32, 3))
    yva = np.array([0] * 5 + [1] * 5)
    fva = centers[yva] + 0.05 * rng.normal(size=(10, 3))
    assert knn_accuracy(ftr, ytr, fva, yva, k=10) == 1.0
    assert knn_accuracy(ftr, ytr, fva, yva, k=1) == 1.0


def test_knn_breaks_ties_by_rank():
    # k is capped at 2; the validation point's neighbours are one of each class, and the
    # nearer one (class 1) wins although class 0 comes first.
    ftr = np.array([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8], [-0.6, -0.8]])
    ytr = np.array([0, 0, 1, 1])
    assert knn_accuracy(ftr, ytr, np.array([[0.31, 0.95]]), np.array([1])) == 1.0
    assert knn_accuracy(ftr, ytr, np.array([[0.95, 0.31]]), np.array([0])) == 1.0


def test_stage_scores_returns_the_three_scores():
    split = _split(signal=1.0)
    s = stage_scores(*split)
    assert set(s) == {"logme", "knn_accuracy", "linear_probe_accuracy"}
    assert s["logme"] == logme(split[0], split[1])
    assert s["knn_accuracy"] == knn_accuracy(*split)
    assert all(isinstance(v, float) for v in s.values())


@pytest.mark.parametrize("args,match", [
    (lambda f, y: (f, y[:-1], f, y), r"labels has 39 entries but \w*features has 40"),
    (lambda f, y: (f, y, f[:, :-1], y), "val_features has 7 columns but train_features has 8"),
    (lambda f, y: (f, y, f, np.r_[y[:-1], 9]), "val_labels has class 9"),
    (lambda f, y: (f, np.r_[y[:-1], 9], f, y), "class 9 has 1 sample"),
    (lambda f, y: (f, np.zeros_like(y), f, np.zeros_like(y)), "at least 2 classes"),
    (lambda f, y: (np.where(np.eye(40, 8) > 0, np.nan, f), y, f, y), "non-finite.*row 0"),
    (lambda f, y: (f[:, 0], y, f, y), r"\(N, D\) array"),
    (lambda f, y: (f, y + 0.5, f, y), "integer class ids"),
    (lambda f, y: (f, y.astype(str), f, y), "integer class ids"),
])
def test_errors(args, match):
    f, y = _problem(40, 8, classes=3, seed=0)
    a = args(f, y)
    for fn in (stage_scores, knn_accuracy, linear_probe_accuracy):
        with pytest.raises(TlkitError, match=match):
            fn(*a)
    if a[2] is f and a[3] is y:          # the error is in the training split
        with pytest.raises(TlkitError, match=match):
            logme(a[0], a[1])


def test_knn_rejects_a_bad_k():
    split = _split(signal=1.0, n=20)
    with pytest.raises(TlkitError, match="k must be a positive integer"):
        knn_accuracy(*split, k=0)
