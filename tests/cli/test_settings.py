"""Run settings are dataclasses (`tlkit.config.settings`): the CLI's flags, the library's signature
defaults and settings.yaml all come from them, so each default is written once."""

import dataclasses
import inspect

import pytest

from tlkit import cli
from tlkit.config import recipes, settings

PARSER = cli.make_parser()
FINETUNE_FIELDS = {f.name: f for cls in settings.FINETUNE for f in dataclasses.fields(cls)}


def parsed_defaults(*argv):
    return vars(PARSER.parse_args(list(argv)))


def test_finetune_flags_are_the_dataclass_fields():
    dests = {a.dest for a in cli.ACTIONS["finetune"] if a.dest not in ("help", "recipe")}
    assert dests == set(FINETUNE_FIELDS)


def test_cli_defaults_are_the_dataclass_defaults_and_finetunes():
    from tlkit.workflows.finetune import finetune

    ns = parsed_defaults("finetune")
    signature = inspect.signature(finetune).parameters
    for name, field in FINETUNE_FIELDS.items():
        assert ns[name] == field.default, name
        if name in signature and signature[name].default is not inspect.Parameter.empty:
            assert signature[name].default == field.default, name
    in_signature = {n for n, p in signature.items() if p.default is not inspect.Parameter.empty}
    assert in_signature - set(FINETUNE_FIELDS) == {"verbose"}  # every other one is a setting


@pytest.mark.parametrize("argv", [["tune"], ["lr-find"], ["advise", "--data", "digits"]])
def test_data_flags_of_other_commands_share_the_defaults(argv):
    ns = parsed_defaults(*argv)
    for field in dataclasses.fields(settings.DataSettings):
        if field.name in ns and field.name != "data":
            assert ns[field.name] == field.default, (argv[0], field.name)
    assert ns["batch_size"] == settings.RUN.batch_size and ns["seed"] == settings.RUN.seed


def test_library_defaults_match_the_settings():
    from tlkit import data
    from tlkit.training import schedules, train_settings
    from tlkit.data import decode

    assert settings.RECIPE.schedule == schedules.DEFAULT
    assert settings.RECIPE.warmup == schedules.DEFAULT_WARMUP
    assert settings.SCHEDULE_CHOICES == tuple(schedules.SCHEDULES)
    assert settings.DATA.resize == decode.DEFAULT_RESIZE
    assert dataclasses.asdict(train_settings.TrainSettings()) == \
        dataclasses.asdict(settings.RECIPE)
    load = inspect.signature(data.load).parameters
    for name in ("val_fraction", "test_fraction", "on_bad_image", "download", "resize"):
        assert load[name].default == getattr(settings.DATA, name), name
    assert load["seed"].default == settings.RUN.seed


def test_settings_yaml_from_the_dataclasses_reads_back_as_a_recipe(tmp_path):
    run = [settings.resolve(PARSER.parse_args(["finetune", "--lr", "0.01", "--no-augment",
                                               "--dense", "64"]), cls)
           for cls in settings.FINETUNE]
    path = recipes.dump(run, tmp_path / "settings.yaml")
    text = path.read_text()
    assert "learning_rate: 0.01" in text and "augment: false" in text
    back = recipes.load(path, "finetune", valid=set(cli.recipe_keys("finetune")))
    assert back["learning_rate"] == 0.01 and back["augment"] is False
    assert back["dense"] == [64] and set(back) == set(FINETUNE_FIELDS)


def test_add_fields_switches_and_overrides():
    import argparse

    p = argparse.ArgumentParser()
    actions = settings.add_fields(p, settings.RunSettings, ("augment", "autotune", "seed"),
                                  seed={"help": "seed", "metavar": "N"})
    assert [a.option_strings for a in actions] == [["--no-augment"], ["--autotune"],
                                                   ["--no-autotune"], ["--seed"]]
    assert actions[-1].metavar == "N" and actions[-1].default == settings.RUN.seed
    assert p.parse_args([]).autotune is None and p.parse_args(["--no-autotune"]).autotune is False
    assert p.parse_args(["--no-augment"]).augment is False


def test_finetune_is_a_facade_over_typed_settings(monkeypatch):
    from tlkit.workflows import finetune as workflow

    seen = {}

    def typed(*cfgs, verbose):
        seen.update(cfgs=cfgs, verbose=verbose)
        return "result"

    monkeypatch.setattr(workflow, "run_finetune", typed)
    assert workflow.finetune("digits", "zoo:simple_cnn", epochs=3, head_solver="adam",
                             out="m.h5", verbose=0) == "result"
    data_cfg, model_cfg, run_cfg, recipe, calibration, output = seen["cfgs"]
    assert [type(c) for c in seen["cfgs"]] == list(settings.FINETUNE)
    assert data_cfg.data == "digits" and model_cfg.backbone == "zoo:simple_cnn"
    assert run_cfg.epochs == 3 and recipe.head_solver == "adam" and output.out == "m.h5"
    assert calibration == settings.CALIBRATION and seen["verbose"] == 0
