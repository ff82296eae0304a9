"""The CLI's conventions, over every subcommand: help with defaults, choices, the CLI's own
names in messages, and `--help` without TensorFlow."""

import json
import re
import subprocess
import sys

import pytest

from tlkit.core import choices, errors
from tlkit import cli

PARSER = cli.make_parser()
FLAGS = [(name, action) for name in cli.SUBCOMMANDS for action in cli.ACTIONS[name]
         if action.option_strings and action.dest != "help"]


def flag_id(param):
    return f"{param[0]} {cli.flag_of(param[1])}" if isinstance(param, tuple) else str(param)


@pytest.mark.parametrize("command,action", FLAGS, ids=map(flag_id, FLAGS))
def test_every_flag_has_help_with_its_default(command, action):
    assert action.help and action.help.strip(), f"tlkit {command} {cli.flag_of(action)}: no help"
    if cli._shown_default(action) is not None:
        assert "default" in action.help.lower()


@pytest.mark.parametrize("command,action", FLAGS, ids=map(flag_id, FLAGS))
def test_fixed_vocabularies_are_choices(command, action):
    # "a | b | c" in a help text is a vocabulary argparse should check
    if action.choices is None:
        assert not re.search(r"\w \| \w", action.help or ""), \
            f"tlkit {command} {cli.flag_of(action)}: use choices=, not {action.help!r}"


def test_help_shows_defaults_and_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["tune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--pooling {avg,max,flatten}" in out and "(default: avg)" in out
    assert "--batch-size N images per batch (default: 32)" in out


def test_parsing_imports_no_tensorflow():
    """`tlkit --help` and every `tlkit COMMAND --help` answer without importing TensorFlow."""
    code = """
import contextlib, io, json, sys
from tlkit import cli
parser = cli.make_parser()
for argv in [["--help"]] + [[name, "--help"] for name in cli.SUBCOMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pass
heavy = sorted(m for m in ("tensorflow", "keras", "numpy", "keras_tuner") if m in sys.modules)
print(json.dumps({"commands": sorted(cli.SUBCOMMANDS), "heavy": heavy}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert {"finetune", "tune", "demo", "plan"} <= set(result["commands"])
    assert result["heavy"] == [], f"importing {result['heavy']} while parsing"


def test_library_errors_name_the_flags():
    with errors.cli_names(cli.cli_names("finetune")):
        with pytest.raises(errors.TlkitError, match=r"^Invalid --head-bn sideways\. "
                                                    r"Expected one of: before, after, none\.$"):
            errors.check_choice("head_bn", "sideways", choices.BN_PLACEMENTS)
        assert errors.setting("learning_rate", 0.5) == "--lr 0.5"  # dest and flag differ
    assert errors.setting("head_bn", "x") == "head_bn='x'"  # Python callers keep Python names


def test_flag_names_in_a_library_error_from_the_cli(capsys):
    """A vocabulary reached by the library (argparse's choices, once declared, come first)."""
    code = cli.main(["tune", "--model", "zoo:fashion_cnn", "--list-space", "--fix",
                     "optimizer=nesterov"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "optimizer" in err and "adam" in err and "Traceback" not in err


def test_library_messages_reached_from_the_cli_name_the_flags(capsys, tmp_path):
    code = cli.main(["finetune", "--data", "digits", "--weights", "none", "--image-size", "32",
                     "--strategy", "large-similar", "--epochs", "10", "--head-epochs", "20",
                     "--out", str(tmp_path / "m.h5")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--head-epochs 20" in err and "--epochs 10" in err and "head_epochs" not in err


def test_cli_message_rewrites_flags_only():
    names = {"learning_rate": "--lr", "weights": "--weights"}
    assert errors.cli_message("Received: learning_rate=-1.0, weights='imagenet'.", names) == \
        "Received: --lr -1.0, --weights imagenet."
    kept = "Received: shape=(3,); see https://example.org/?weights=x"
    assert errors.cli_message(kept, names) == kept
    assert errors.cli_message("learning_rate must be > 0", {}) == "learning_rate must be > 0"


def test_vocabularies_match_the_library():
    from tlkit.models import blocks
    from tlkit import data, tuning
    from tlkit.experiments import demo
    from tlkit.training import strategies
    from tlkit.cli import demo as cli_demo
    from tlkit.data import decode

    assert blocks.POOLINGS is choices.POOLINGS and blocks.BN_PLACEMENTS is choices.BN_PLACEMENTS
    assert tuple(strategies.STRATEGIES) == choices.STRATEGIES
    assert tuple(tuning.TUNERS) == choices.TUNERS
    assert tuple(tuning.OBJECTIVES) == choices.OBJECTIVES
    assert tuple(decode.RESIZE_MODES) == choices.RESIZE_MODES
    assert tuple(data.BAD_IMAGE_POLICIES) == choices.BAD_IMAGE_POLICIES
    # the demo's defaults as its help shows them
    src, tgt = demo.resolve_classes()
    for shown, ids in ((cli_demo.DEFAULT_SOURCE, src), (cli_demo.DEFAULT_TARGET, tgt)):
        assert shown == (",".join(demo.FASHION_CLASSES[i] for i in ids) + ", i.e. "
                         + ",".join(map(str, ids)))
    assert cli_demo.DEFAULT_OUT == demo.DEFAULT_OUT


def test_recipe_keys_are_flags_and_destinations():
    keys = cli.recipe_keys("finetune")
    assert keys["lr"][0] is keys["learning_rate"][0]
    assert keys["no_augment"][1] and not keys["augment"][1]  # no-augment: true -> augment off
    assert "help" not in keys and "recipe" not in keys
