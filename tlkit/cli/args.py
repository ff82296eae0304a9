"""Argument types and flag groups shared by several subcommands.

The flags are built from the settings dataclasses (`tlkit.config.settings.add_fields`), so a flag's
default is its dataclass field's default; `tlkit.cli.document_default` appends
"(default: X)" to the help from it, so a default is written once.
"""

from tlkit.config import settings
from tlkit.config.settings import csv_ints, weights_arg  # argument types, re-exported

__all__ = ["add_data_flags", "csv_ints", "weights_arg"]


def add_data_flags(g, image_size_help=None):
    """The data flags of finetune, tune and lr-find (`tlkit.config.settings.DataSettings`) on
    `g`."""
    overrides = {"image_size": {"help": image_size_help}} if image_size_help else {}
    return settings.add_fields(g, settings.DataSettings, **overrides)
