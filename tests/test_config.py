import json

import pytest

from workbench import AugmentConfig, ConfigError, DataConfig, HardwareConfig, ModelConfig, RunConfig, TrainConfig
from workbench.config import field_paths


def test_round_trip_and_hash():
    cfg = RunConfig(
        model=ModelConfig(name="resnet20", width=0.5),
        train=TrainConfig(epochs=3, optimizer="adamw"),
        data=DataConfig(augment=AugmentConfig(crop=2, flip=True)),
        name="x",
    )
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.config_hash() == cfg.config_hash()
    assert cfg.replace(name="other").config_hash() == cfg.config_hash()  # the label is not the experiment
    assert cfg.replace(**{"train.lr": 0.1}).config_hash() != cfg.config_hash()


def test_flat_has_dotted_leaf_fields():
    flat = RunConfig().flat()
    assert flat["model.name"] == "cnn"
    assert flat["data.augment.flip"] is False
    assert flat["compress"] == "none"
    assert set(field_paths()) == set(flat)


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: TrainConfig(lr=-0.1), "train.lr"),
        (lambda: TrainConfig(batch_size=0), "train.batch_size"),
        (lambda: ModelConfig(width=0), "model.width"),
        (lambda: DataConfig(fraction=1.5), "data.fraction"),
        (lambda: DataConfig(selection="best"), "data.selection"),
        (lambda: HardwareConfig(precision="fp8"), "hardware.precision"),
        (lambda: HardwareConfig(device="tpu"), "hardware.device"),
        (lambda: AugmentConfig(rotate=500), "augment.rotate"),
    ],
)
def test_bad_values_name_the_field(build, field):
    with pytest.raises(ConfigError) as e:
        build()
    assert field in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "build, closest",
    [
        (lambda: ModelConfig(name="resnet21"), "resnet20"),
        (lambda: TrainConfig(optimizer="adamz"), "adam"),
        (lambda: TrainConfig(schedule="cosin"), "cosine"),
        (lambda: DataConfig(dataset="digit"), "digits"),
    ],
)
def test_unknown_names_list_choices_and_closest(build, closest):
    with pytest.raises(ValueError) as e:
        build()
    msg = str(e.value)
    assert f"Did you mean '{closest}'" in msg and "Choose one of:" in msg


def test_replace_rejects_unknown_field():
    with pytest.raises(ConfigError, match=r"Unknown config field 'train\.lrr'"):
        RunConfig().replace(**{"train.lrr": 1})


def test_from_dict_rejects_unknown_keys():
    d = RunConfig().to_dict()
    d["train"]["learning_rate"] = 1
    with pytest.raises(ConfigError, match="learning_rate"):
        RunConfig.from_dict(d)


def test_json_is_plain():
    d = json.loads(RunConfig().to_json())
    assert d["measure"]["batch_sizes"] == [1, 64]
