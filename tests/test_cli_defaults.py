"""A command's options and the settings dataclass they fill share one default: what a user gets from
the command line is what code calling the dataclass gets, and the supernet recipe is the documented one."""
from __future__ import annotations

import dataclasses

import pytest

import cli
from infra.cliargs import default_of
from nas.everything.settings import TuneSettings
from nas.training.settings import TrainSettings

# (command path, settings class, {option dest: settings field})
OPTIONS = [
    (("train-supernet",), TrainSettings,
     {"batch_images": "batch_images", "random_subnets": "random_subnets", "lr": "lr",
      "largest_weight": "largest_weight", "loss_points": "loss_points", "rerank_every": "rerank_every",
      "checkpoint_every": "checkpoint_every", "seed": "seed"}),
    (("tune-everything",), TuneSettings,
     {"trials": "trials", "max_points_per_side": "max_points_per_side", "max_crop_layers": "max_crop_layers",
      "time": "time_mode", "sampler": "sampler", "seed": "seed"}),
    (("latency", "profile"), "ProfileSettings",
     {"samples": "samples", "repeats": "repeats", "warmup": "warmup", "min_seconds": "min_seconds",
      "rounds": "rounds", "prompts": "prompts", "seed": "seed"}),
]


@pytest.mark.parametrize("path, settings, options", OPTIONS, ids=[" ".join(p) for p, _, _ in OPTIONS])
def test_option_defaults_are_the_settings_defaults(path, settings, options):
    if settings == "ProfileSettings":  # imports torch: loaded only here
        from nas.latency.profile import ProfileSettings as settings
    leaf = cli.subcommand_parser(cli.build_parser([cli.COMMANDS[path[0]][0]]), path)
    fields = {f.name: f.default for f in dataclasses.fields(settings)}
    for dest, name in options.items():
        assert leaf.get_default(dest) == fields[name], f"{' '.join(path)} --{dest} vs {settings.__name__}.{name}"


def test_train_settings_hold_the_supernet_recipe():
    """README: batch 2 per process, AdamW at 1e-4, the largest subnet weighted 4x in each sandwich step."""
    s = TrainSettings(steps=1)
    assert (s.batch_images, s.lr, s.largest_weight, s.random_subnets) == (2, 1e-4, 4.0, 2)


def test_default_of_names_a_missing_field():
    with pytest.raises(TypeError, match="no field 'lrate'"):
        default_of(TrainSettings, "lrate")
    with pytest.raises(TypeError, match="steps has no plain default"):
        default_of(TrainSettings, "steps")
