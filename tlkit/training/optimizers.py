"""The optimizer of a phase: Adam or AdamW, a schedule, and per-stage learning rates.

Per-stage (discriminative, layer-wise) learning rates: with `lr_decay_per_stage=F`, the
variables of the k-th base stage below the top one that trains get the rate x F**k; the top
stage and the head get the rate itself (fastai's discriminative rates, timm's
`layer_decay`, counted in stages). Adam's steps do not depend on the gradient's scale, so
scaling gradients would not do it; the rate itself must differ per variable.

How, with public Keras API only: Keras's documented way to customise an optimizer is to
subclass it and override `update_step(gradient, variable, learning_rate)`, the per-variable
update that every backend calls with the current (scheduled) rate. `StageRates` does that:
it looks the variable up in a table of multipliers (by object identity, as the backend hands
over either the Keras variable or the backend variable under it) and calls the parent's
update with `learning_rate * multiplier`. One optimizer, one schedule, one set of moment
slots; nothing private. AdamW's decoupled weight decay keeps the base rate (Keras applies it
outside `update_step`).

Example:
    >>> import keras
    >>> opt = make(1e-3, multipliers=[])
    >>> type(opt).__name__
    'Adam'
"""

import numbers

import keras

from tlkit.core.errors import TlkitError


def check_decay(value):
    """Refuse a per-stage decay outside (0, 1], naming the flag."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise TlkitError(f"--lr-decay-per-stage must be a number in (0, 1], e.g. 0.5 "
                         f"(1: the same rate for every stage). Received: {value!r}.")


def stage_multipliers(plan, phase, model, decay):
    """[(variable, multiplier)] for the base stages `phase` trains (empty when decay is 1).

    The top stage that trains (and the head) get 1; the stage k below it gets decay**k.
    """
    check_decay(decay)
    if decay == 1 or not phase.train_stages:
        return []
    base = plan.base_of(model)
    top = max(phase.train_stages)
    out = []
    for stage in plan.backbone.stages[: plan.num_stages]:
        if stage.index not in phase.train_stages:
            continue
        factor = float(decay) ** (top - stage.index)
        for name in stage.layers:
            try:
                layer = base.get_layer(name)
            except ValueError:
                continue
            out.extend((v, factor) for v in layer.trainable_weights)
    return out


def _with_stage_rates(cls):
    class StageRates(cls):
        """`cls` with a learning-rate multiplier per variable (see the module docstring)."""

        def __init__(self, *args, multipliers=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._tlkit_multipliers = {}
            for v, m in multipliers or ():
                self._tlkit_multipliers[id(v)] = float(m)
                inner = getattr(v, "value", None)  # the backend variable under a Keras one
                if inner is not None and inner is not v:
                    self._tlkit_multipliers[id(inner)] = float(m)

        def multiplier(self, variable):
            """The rate multiplier of `variable` (1 for variables outside the table)."""
            return self._tlkit_multipliers.get(id(variable), 1.0)

        def update_step(self, gradient, variable, learning_rate):
            m = self.multiplier(variable)
            if m != 1.0:
                learning_rate = learning_rate * m
            return super().update_step(gradient, variable, learning_rate)

    StageRates.__name__ = StageRates.__qualname__ = f"StageRates{cls.__name__}"
    return StageRates


StageRatesAdam = _with_stage_rates(keras.optimizers.Adam)
StageRatesAdamW = _with_stage_rates(keras.optimizers.AdamW)


def make(learning_rate, *, weight_decay=0.0, multipliers=None):
    """Adam (AdamW with `weight_decay`) at `learning_rate` (a float or a schedule).

    With `multipliers` ([(variable, factor)], from `stage_multipliers`) it is the `StageRates`
    subclass of the same optimizer; without, the plain Keras class.
    """
    kw = {"learning_rate": learning_rate}
    if weight_decay:
        kw["weight_decay"] = weight_decay
    if multipliers:
        cls = StageRatesAdamW if weight_decay else StageRatesAdam
        return cls(multipliers=multipliers, **kw)
    return (keras.optimizers.AdamW if weight_decay else keras.optimizers.Adam)(**kw)
