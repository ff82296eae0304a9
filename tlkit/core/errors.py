"""The one exception type for user mistakes.

Library code raises `TlkitError` when the input is wrong (a name, a path, a value); the CLI
turns it into one line on stderr and exit code 2. Programming errors stay ordinary
exceptions with tracebacks.

Messages name arguments with `setting(arg, value)`: `pooling='average'` for Python callers,
`--pooling average` while the CLI runs the call inside `cli_names({"pooling": "--pooling"})`.
"""

import contextlib
import contextvars
import re

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


# name=value in a message (not in a URL): 'quoted', "quoted", (a, tuple) or a bare token
_SETTING = re.compile(r"(?<![?&/.-])\b([a-z][a-z0-9_]*)="
                      r"('[^']*'|\"[^\"]*\"|\([^()]*\)|[^\s,;()]+?)"
                      r"(?=[\s,;)]|\.(?:\s|$)|$)")


_MUST = re.compile(r"(?<![-\w])([a-z][a-z0-9_]*)(?= must\b)")


def cli_message(message, names=None):
    """`message` with each `name=value` of a flag written as the CLI user types it.

    The CLI's safety net for library messages that do not use `setting`: `--lr 0.5` for
    `learning_rate=0.5`, and `--lr must ...` for `learning_rate must ...`. Names that are not
    flags stay as they are.

    Args:
        message: the text of a `TlkitError`.
        names: {argument name: flag}; default: the ones of the enclosing `cli_names`.

    Example:
        >>> cli_message("head_epochs=12 must be between 1 and epochs=10.",
        ...             {"head_epochs": "--head-epochs", "epochs": "--epochs"})
        '--head-epochs 12 must be between 1 and --epochs 10.'
        >>> cli_message("learning_rate must be > 0. Received: -1.0.", {"learning_rate": "--lr"})
        '--lr must be > 0. Received: -1.0.'
    """
    names = _CLI_NAMES.get() if names is None else names
    if not names:
        return message

    def flag(m):
        name, value = m.group(1), m.group(2)
        if name not in names:
            return m.group(0)
        if value[:1] in "'\"" and value[-1:] == value[:1] and len(value) > 1:
            value = value[1:-1]
        return f"{names[name]} {value}"

    message = _SETTING.sub(flag, message)
    return _MUST.sub(lambda m: names.get(m.group(1), m.group(1)), message)


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
