"""Settings describe themselves (``setting()``: help, label, unit, range, choices), and the command line's
flags, the panel's controls and the config classes' docstrings are generated from those descriptions."""

import argparse
import math
from dataclasses import dataclass, field

import ipywidgets as w
import pytest

import workbench.config
import workbench.ui.panel
from workbench import ParallelConfig, RunConfig, TrainConfig
from workbench._plain import leaf_settings, setting
from workbench.cli import _parser, config_from_args, main
from workbench.config import field_paths
from workbench.ui import Workbench


def _run_flags() -> dict[str, argparse.Action]:
    _, parsers = _parser(with_run_flags=True)
    flags: dict[str, argparse.Action] = {}
    for action in parsers["run"]._actions:
        flags.setdefault(action.dest, action)  # a flag's first action: --compile, not its hidden --no-compile
    return flags


def test_every_setting_has_a_flag_with_help_and_a_panel_control_or_a_reason_why_not(tmp_path):
    settings = leaf_settings(RunConfig)
    assert list(settings) == field_paths()  # compress and name included
    flags = _run_flags()
    panel = Workbench(store=tmp_path / "runs")
    for path, (_, described) in settings.items():
        assert described is not None and described.help.strip(), f"{path} is not a setting(..., help=...)"
        assert path in flags, f"{path} has no `workbench run` flag"
        help_text = flags[path].help
        assert help_text and help_text != argparse.SUPPRESS and not help_text.startswith(path), path
        if described.not_in_panel:
            assert path not in panel.controls, f"{path} says it is not in the panel, but it is"
        else:
            assert path in panel.controls, f"{path} has no panel control and no not_in_panel reason"
    assert {p for p, (_, s) in settings.items() if s.not_in_panel} == {
        "parallel.nproc",
        "parallel.nnodes",
        "parallel.strategy",
        "parallel.backend",
        "compress",
        "task",
        "train.tokens",
    }


def test_each_control_is_the_kind_its_description_asks_for(tmp_path):
    panel = Workbench(store=tmp_path / "runs")
    settings = leaf_settings(RunConfig)
    for path, control in panel.controls.items():
        hint, described = settings[path]
        assert control.description.startswith(described.label or path.rsplit(".", 1)[-1].replace("_", " "))
        if described.options or described.choices:
            assert isinstance(control, (w.Dropdown, w.ToggleButtons, w.SelectMultiple)), path
        elif hint is bool:
            assert isinstance(control, w.Checkbox), path
        elif described.range is not None:
            assert isinstance(control, (w.IntSlider, w.FloatSlider, w.FloatLogSlider)), path
            low, high = described.range
            shown = (10**control.min, 10**control.max) if described.log else (control.min, control.max)
            assert math.isclose(shown[0], low) and math.isclose(shown[1], high), path
    assert isinstance(panel.controls["hardware.precision"], w.ToggleButtons)  # widget="toggle"
    assert "px" in panel.controls["data.augment.crop"].description  # the unit follows the label


def test_the_help_lists_choices_units_and_reasons():
    flags = _run_flags()
    assert "resnet20" in flags["model.name"].help  # a registry's names, asked for when --help is built
    assert "0 px" in flags["data.augment.crop"].help
    assert "standard deviations" in flags["data.augment.brightness"].help
    assert "contrast" in flags["data.augment.contrast"].help  # its own help, not its neighbour's comment
    assert "passes over the training data" in TrainConfig.__doc__ and "epochs: int = 5" in TrainConfig.__doc__
    assert "not in the panel: a data-parallel run is a torchrun launch" in ParallelConfig.__doc__


@dataclass(frozen=True)
class ToyTrain(TrainConfig):
    toy_knob: float = setting(
        0.5, help="a toy knob, added in one place", label="toy knob", unit="turns", range=(0.0, 1.0), step=0.1
    )


@dataclass(frozen=True)
class ToyRun(RunConfig):
    train: ToyTrain = field(default_factory=ToyTrain)


def test_a_new_setting_is_one_edit_and_appears_in_the_help_the_panel_and_the_docs(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(workbench.config, "RunConfig", ToyRun)
    monkeypatch.setattr(workbench.ui.panel, "RunConfig", ToyRun)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--toy-knob X a toy knob, added in one place (default: 0.5 turns)" in text
    parser, _ = _parser(with_run_flags=True)
    assert config_from_args(parser.parse_args(["run", "--toy-knob", "0.25"])).train.toy_knob == 0.25
    panel = Workbench(store=tmp_path / "runs")
    knob = panel.controls["train.toy_knob"]
    assert isinstance(knob, w.FloatSlider) and knob.description == "toy knob (turns)" and knob.max == 1.0
    knob.value = 0.75
    assert panel.config.train.toy_knob == 0.75
    assert "toy_knob: float = 0.5 turns -- a toy knob" in ToyTrain.__doc__
