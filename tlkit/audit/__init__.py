"""`tlkit audit`: wrong labels, duplicates, split leakage, outliers and image problems.

Layer: a tool on the layers below (data, models, the frozen-feature cache, deploy); it
imports no workflow (the data and shape helpers it shares with `finetune` live in
`tlkit.data` and `tlkit.models.backbones`).

The contract (issue 23):

- `audit(data, backbone | model=..., out=D)` audits any source `finetune` reads and returns
  an `AuditResult` (`issues`, `summary`, `label_scores`); with `out` it writes
  `D/audit.json` (`{"issues": [...], "summary": {...}}`), `D/audit.csv` (the same rows),
  `D/label_scores.csv` (`path,label_quality,...` for every image), `D/galleries/KIND.png`
  and `D/summary.md`, all at the end through a staging folder (nothing partial on error),
  and with `fix_splits=True` `D/index.json` for `finetune --index`.
- Each issue is `{"path", "split", "kind", "score", "given", "suggested", "other"}`: `path`
  and `other` relative to the data root (array sources: `split/NNNNN`), `given`/`suggested`
  class names for label issues, `other` the paired image of duplicates and leaks (the
  image in the earlier split: `path` is the copy). `score` is in [0, 1], 1 the worst; rows are
  ranked by it within each kind. `kind` is one of `KINDS`.
- Bad input (fewer than K images in a class, `max_issues=0`, an unknown backbone, an
  unreadable model) raises `tlkit.core.errors.TlkitError` before anything is written.

One concept a module: `properties` (image checks and pixel hashes), `labels` (the out-of-fold
probe, label quality, confident learning), `duplicates` (neighbour search, exact and near
duplicates, leaks, split fixing), `outliers`, `gallery` (PNGs), `report` (summary.md) and
`run` (`audit`).

Example:
    >>> from tlkit.audit import KINDS
    >>> KINDS[:4]
    ('label', 'exact_duplicate', 'near_duplicate', 'leak')
"""

import sys
import types

from tlkit.audit.report import KINDS
from tlkit.audit.folder import FIELDS
from tlkit.audit.run import AuditResult, audit

__all__ = ["audit", "AuditResult", "KINDS", "FIELDS"]


class _CallableModule(types.ModuleType):
    """Importing `tlkit.audit` (the package) rebinds the name `tlkit.audit`, which
    tlkit/__init__.py defines as the function: the package is callable, so `tlkit.audit(...)`
    works whether or not the package was imported first."""

    def __call__(self, *args, **kwargs):
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
