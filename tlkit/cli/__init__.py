"""The `tlkit` command line: a thin layer over the library.

Each subcommand parses its flags and calls one library function. User mistakes
(`TlkitError`) print one line on stderr and exit with code 2, with no traceback.

One module per subcommand (`tlkit/cli/finetune.py`, `predict.py`, ...; shared flag groups and
argument types in `args.py`); each registers its
subcommands with `@subcommand` and gives them flags with `fn.configure = ...`.
"""

import argparse
import importlib
import os
import sys
import warnings

from tlkit.errors import TlkitError

SUBCOMMANDS = {}
SUBPARSERS = {}


def subcommand(name, help):
    """Register `fn(args)` as a subcommand; `fn.configure(parser)` adds its flags."""

    def wrap(fn):
        SUBCOMMANDS[name] = (fn, help)
        return fn

    return wrap


def _pending(issue):
    def run(args):
        raise TlkitError(f"'tlkit {args.command}' is not built yet (issue {issue}).")

    return run


COMMAND_MODULES = ("zoo", "finetune", "plan", "evaluate", "predict", "advise", "tune",
                   "explain", "export", "lr_find", "demo")
PENDING = {
    "tune": (5, "KerasTuner search over dropout, BN placement, learning rate"),
}


def _load_commands():
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(f"tlkit.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"tlkit.cli.{module}":
                raise
    for name, (issue, help_text) in PENDING.items():
        if name not in SUBCOMMANDS:
            SUBCOMMANDS[name] = (_pending(issue), help_text + " (not built yet)")


# --------------------------------------------------------------------------------------------


DIVERGED = 3  # exit code of a run whose loss became NaN or infinite (nothing was saved)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), as for every other user mistake."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def make_parser():
    """The argparse parser with every subcommand."""
    _load_commands()
    parser = _Parser(
        prog="tlkit", description="Keras-first transfer learning.",
        epilog="User mistakes exit with code 2 and one line on stderr.")
    from tlkit import __version__

    parser.add_argument("--version", action="version", version=f"tlkit {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_text) in SUBCOMMANDS.items():
        p = subs.add_parser(name, help=help_text, description=help_text)
        SUBPARSERS[name] = p
        configure = getattr(fn, "configure", None)
        if configure:
            configure(p)
    return parser


def _quiet_tensorflow_start():
    """Import TensorFlow with its C++ start-up chatter (oneDNN, CUDA probing) kept off stderr.

    TF 2.21 logs those lines through absl before TF_CPP_MIN_LOG_LEVEL applies, so they would
    bury tlkit's one-line errors. Set TLKIT_TF_LOGS=1 to see them.
    """
    if os.environ.get("TLKIT_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _format_warning(message, category, filename, lineno, line=None):
    """tlkit's own warnings as one plain line; others keep their origin."""
    if "tlkit" in str(filename):
        return f"tlkit: warning: {message}\n"
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"


def main(argv=None):
    """Entry point of the `tlkit` console script. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.formatwarning = _format_warning
    _quiet_tensorflow_start()
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    fn = SUBCOMMANDS[args.command][0]
    try:
        if getattr(args, "recipe", None):
            args = _apply_recipe(parser, args, argv)
        return fn(args) or 0
    except TlkitError as e:
        from tlkit.callbacks import DivergedError

        print(f"tlkit {args.command}: error: {e}", file=sys.stderr)
        return DIVERGED if isinstance(e, DivergedError) else 2
    except KeyboardInterrupt as e:
        print(f"tlkit {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130


def _apply_recipe(parser, args, argv):
    """Parse again with the recipe's values as defaults, so that flags on the command line win.

    Recipe keys are flag names (`lr`, `no-augment`, `batch-size`) or their destinations
    (`learning_rate`, `augment`); a `no-X: true` switch sets X to false.
    """
    from tlkit import recipes

    sub = SUBPARSERS[args.command]
    by_key = {}
    for action in sub._actions:
        if action.dest in ("help", "recipe") or not action.option_strings:
            continue
        by_key[action.dest] = (action, False)
        for opt in action.option_strings:
            flip = isinstance(action, argparse._StoreFalseAction)
            by_key[opt.lstrip("-").replace("-", "_")] = (action, flip)
    settings = recipes.load(args.recipe, args.command, valid=set(by_key))
    defaults = {}
    for key, value in settings.items():
        action, flip = by_key[key]
        value = _recipe_value(args.recipe, key, value, action)
        defaults[action.dest] = (not value) if flip and key != action.dest else value
    sub.set_defaults(**defaults)
    return parser.parse_args(argv)


def _recipe_value(recipe, key, value, action):
    """A recipe value converted and checked as its flag would be, or a one-line error."""
    flag = action.option_strings[-1] if action.option_strings else key
    if action.nargs == 0:  # a switch: true or false
        if not isinstance(value, bool):
            raise TlkitError(f"Recipe {recipe}: {key} must be true or false. "
                             f"Received: {value!r}.")
        return value
    if value is not None and action.type is not None:
        try:
            converted = action.type(value if isinstance(value, str) else str(value)) \
                if action.type in (int, float) or isinstance(value, str) else value
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            kind = getattr(action.type, "__name__", "value").strip("_")
            raise TlkitError(f"Recipe {recipe}: {key} ({flag}) must be a {kind}. "
                             f"Received: {value!r}.") from None
        if action.type is int and isinstance(value, float) and value != int(value):
            raise TlkitError(f"Recipe {recipe}: {key} ({flag}) must be an integer. "
                             f"Received: {value!r}.")
        value = converted
    if action.choices is not None and value not in action.choices:
        raise TlkitError(f"Recipe {recipe}: {key} ({flag}) must be one of "
                         f"{', '.join(map(str, action.choices))}. Received: {value!r}.")
    return value


if __name__ == "__main__":
    sys.exit(main())
