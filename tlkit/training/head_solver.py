"""The head in closed form: shrinkage LDA on the cached features, its scale fitted on val.

A frozen base's features do not change, so the head of `small-similar` (and the first phase
of the two-phase strategies) is a linear softmax classifier on fixed inputs. Linear
discriminant analysis gives one in closed form: class means and one pooled covariance,
shrunk by Ledoit and Wolf's formula (`sklearn.covariance.ledoit_wolf`), give each class a
weight vector and a bias, exactly the kernel and bias of the Dense `predictions` layer. One
scalar in (0, 1] then scales the logits to the validation split's lowest log loss: LDA's
posteriors are over-confident on features that are not Gaussian (the scale came out 0.04 to
0.26 on the benchmarks' features), and a scale above 1 would only sharpen them further on a
validation split the head happens to classify without error.

Why not gradient steps, as before (bench/bench_head_budget.py, bench/bench_small_data.py,
in results/): on 3,000 images of the benchmarks' Fashion-MNIST target (128 features) the Adam
head ran its whole budget of 2,000 steps in 1.2 s and ended at 81.9% while still improving;
this solve takes 10 ms and reaches 88.1%, and brings the run to 1.17x start-up plus one
forward pass. Adam epochs continued from the solve (an experiment, not kept) lowered no
val_loss at 3,000 and 5 images per class and gained 0.5 points at 20. At 5 and 20 images
per class (3 seeds) the solve reaches 74.2% and 80.9% against 71.0% and 79.1% for the Adam
head trained to convergence and 72.6% and 81.3% for scikit-learn's logistic regression with
C picked on val, which takes seconds (an L-BFGS grid over C: 3.1 s on 3,000 x 128).

The solve applies when the head is dropout and a softmax Dense on the features, the
training targets are the integer labels (no label smoothing or mixup), every class has a
training image, and the features fit in the memory limit with at most `MAX_FEATURES`
dimensions (the covariance is `d x d`). Elsewhere the head trains by gradient steps.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 20)
    >>> x = rng.normal(size=(60, 4)).astype("float32") + 3 * np.eye(3, 4)[y]
    >>> kernel, bias, facts = solve(x, y, x, y, 3)
    >>> kernel.shape, bias.shape, bool(np.mean((x @ kernel + bias).argmax(1) == y) > 0.9)
    ((4, 3), (3,), True)
"""

import time

import keras
import numpy as np
from scipy import optimize, special
from sklearn.covariance import ledoit_wolf

# Dimensions of the features the solve accepts: the pooled output of every keras.applications
# backbone tlkit offers is at most 2,048 wide (ResNet50); a `flatten` head's input can be far
# wider (7 x 7 x 1,280 = 62,720 for MobileNetV2 at 224 px; the demo's 3 x 3 x 128 = 1,152 fits).
MAX_FEATURES = 4096
SCALE_BOUNDS = (1e-4, 1.0)  # searched on a log axis; never sharper than LDA's own posteriors


def output_layer(trainer):
    """The head's softmax `Dense`, when all before it is dropout; else None."""
    layers = [layer for layer in trainer.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or not all(isinstance(layer, keras.layers.Dropout) for layer in layers[:-1]):
        return None
    out = layers[-1]
    if not isinstance(out, keras.layers.Dense) or out.units < 2:
        return None
    activation = getattr(out.activation, "__name__", "")
    return out if activation == "softmax" else None


def unsuited(trainer, f_train, y_train, num_classes, targets, memory_limit=None):
    """Why the closed form cannot train this head (a phrase), or None when it can.

    Features on disk (a memmap) are solved when they fit in `memory_limit` bytes (as
    features reused from an earlier pass, e.g. `advise`'s, are), not when they were put on
    disk for their size.
    """
    if output_layer(trainer) is None:
        return "the head has layers other than dropout and a softmax Dense"
    if targets is not None:
        return "label smoothing or mixup changes the training targets"
    if isinstance(f_train, np.memmap) and (memory_limit is None
                                           or f_train.nbytes > memory_limit):
        return "the features are cached on disk, larger than the memory limit"
    if f_train.ndim != 2 or f_train.shape[1] > MAX_FEATURES:
        return f"the head's input has more than {MAX_FEATURES} features"
    missing = sorted(set(range(num_classes)) - set(np.unique(y_train).tolist()))
    if missing:
        return f"classes {missing} have no training image"
    return None


def _nll(logits, y, weights=None):
    """Mean (or `weights`-weighted) negative log-likelihood of integer labels `y`."""
    losses = -special.log_softmax(logits, axis=1)[np.arange(len(y)), y]
    return float(np.average(losses, weights=weights))


def solve(f_train, y_train, f_val, y_val, num_classes, class_weight=None):
    """Kernel `(d, K)`, bias `(K,)` and facts of the shrinkage-LDA head, scaled on val.

    `class_weight` ({class index: weight}) multiplies the class priors, as it multiplies each
    class's share of the loss when the head trains by gradient steps.
    """
    started = time.perf_counter()
    x = np.asarray(f_train, dtype=np.float64)
    y = np.asarray(y_train)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    means = np.stack([x[y == k].mean(axis=0) for k in range(num_classes)])
    centred = x - means[y]
    # Shrink in standardised units, as scikit-learn's LDA does (`shrinkage="auto"`), so that
    # features of large scale do not set the shrinkage of all; constant features get scale 1.
    scale = centred.std(axis=0)
    scale[scale == 0] = 1.0
    shrunk, shrinkage = ledoit_wolf(centred / scale, assume_centered=True)
    cov = shrunk * np.outer(scale, scale)
    level = float(np.mean(np.diag(cov)))
    if not level > 0:  # one image per class: no spread within a class to measure
        total = x.var(axis=0)  # the features' spread over all classes stands in for it
        level = float(np.mean(total)) if np.mean(total) > 0 else 1.0
        cov, shrinkage = np.eye(len(scale)) * level, 1.0  # nearest class mean
    # A floor of 1e-6 of the mean variance keeps the solve defined when features are
    # collinear (more features than images, duplicated channels).
    cov = cov + np.eye(len(scale)) * (1e-6 * level)
    kernel = np.linalg.solve(cov, means.T)  # (d, K): one discriminant per class
    priors = counts.copy()
    if class_weight:
        priors *= np.array([class_weight.get(k, 1.0) for k in range(num_classes)])
    bias = -0.5 * np.einsum("kd,dk->k", means, kernel) + np.log(priors / priors.sum())
    logits_val = np.asarray(f_val, dtype=np.float64) @ kernel + bias
    y_val = np.asarray(y_val)
    fitted = optimize.minimize_scalar(
        lambda log_s: _nll(np.exp(log_s) * logits_val, y_val),
        bounds=tuple(np.log(SCALE_BOUNDS)), method="bounded")
    s = float(np.exp(fitted.x))
    facts = {"solver": "closed-form", "method": "shrinkage LDA (Ledoit-Wolf)",
             "shrinkage": round(float(shrinkage), 4), "logit_scale": round(s, 6),
             "seconds": round(time.perf_counter() - started, 3)}
    return (kernel * s).astype(np.float32), (bias * s).astype(np.float32), facts


def fit_head(trainer, train, val, num_classes, class_weight=None):
    """Set `trainer`'s output layer to the closed-form head; returns (logs, facts).

    `logs` are what a Keras epoch would log (`loss`, `accuracy`, `val_loss`,
    `val_accuracy`), computed from the solution, so that callbacks, history and the choice of
    the best phase see this phase like any other.
    """
    (f_train, y_train), (f_val, y_val) = train, val
    kernel, bias, facts = solve(f_train, y_train, f_val, y_val, num_classes, class_weight)
    output_layer(trainer).set_weights([kernel, bias])
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    weights = (None if not class_weight else
               np.array([class_weight.get(int(k), 1.0) for k in y_train]))
    z_train = np.asarray(f_train, dtype=np.float64) @ kernel + bias
    z_val = np.asarray(f_val, dtype=np.float64) @ kernel + bias
    logs = {"accuracy": float(np.mean(z_train.argmax(1) == y_train)),
            "loss": _nll(z_train, y_train, weights),
            "val_accuracy": float(np.mean(z_val.argmax(1) == y_val)),
            "val_loss": _nll(z_val, y_val)}
    return logs, facts
