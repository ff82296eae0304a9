"""Recipes: one YAML file = one reproducible run.

A recipe is a mapping of CLI flag names (dashes or underscores) to values, optionally under a
top-level key naming the subcommand, e.g.:

    # recipes/small-similar.yaml
    finetune:
      data: photos/
      backbone: mobilenet_v2
      strategy: small-similar
      epochs: 10

`tlkit finetune --recipe recipes/small-similar.yaml --epochs 3` takes the recipe as defaults;
flags given on the command line win.

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.yaml"
    >>> _ = p.write_text("finetune:\\n  epochs: 3\\n  strategy: large-similar\\n")
    >>> load(p, "finetune", valid={"epochs", "strategy"})
    {'epochs': 3, 'strategy': 'large-similar'}
"""

import pathlib

import yaml

from tlkit.config import settings as settings_lib
from tlkit.core import fileio
from tlkit.core.errors import TlkitError


def load(path, command=None, valid=None):
    """Read recipe `path` and return {dest_name: value} for `command`.

    Args:
        path: the YAML file.
        command: subcommand name; when the file has a top-level key of that name, its mapping
            is used, otherwise the whole file.
        valid: allowed destination names (underscored); unknown keys raise `TlkitError`
            naming the file, the key and the valid keys.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise TlkitError(f"Recipe not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TlkitError(f"Recipe {path} is not valid YAML: {str(e).splitlines()[0]}")
    if not isinstance(doc, dict):
        raise TlkitError(f"Recipe {path} must be a mapping of flag names to values.")
    if command and isinstance(doc.get(command), dict):
        doc = doc[command]
    settings = {str(k).replace("-", "_"): v for k, v in doc.items()}
    if valid is not None:
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise TlkitError(f"Recipe {path}: unknown key(s) {', '.join(unknown)}. Valid: "
                             f"{', '.join(sorted(k.replace('_', '-') for k in valid))}.")
    return settings


def dump(settings, path):
    """Write resolved settings as YAML (the record of what a run actually used).

    `settings` is a mapping ({field: value}, e.g. `tlkit.config.settings.as_dict` of the run's
    settings dataclasses) or a sequence of `tlkit.config.settings` dataclass instances.
    """
    if not isinstance(settings, dict):
        settings = settings_lib.as_dict(*settings)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # snake_case keys, as in report.json and the metadata; `load` reads them back as a recipe
    clean = {k: (list(v) if isinstance(v, tuple) else v)
             for k, v in settings.items() if k not in ("command", "func", "recipe")}
    with fileio.atomic_path(path, suffix=".yaml") as tmp:
        pathlib.Path(tmp).write_text(yaml.safe_dump(clean, sort_keys=True), encoding="utf-8")
    return path
