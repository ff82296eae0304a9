"""The one exception type for user mistakes.

Library code raises `TlkitError` when the input is wrong (a name, a path, a value); the CLI
turns it into one line on stderr and exit code 2. Programming errors stay ordinary
exceptions with tracebacks.
"""


class TlkitError(ValueError):
    """A user-facing error: the message names the culprit and what would be valid."""


def check_choice(arg, value, valid):
    """Raise `TlkitError` unless `value` is one of `valid`.

    Example:
        >>> check_choice("bn", "before", ("before", "after", "none"))
        'before'
    """
    if value not in valid:
        raise TlkitError(
            f"Invalid {arg}={value!r}. Expected one of: {', '.join(map(repr, valid))}."
        )
    return value


def suggest(name, valid, what):
    """Return an error for an unknown `name` that lists close matches and all valid names."""
    import difflib

    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return TlkitError(f"Unknown {what} {name!r}.{hint} Valid: {', '.join(sorted(valid))}.")
