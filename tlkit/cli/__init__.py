"""The `tlkit` command line: a thin layer over the library.

Layer: the top, under the `tlkit` facade only; no library module imports it. Its
commands import the library when they run (a comment says so at each), so parsing and
`--help` import no TensorFlow.

Each subcommand parses its flags and calls one library function. User mistakes
(`TlkitError`) print one line on stderr and exit with code 2, with no traceback.

One module per subcommand (`tlkit/cli/finetune.py`, `predict.py`, ...; shared flag groups and
argument types in `args.py`); each registers its subcommands with `@subcommand` and gives them
flags with `fn.configure = ...`. The conventions every subcommand follows (checked over all of
them by tests/cli/test_conventions.py):

- run settings are dataclasses (`tlkit.config.settings`): `settings.add_fields` adds their fields as
  flags, so a flag's default is its field's default, and the library's signatures read the
  same fields;
- every flag has help text; "(default: X)" is appended from the flag's own `default=` unless
  the text already says what the default is, so write a default once, in `default=`;
- fixed vocabularies are argparse `choices=` (the tuples of `tlkit.core.choices`);
- messages name flags as typed (`Invalid --pooling average`): library errors raised inside a
  command go through `tlkit.core.errors.cli_names` and `cli_message`;
- parsing imports no TensorFlow: command modules import heavy modules inside `fn(args)`, so
  `tlkit --help` and `tlkit COMMAND --help` answer at once. TensorFlow's start-up lines stay
  off stderr (`tlkit.core.console`; `TLKIT_TF_LOGS=1` shows them).
"""

import argparse
import importlib
import sys
import warnings

from tlkit.core import console, errors
from tlkit.core.errors import TlkitError
from tlkit.core.version import __version__

SUBCOMMANDS = {}
SUBPARSERS = {}
ACTIONS = {}  # subcommand -> the argparse actions its configure() added, in order


def subcommand(name, help):
    """Register `fn(args)` as a subcommand; `fn.configure(parser)` adds its flags."""

    def wrap(fn):
        SUBCOMMANDS[name] = (fn, help)
        return fn

    return wrap



COMMAND_MODULES = ("zoo", "finetune", "plan", "evaluate", "predict", "advise", "tune",
                   "explain", "export", "lr_find", "demo", "audit", "curve", "calibrate")


def _load_commands():
    """Import the subcommand modules; none may import TensorFlow at import or configure time
    (`tlkit --help` answers in well under a second; tests/cli/test_conventions.py checks)."""
    for module in COMMAND_MODULES:
        importlib.import_module(f"tlkit.cli.{module}")


# --------------------------------------------------------------------------------------------


DIVERGED = 3  # exit code of a run whose loss became NaN or infinite (nothing was saved)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), as for every other user mistake."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Recorder:
    """A parser or argument group that records every action added through it.

    `configure(p)` gets one, so that tlkit knows each subcommand's flags through argparse's
    public return values (recipes, help defaults, CLI names in errors), not its internals.
    """

    def __init__(self, target, record):
        self._target = target
        self._record = record

    def add_argument(self, *args, **kwargs):
        """`argparse.ArgumentParser.add_argument`, recorded."""
        action = self._target.add_argument(*args, **kwargs)
        self._record.append(action)
        return action

    def add_argument_group(self, *args, **kwargs):
        """An argument group whose flags are recorded too."""
        return _Recorder(self._target.add_argument_group(*args, **kwargs), self._record)

    def add_mutually_exclusive_group(self, *args, **kwargs):
        """A mutually exclusive group whose flags are recorded too."""
        return _Recorder(self._target.add_mutually_exclusive_group(*args, **kwargs),
                         self._record)

    def __getattr__(self, name):
        return getattr(self._target, name)


def _shown_default(action):
    """The default as help shows it, or None when there is nothing to show."""
    value = action.default
    if action.nargs == 0 or value is None or value is False or \
            value in (argparse.SUPPRESS, (), [], ""):  # not `in (False, ...)`: 0 == False
        return None  # a switch, or a flag whose absence the help text explains
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def document_default(action):
    """Append "(default: X)" to a flag's help unless the help already names its default."""
    if action.help in (None, argparse.SUPPRESS) or "default" in action.help.lower():
        return
    shown = _shown_default(action)
    if shown is not None:
        action.help = f"{action.help} (default: {shown.replace('%', '%%')})"


def flag_of(action):
    """The flag a user types for `action`: its first long option (`--lr`)."""
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs or action.option_strings or [action.dest])[0]


def cli_names(command):
    """{library argument name: flag} for one subcommand, for messages (`tlkit.core.errors`).

    The flags' destinations are the library's keyword names (`--lr` stores `learning_rate`);
    a subcommand whose call renames one adds `fn.cli_names = {"fmt": "--format"}`.
    """
    names = {a.dest: flag_of(a) for a in ACTIONS.get(command, ())
             if a.option_strings and a.nargs != 0}
    names.update(getattr(SUBCOMMANDS[command][0], "cli_names", {}))
    return names


def make_parser():
    """The argparse parser with every subcommand (TensorFlow is not imported)."""
    _load_commands()
    parser = _Parser(
        prog="tlkit", description="Keras-first transfer learning.",
        epilog="User mistakes exit with code 2 and one line on stderr. TensorFlow's start-up "
               "lines are hidden; TLKIT_TF_LOGS=1 shows them.")
    parser.add_argument("--version", action="version", version=f"tlkit {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_text) in SUBCOMMANDS.items():
        p = subs.add_parser(name, help=help_text, description=help_text)
        SUBPARSERS[name] = p
        ACTIONS[name] = []
        configure = getattr(fn, "configure", None)
        if configure:
            configure(_Recorder(p, ACTIONS[name]))
        for action in ACTIONS[name]:
            document_default(action)
    return parser


def _format_warning(message, category, filename, lineno, line=None):
    """tlkit's own warnings as one plain line; others keep their origin."""
    if "tlkit" in str(filename):
        return f"tlkit: warning: {message}\n"
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"


def main(argv=None):
    """Entry point of the `tlkit` console script. Returns the exit code."""
    console.install()  # TensorFlow, imported by the command that needs it, starts quietly
    warnings.formatwarning = _format_warning
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    fn = SUBCOMMANDS[args.command][0]
    console.quiet_runtime()  # every command: TensorFlow's runtime ERROR lines are notices
    names = cli_names(args.command)
    try:
        if getattr(args, "recipe", None):
            args = _apply_recipe(parser, args, argv)
        with errors.cli_names(names):  # library messages name the flags (`--pooling avg`)
            return fn(args) or 0
    except TlkitError as e:
        # the library is imported when the command runs: parsing and --help import no TensorFlow
        from tlkit.training.callbacks import DivergedError

        print(f"tlkit {args.command}: error: {errors.cli_message(str(e), names)}",
              file=sys.stderr)
        return DIVERGED if isinstance(e, DivergedError) else 2
    except KeyboardInterrupt as e:
        print(f"tlkit {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tlkit predict ... | head`: the reader left; no traceback
        # Python's documented recipe: point stdout at devnull so the exit flush cannot fail.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def recipe_keys(command):
    """{recipe key: (action, flips)} of a subcommand: its flag names without dashes
    (`lr`, `no_augment`) and their destinations (`learning_rate`, `augment`); `flips` is true
    for a `--no-X` switch named by its flag (`no-augment: true` sets `augment` to false)."""
    by_key = {}
    for action in ACTIONS.get(command, ()):
        if action.dest in ("help", "recipe") or not action.option_strings:
            continue
        by_key[action.dest] = (action, False)
        flips = action.nargs == 0 and action.const is False  # action="store_false"
        for opt in action.option_strings:
            by_key[opt.lstrip("-").replace("-", "_")] = (action, flips)
    return by_key


def _apply_recipe(parser, args, argv):
    """Parse again with the recipe's values as defaults, so that flags on the command line win.

    Recipe keys are flag names (`lr`, `no-augment`, `batch-size`) or their destinations
    (`learning_rate`, `augment`); a `no-X: true` switch sets X to false.
    """
    # the library is imported when the command runs: parsing and --help import no TensorFlow
    from tlkit.config import recipes

    by_key = recipe_keys(args.command)
    settings = recipes.load(args.recipe, args.command, valid=set(by_key))
    defaults = {}
    for key, value in settings.items():
        action, flip = by_key[key]
        value = _recipe_value(args.recipe, key, value, action)
        defaults[action.dest] = (not value) if flip and key != action.dest else value
    SUBPARSERS[args.command].set_defaults(**defaults)
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
