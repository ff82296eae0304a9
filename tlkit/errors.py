"""The one exception type for user mistakes.

Library code raises `TlkitError` when the input is wrong (a name, a path, a value); the CLI
turns it into one line on stderr and exit code 2. Programming errors stay ordinary
exceptions with tracebacks.

Messages name arguments with `setting(arg, value)`: `pooling='average'` for Python callers,
`--pooling average` while the CLI runs the call inside `cli_names({"pooling": "--pooling"})`.
"""

import contextlib
import contextvars

_CLI_NAMES = contextvars.ContextVar("tlkit_cli_names", default=None)


class TlkitError(ValueError):
    """A user-facing error: the message names the culprit and what would be valid."""


@contextlib.contextmanager
def cli_names(names):
    """Within the block, `setting` and `check_choice` name arguments by their CLI flags.

    Args:
        names: {python argument name: flag}, e.g. `{"pooling": "--pooling"}`.
    """
    token = _CLI_NAMES.set(dict(names))
    try:
        yield
    finally:
        _CLI_NAMES.reset(token)


def _flag(arg):
    names = _CLI_NAMES.get()
    return names.get(arg) if names else None


def setting(arg, value):
    """`arg=value` as the caller wrote it: Python's `name='v'`, or `--flag v` under the CLI.

    Example:
        >>> setting("pooling", "average")
        "pooling='average'"
        >>> with cli_names({"pooling": "--pooling"}):
        ...     setting("pooling", "average")
        '--pooling average'
    """
    flag = _flag(arg)
    return f"{flag} {value}" if flag else f"{arg}={value!r}"


def check_choice(arg, value, valid):
    """Raise `TlkitError` unless `value` is one of `valid`.

    Example:
        >>> check_choice("bn", "before", ("before", "after", "none"))
        'before'
        >>> with cli_names({"pooling": "--pooling"}):
        ...     try:
        ...         check_choice("pooling", "average", ("avg", "max"))
        ...     except TlkitError as e:
        ...         print(e)
        Invalid --pooling average. Expected one of: avg, max.
    """
    if value not in valid:
        shown = map(str, valid) if _flag(arg) else map(repr, valid)
        raise TlkitError(f"Invalid {setting(arg, value)}. Expected one of: {', '.join(shown)}.")
    return value


def suggest(name, valid, what):
    """Return an error for an unknown `name` that lists close matches and all valid names."""
    import difflib

    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return TlkitError(f"Unknown {what} {name!r}.{hint} Valid: {', '.join(sorted(valid))}.")
