"""The package version, in the bottom layer so that any module may record it (saving's
metadata, the tuning report, the demo's reuse keys) without importing the `tlkit` facade."""

__version__ = "0.1.0"
