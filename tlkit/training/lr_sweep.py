"""The learning-rate sweep of the LR finder (fastai's `lr_find`, Smith 2017): sweep, plot, suggest.

`tlkit.lr_find` (`tlkit.workflows.lr_find`) loads the data and builds the model, then calls
`sweep` here.

`sweep` trains the weights that a phase of a plan would train, for up to `steps` optimizer
steps, while the learning rate grows exponentially from `min_lr` to `max_lr`
(`keras.optimizers.schedules.ExponentialDecay` with a rate above 1), recording the loss of
every batch. A head phase sweeps on cached features (the frozen base runs once, over at most
`steps * batch_size` training images), like the head phase of `tlkit.training.train.fit`. The sweep
stops early once the smoothed loss exceeds 4x its minimum (it has diverged).

The rule is fastai's "valley": on the smoothed loss, find the longest stretch over which it
keeps falling (the longest decreasing subsequence) and suggest the rate at about half-way
along it (its start + 1/3 + 1/6 of its length, fastai's formula): well into the fall, safely
before the minimum. The smoothing is a centred moving average over a window of about 1/15
of the sweep (at least 5 steps); fastai's causal moving average (beta 0.98) lags by ~50
steps, which over a 200-step sweep of 8 decades moves the curve two decades to the right.
The rate at the smoothed loss's minimum is recorded beside it (`min_loss_lr`; fastai's older
rule was a tenth of it).

The model is never changed: its weights (BatchNormalization statistics included) and every
layer's `trainable` flag are restored bit for bit afterwards, and the sweep compiles a
separate Model over the same layers, so the model's own compile state is untouched.
"""

import dataclasses
import math
import pathlib

import keras
import numpy as np

from tlkit.core import fileio
from tlkit.core.errors import TlkitError
from tlkit.training import feature_cache, optimizers, phases
from tlkit.training.frozen import feature_cut, feature_extractor, head_model

DEFAULT_STEPS = 200
DEFAULT_MIN_LR = 1e-7
DEFAULT_MAX_LR = 10.0
SMOOTHING = 0.98
DIVERGED = 4.0  # stop when the smoothed loss exceeds this many times its minimum
RULE = "valley: half-way along the longest fall of the smoothed loss (fastai)"


@dataclasses.dataclass
class LRFindResult:
    """The sweep: rates, losses, the suggestion, and the files written (or None)."""

    lrs: list
    losses: list
    smoothed: list
    suggested_lr: float
    min_loss_lr: float
    phase: str
    steps: int
    min_lr: float
    max_lr: float
    batch_size: int
    rule: str = RULE
    png: str = None
    json: str = None

    def to_dict(self, curve=True):
        """JSON-able; `curve=False` leaves out the per-step lists."""
        d = dataclasses.asdict(self)
        d["steps_run"] = len(self.lrs)
        d["min_loss_lr_div10"] = self.min_loss_lr / 10
        if not curve:
            for k in ("lrs", "losses", "smoothed"):
                d.pop(k)
        return d


def check_range(min_lr, max_lr, steps):
    """Refuse a sweep that cannot run, naming the flags."""
    for flag, v in (("--min-lr", min_lr), ("--max-lr", max_lr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v <= 0:
            raise TlkitError(f"{flag} must be a finite number > 0. Received: {v!r}.")
    if not min_lr < max_lr:
        raise TlkitError(f"--min-lr must be below --max-lr. Received: {min_lr:g} and "
                         f"{max_lr:g}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise TlkitError(f"--steps must be an integer >= 10. Received: {steps!r}.")


def smooth(losses, window=None):
    """Centred moving average (window: odd, default ~1/15 of the points, at least 5)."""
    losses = np.asarray(losses, float)
    if window is None:
        window = max(5, len(losses) // 15)
    window = max(1, int(window) | 1)
    kernel = np.ones(window)
    total = np.convolve(losses, kernel, mode="same")
    counts = np.convolve(np.ones_like(losses), kernel, mode="same")
    return total / counts


def suggest(lrs, losses, window=None):
    """(suggested lr, min-loss lr, smoothed losses) by the module's rule.

    Example:
        >>> lrs = np.logspace(-5, 0, 100)
        >>> losses = 2 - np.tanh(3 * (np.log10(lrs) + 3)) + np.maximum(0, np.log10(lrs) + 1)
        >>> s, m, _ = suggest(lrs, losses, window=1)
        >>> round(float(np.log10(s)), 1), round(float(np.log10(m)), 1)
        (-3.1, -1.0)
    """
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    smoothed = smooth(losses, window)
    if len(smoothed) < 3:
        return float(lrs[0]), float(lrs[0]), smoothed.tolist()
    lowest = int(np.argmin(smoothed))
    return float(lrs[valley(smoothed)]), float(lrs[lowest]), smoothed.tolist()


def valley(smoothed):
    """Index half-way along the longest decreasing subsequence of `smoothed` (fastai)."""
    n = len(smoothed)
    run = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end = i
            start = end - run[end]
    third = (end - start) / 3
    return min(max(start + int(third) + int(third / 2), 0), n - 1)


class _Recorder(keras.callbacks.Callback):
    """One step per epoch: the epoch's loss is that batch's loss; stops on divergence."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule, self.lrs, self.losses, self.best = schedule, [], [], math.inf
        self.avg = 0.0

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        if not math.isfinite(loss):
            self.model.stop_training = True
            return
        self.lrs.append(float(self.schedule(epoch)))
        self.losses.append(loss)
        self.avg = SMOOTHING * self.avg + (1 - SMOOTHING) * loss
        smooth = self.avg / (1 - SMOOTHING ** len(self.losses))
        self.best = min(self.best, smooth)
        if len(self.losses) > 5 and smooth > DIVERGED * self.best:
            self.model.stop_training = True


def _layers(model):
    """Every layer of `model`, parents before their sublayers (nested models included)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_layers(layer))
    return out


def _training_data(model, plan, phase, dataset, batch_size, steps, seed, autotune, verbose):
    """(probe model, repeated tf.data batches) for the sweep of `phase`."""
    n = len(dataset.y_train)
    take = min(n, steps * batch_size)
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:take]) if take < n else None
    if not phase.train_stages and feature_cut(model) is not None:
        x = dataset.x_train if idx is None else dataset.x_train[idx]
        y = dataset.y_train if idx is None else dataset.y_train[idx]
        feats, labels = feature_cache.compute(feature_extractor(model), x, labels=y,
                                              batch_size=batch_size, verbose=verbose,
                                              autotune=autotune)
        data = feature_cache.as_dataset(feats, labels, batch_size, shuffle=True, seed=seed)
        return head_model(model), data.repeat(), "cached features"
    data = dataset.pipeline("train", batch_size=batch_size, shuffle=True, seed=seed,
                            autotune=autotune)
    return keras.Model(model.inputs, model.outputs, name="lr_probe"), data.repeat(), "images"


def sweep(model, plan, dataset, *, phase=0, min_lr=DEFAULT_MIN_LR, max_lr=DEFAULT_MAX_LR,
          steps=DEFAULT_STEPS, batch_size=32, seed=0, autotune=None, out_dir=None, verbose=0):
    """Sweep the learning rate over the weights `phase` of `plan` trains; `model` unchanged.

    Args:
        model: a model from `plan.build_model` (or a loaded tlkit model of the same plan).
        plan: its `tlkit.training.strategies.Plan`; `phase`: the phase's index (default the first,
            whose rate is `--lr`). A later phase is swept from the model as it is, not after
            the earlier phases have trained.
        dataset: a `tlkit.data.Dataset` at the model's input size.
        min_lr, max_lr, steps: the exponential sweep (stops early when the loss diverges).
        batch_size, seed, autotune: as in `tlkit.training.train.fit` (no augmentation in the sweep).
        out_dir: folder for `lr_find.png` and `lr_find.json` (None: no files).
        verbose: 1 or 2 prints the feature pass and the suggestion.

    Returns:
        An `LRFindResult`.
    """
    check_range(min_lr, max_lr, steps)
    if not 0 <= phase < len(plan.phases):
        raise TlkitError(f"--phase must be 1..{len(plan.phases)} for {plan.strategy}. "
                         f"Received: {phase + 1}.")
    ph = plan.phases[phase]
    layers = _layers(model)
    flags = [layer.trainable for layer in layers]
    weights = model.get_weights()
    try:
        plan.apply(model, ph)
        probe, data, on = _training_data(model, plan, ph, dataset, batch_size, steps, seed,
                                         autotune, verbose)
        schedule = keras.optimizers.schedules.ExponentialDecay(
            min_lr, decay_steps=1, decay_rate=(max_lr / min_lr) ** (1 / (steps - 1)))
        phases.compile_classifier(probe, optimizers.make(schedule,
                                                         weight_decay=plan.weight_decay),
                                  metrics=False)
        rec = _Recorder(schedule)
        probe.fit(data, epochs=steps, steps_per_epoch=1, callbacks=[rec], verbose=0,
                  shuffle=False)  # the data shuffles
    finally:
        for layer, flag in zip(layers, flags):
            layer.trainable = flag
        model.set_weights(weights)
    if len(rec.losses) < 3:
        raise TlkitError(f"The learning-rate sweep diverged at once (from --min-lr "
                         f"{min_lr:g}); try a lower --min-lr.")
    lr, lowest, smoothed = suggest(rec.lrs, rec.losses)
    result = LRFindResult(rec.lrs, rec.losses, smoothed, lr, lowest, f"{phase + 1}:{ph.name}",
                          steps, float(min_lr), float(max_lr), batch_size)
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        result.png = str(plot(result, out_dir / "lr_find.png", title=f"{plan.strategy}, phase "
                              f"{result.phase} on {on}"))
        result.json = str(out_dir / "lr_find.json")
        fileio.write_json(result.to_dict(), result.json)
    if verbose:
        print(f"tlkit: lr-find ({result.phase}, {len(rec.losses)} steps on {on}): suggested "
              f"learning rate {lr:.3g}; loss lowest at {lowest:.3g}")
    return result


def plot(result, path, title=None):
    """The loss-vs-learning-rate PNG: log x axis, raw and smoothed loss, suggestion marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed loss")
    ax.set_xscale("log")
    head = result.smoothed[: max(len(result.smoothed) // 10, 1)]
    top = min(max(result.smoothed), 1.15 * max(head))  # the start of the sweep, in full
    low = min(result.smoothed) - 0.5 * (max(head) - min(result.smoothed)) * 0.2
    ax.set_ylim(low - 0.05 * (top - low), top + 0.1 * (top - low))
    ax.axvline(result.suggested_lr, color="C3", ls="--", lw=1.5,
               label=f"suggested {result.suggested_lr:.2g}")
    i = int(np.argmin(np.abs(np.asarray(result.lrs) - result.suggested_lr)))
    ax.plot([result.suggested_lr], [result.smoothed[i]], "o", color="C3")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title or f"learning-rate finder, phase {result.phase}")
    with fileio.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return pathlib.Path(path)
