"""Learning-rate schedules for one phase, on `keras.optimizers.schedules`.

- `constant` (the default): the phase's rate at every step.
- `cosine`: `CosineDecay` from the phase's rate to 0 over the phase's steps; phases that train
  base stages (fine-tuning) first warm up linearly from 0 over `warmup` of their steps, so the
  pretrained weights do not take full-size steps while the optimizer's moment estimates are
  still settling.
- `onecycle`: fastai's one-cycle policy: up from rate / 25 to the rate over the first 30% of
  the steps, then cosine annealing down to rate / 25e4. Keras's `CosineDecay` with
  `warmup_steps`/`warmup_target` expresses it exactly except for the warm-up's shape (linear
  here, a half cosine in fastai), so it needs no schedule class of its own (and fastai's
  momentum cycling is left out: Adam's beta_1 stays 0.9).

Steps count optimizer updates (`optimizer.iterations`), so a schedule runs the same whether
a phase trains one step per call or a whole epoch per call (`steps_per_execution`).

Example:
    >>> s = make("cosine", 1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(s(step)), 6) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
"""

import math
import numbers

import keras

from tlkit.core.errors import TlkitError

SCHEDULES = ("constant", "cosine", "onecycle")
# The default, by measurement on the full demo (bench/bench_recipes.py; README): against the
# constant rate that the demo's epoch budgets and EarlyStopping were set for, cosine lost
# 0.64 pp on average and up to 1.9 pp in a cell, onecycle 0.63 pp and up to 2.5 pp (heads on
# cached features most), so constant stays the default; cosine and onecycle are there to
# choose.
DEFAULT = "constant"
DEFAULT_WARMUP = 0.1  # share of a fine-tuning phase's steps spent warming up (cosine)
ONECYCLE_PCT_START = 0.3  # fastai's pct_start
ONECYCLE_DIV = 25.0  # fastai's div: the cycle starts at rate / 25
ONECYCLE_FINAL_DIV = 1e4  # fastai's div_final: it ends at rate / 25 / 1e4


def check(schedule, warmup=DEFAULT_WARMUP):
    """Refuse an unknown schedule or a warm-up share outside [0, 1), naming the flag."""
    if schedule not in SCHEDULES:
        raise TlkitError(f"--schedule must be one of {', '.join(SCHEDULES)}. "
                         f"Received: {schedule!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or \
            not 0 <= warmup < 1:
        raise TlkitError(f"--warmup must be a number in [0, 1) (a share of the phase's steps). "
                         f"Received: {warmup!r}.")


def make(schedule, learning_rate, total_steps, warmup_steps=0):
    """The learning rate for a phase of `total_steps` optimizer steps.

    Args:
        schedule: one of `SCHEDULES`.
        learning_rate: the phase's (peak) rate.
        total_steps: optimizer steps the phase may run (epochs x steps per epoch).
        warmup_steps: linear warm-up steps of `cosine` (0: none; `onecycle` has its own).

    Returns:
        A float for `constant`, else a `keras.optimizers.schedules.LearningRateSchedule`.
    """
    check(schedule)
    lr = float(learning_rate)
    total = max(int(total_steps), 1)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        warm = min(max(int(warmup_steps), 0), total - 1)
        if warm == 0:
            return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.0)
        return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=total - warm, alpha=0.0,
                                                      warmup_target=lr, warmup_steps=warm)
    warm = min(max(int(round(ONECYCLE_PCT_START * total)), 1), total - 1) if total > 1 else 0
    start = lr / ONECYCLE_DIV
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=1,
                                                      alpha=1 / ONECYCLE_FINAL_DIV / ONECYCLE_DIV)
    # CosineDecay's alpha is a share of warmup_target: rate / 25 / 1e4 at the end.
    return keras.optimizers.schedules.CosineDecay(
        start, decay_steps=total - warm, warmup_target=lr, warmup_steps=warm,
        alpha=1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV))


def for_phase(schedule, learning_rate, *, epochs, steps_per_epoch, fine_tuning,
              warmup=DEFAULT_WARMUP):
    """`make` for a phase: warm-up (`cosine`) only in phases that train base stages."""
    total = max(int(epochs), 1) * max(int(steps_per_epoch), 1)
    warm = int(math.ceil(warmup * total)) if fine_tuning else 0
    return make(schedule, learning_rate, total, warm)


def describe(value):
    """A JSON-able record of what `make` returned (for reports)."""
    if isinstance(value, (int, float)):
        return {"schedule": "constant", "learning_rate": float(value)}
    return {"schedule": type(value).__name__, **{k: v for k, v in value.get_config().items()
                                                 if k != "name"}}
