"""The `tlkit` command line: a thin layer over the library.

Each subcommand parses its flags and calls one library function. User mistakes
(`TlkitError`) print one line on stderr and exit with code 2, with no traceback.
"""

import argparse
import os
import sys

from tlkit.errors import TlkitError

SUBCOMMANDS = {}


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


# --------------------------------------------------------------------------------------------


def _configure_zoo(p):
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="output format (default: table)")


@subcommand("zoo", "list the from-scratch models: name, default input, parameter count")
def cmd_zoo(args):
    from tlkit import zoo

    rows = zoo.table()
    if args.format == "csv":
        print("name,input_shape,num_classes,params,description")
        for r in rows:
            shape = "x".join(map(str, r["input_shape"]))
            print(f"{r['name']},{shape},{r['num_classes']},{r['params']},\"{r['description']}\"")
        return 0
    print(f"{'model':<14} {'input':<12} {'classes':>7} {'params':>13}  description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['name']:<14} {shape:<12} {r['num_classes']:>7} {r['params']:>13,}  "
              f"{r['description']}")
    return 0


cmd_zoo.configure = _configure_zoo

for _name, _issue, _help in [
    ("finetune", 4, "train a classifier with one of the four strategies"),
    ("plan", 4, "print the strategy matrix for a backbone"),
    ("evaluate", 4, "evaluate a saved model on a data set"),
    ("predict", 4, "top-k classes for images"),
    ("tune", 5, "KerasTuner search over dropout, BN placement, learning rate"),
    ("explain", 8, "feature maps and Grad-CAM"),
    ("export", 8, "export to SavedModel / TFLite / .keras"),
    ("advise", 4, "recommend a strategy for a data set"),
    ("demo", 7, "reproduce the size-versus-similarity matrix"),
]:
    if _name not in SUBCOMMANDS:
        SUBCOMMANDS[_name] = (_pending(_issue), _help + " (not built yet)")


# --------------------------------------------------------------------------------------------


def make_parser():
    """The argparse parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tlkit", description="Keras-first transfer learning.",
        epilog="User mistakes exit with code 2 and one line on stderr.")
    from tlkit import __version__

    parser.add_argument("--version", action="version", version=f"tlkit {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_text) in SUBCOMMANDS.items():
        p = subs.add_parser(name, help=help_text, description=help_text)
        configure = getattr(fn, "configure", None)
        if configure:
            configure(p)
    return parser


def main(argv=None):
    """Entry point of the `tlkit` console script. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    fn = SUBCOMMANDS[args.command][0]
    try:
        return fn(args) or 0
    except TlkitError as e:
        print(f"tlkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tlkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
