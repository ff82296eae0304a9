"""Tunables: what a hypermodel may tune, and fixing or narrowing them (`--fix`, `--space`)."""

import dataclasses
import math
import re

import numpy as np

from tlkit.core.errors import TlkitError, suggest
from tlkit.tuning.constants import ALIASES


@dataclasses.dataclass(frozen=True)
class Tunable:
    """One declared hyperparameter: its domain, default and (optional) parent condition.

    Attributes:
        name: the hyperparameter name (`block1_bn`, `dropout`, `learning_rate`, ...).
        kind: `"choice"`, `"float"` or `"int"`.
        default: the value a search starts from, and the published model's value.
        values: the choices (`kind="choice"`).
        min_value, max_value, step, sampling: the range (`kind="float"` or `"int"`).
        parent: `(parent_name, parent_values)`: active only when the parent takes one of
            those values (e.g. `block3_bn` only when `blocks` >= 3).
    """

    name: str
    kind: str
    default: object
    values: tuple = ()
    min_value: float = None
    max_value: float = None
    step: float = None
    sampling: str = "linear"
    parent: tuple = None

    def describe(self):
        """The domain as one short string, e.g. `before|after|none` or `0.0001..0.01 log`."""
        if self.kind == "choice":
            text = "|".join(_fmt(v) for v in self.values)
        else:
            text = f"{_fmt(self.min_value)}..{_fmt(self.max_value)}"
            text += f" step {_fmt(self.step)}" if self.step else ""
            text += " log" if self.sampling == "log" else ""
        cond = f"  (if {self.parent[0]} >= {min(self.parent[1])})" if self.parent else ""
        return f"{text}  default {_fmt(self.default)}{cond}"

    def register(self, hp, fixed=None, narrowed=None):
        """Declare this tunable on `hp` (a `keras_tuner.HyperParameters`) and return its value.

        A fixed value becomes `hp.Fixed`; a narrowed one a `hp.Choice` of the listed values or
        a range inside the declared one. Returns None when a parent condition is inactive.
        """
        cond = {}
        if self.parent:
            cond = {"parent_name": self.parent[0], "parent_values": list(self.parent[1])}
        if fixed is not None:
            return hp.Fixed(self.name, fixed, **cond)
        if narrowed and "values" in narrowed:
            values = list(narrowed["values"])
            default = self.default if self.default in values else values[0]
            return hp.Choice(self.name, values, default=default, **cond)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default, **cond)
        lo, hi = (narrowed["min"], narrowed["max"]) if narrowed else (self.min_value,
                                                                       self.max_value)
        default = min(max(self.default, lo), hi)
        if self.kind == "int":
            return hp.Int(self.name, int(lo), int(hi), step=self.step, sampling=self.sampling,
                          default=int(default), **cond)
        return hp.Float(self.name, float(lo), float(hi), step=self.step, sampling=self.sampling,
                        default=float(default), **cond)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _items(items, flag):
    """[(name, text)] from `["a=1", ...]`, a mapping `{"a": 1}` or None."""
    if not items:
        return []
    if isinstance(items, str):
        items = [items]
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if isinstance(item, dict):
                pairs.extend(item.items())
                continue
            name, sep, text = str(item).partition("=")
            if not sep or not name.strip() or not text.strip():
                raise TlkitError(f"{flag} expects NAME=VALUE (e.g. {flag} dropout=0.3). "
                                 f"Received: {item!r}.")
            pairs.append((name.strip(), text.strip()))
    out = []
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append((str(name).strip(), str(value).strip()))
    return out


def _targets(name, tunables, flag):
    """The declared names that `name` stands for: itself, or the members of an alias."""
    if name in tunables:
        return [name]
    if name in ALIASES:
        members = [n for n in tunables if re.fullmatch(ALIASES[name], n)]
        if members:
            return members
    valid = list(tunables) + [a for a in ALIASES
                              if any(re.fullmatch(ALIASES[a], n) for n in tunables)]
    raise suggest(name, valid, f"{flag} hyperparameter")


def _value(t, text, flag, shown=None):
    """`text` converted to `t`'s type and checked against its declared domain."""
    where = f"{flag} {shown or t.name}={text}"
    sample = t.values[0] if t.kind == "choice" else (0 if t.kind == "int" else 0.0)
    try:
        if isinstance(sample, str):
            value = text
        elif isinstance(sample, (int, np.integer)) and not isinstance(sample, bool):
            number = float(text)
            if number != int(number):
                raise ValueError
            value = int(number)
        else:
            value = float(text)
    except ValueError:
        kind = "an integer" if t.kind == "int" or isinstance(sample, int) else "a number"
        raise TlkitError(f"Invalid {where}: expected {kind}. Valid: {t.describe()}.") from None
    if t.kind == "choice":
        for v in t.values:
            if v == value or (isinstance(v, float) and math.isclose(v, value, abs_tol=1e-12)):
                return v
        raise TlkitError(f"Invalid {where}: expected one of "
                         f"{', '.join(_fmt(v) for v in t.values)}.")
    tol = 1e-9 * max(1.0, abs(t.max_value))
    if not t.min_value - tol <= value <= t.max_value + tol:
        raise TlkitError(f"Invalid {where}: outside the searchable range "
                         f"{_fmt(t.min_value)}..{_fmt(t.max_value)}.")
    return min(max(value, t.min_value), t.max_value)


def parse_fix(items, hypermodel):
    """Parse `NAME=VALUE` items into `{hyperparameter: value}`, validated against `hypermodel`.

    Args:
        items: strings such as `["dropout=0.3", "bn=before"]`, or a mapping
            `{"dropout": 0.3}` (as a YAML recipe gives it). `bn` fixes every BN placement,
            `block_dropout` every per-block dropout. A later item wins over an earlier one.
        hypermodel: a `TlkitHyperModel`; its `tunables()` are the valid names and domains.

    Returns:
        A dict of declared names to typed values (str, int or float).

    Raises:
        TlkitError: unknown name (with close matches), a value of the wrong type, or one
            outside the declared domain.

    Example:
        >>> from tlkit.tuning.zoo_hypermodel import ZooHyperModel
        >>> hm = ZooHyperModel("fashion_cnn", (16, 16, 1))
        >>> parse_fix(["bn=none", "dropout=0.3"], hm)
        {'block1_bn': 'none', 'block2_bn': 'none', 'dropout': 0.3}
    """
    tunables = hypermodel.tunables()
    out = {}
    for name, text in _items(items, "--fix"):
        for target in _targets(name, tunables, "--fix"):
            out[target] = _value(tunables[target], text, "--fix", name)
    return out


def parse_space(items, hypermodel):
    """Parse `NAME=V1,V2` or `NAME=LO:HI` items into narrowed search spaces.

    Args:
        items: strings such as `["bn=before,after", "learning_rate=1e-4:1e-3"]`, or a mapping
            (`{"bn": ["before", "after"]}`). A list becomes a choice among those values; a
            range `LO:HI` narrows a numeric hyperparameter (for a numeric choice it keeps the
            choices inside the range). Every value must lie in the declared domain.
        hypermodel: a `TlkitHyperModel`.

    Returns:
        `{name: {"values": [...]}}` or `{name: {"min": lo, "max": hi}}`.

    Raises:
        TlkitError: unknown name, or a value outside the valid set.

    Example:
        >>> from tlkit.tuning.zoo_hypermodel import ZooHyperModel
        >>> hm = ZooHyperModel("fashion_cnn", (16, 16, 1))
        >>> parse_space(["bn=before,after"], hm)["block1_bn"]
        {'values': ['before', 'after']}
        >>> parse_space(["learning_rate=1e-4:1e-3"], hm)
        {'learning_rate': {'min': 0.0001, 'max': 0.001}}
    """
    tunables = hypermodel.tunables()
    out = {}
    for name, text in _items(items, "--space"):
        for target in _targets(name, tunables, "--space"):
            t = tunables[target]
            numeric = t.kind != "choice" or not isinstance(t.values[0], str)
            if ":" in text and numeric:
                lo_text, _, hi_text = text.partition(":")
                lo, hi = (_value(t, lo_text, "--space", name),
                          _value(t, hi_text, "--space", name))
                if lo > hi:
                    raise TlkitError(f"Invalid --space {name}={text}: the range is empty "
                                     f"(LO > HI).")
                if t.kind == "choice":
                    out[target] = {"values": [v for v in t.values if lo <= v <= hi]}
                elif lo == hi:
                    out[target] = {"values": [lo]}
                else:
                    out[target] = {"min": lo, "max": hi}
            else:
                values = []
                for part in text.split(","):
                    if part.strip():
                        v = _value(t, part.strip(), "--space", name)
                        if v not in values:
                            values.append(v)
                if not values:
                    raise TlkitError(f"Invalid --space {name}={text}: no values.")
                out[target] = {"values": values}
    return out
