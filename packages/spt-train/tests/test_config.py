"""Run configs are checked before anything runs: exact messages naming the file and the key."""

import pytest
import yaml

from spt_train.cli import main
from spt_train.config import ConfigError, load_config


def edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_valid_config_fills_defaults(write_config):
    config = load_config(write_config())
    assert config.train.epochs == 2 and config.train.schedule == "step" and config.model.select_weight == 0.01
    assert config.data.train.labels.endswith("train_labels.parquet")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["train"].update(lrr=1.0), "train.lrr: unknown key (did you mean 'lr'?)"),
        (lambda d: d.update(trian={}), "trian: unknown key (did you mean 'train'?)"),
        (lambda d: d["train"].update(lr="fast"), "train.lr: expected a number, got 'fast'"),
        (lambda d: d["train"].update(epochs=1.5), "train.epochs: expected an integer, got 1.5"),
        (lambda d: d["train"].update(epochs=0), "train.epochs: should be > 0, got 0"),
        (
            lambda d: d["model"].update(head="yolo"),
            "model.head: expected one of ['faster_rcnn', 'mask_rcnn', 'cascade_mask_rcnn', 'classifier'], got 'yolo'",
        ),
        (
            lambda d: d["data"]["train"].update(records="nope.parquet"),
            "data.train.records: nope.parquet does not exist",
        ),
        (lambda d: d["data"].pop("train"), "data.train: missing (required)"),
        (lambda d: d["data"].update(flip=2), "data.flip: should be in [0, 1], got 2"),
    ],
)
def test_bad_config_is_one_clear_error(write_config, change, message):
    path = edit(write_config(), change)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_cli_reports_a_bad_config_with_exit_2(write_config, capsys):
    path = edit(write_config(), lambda d: d["train"].update(lrr=1.0))
    assert main(["fit", str(path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"spt-train fit: error: {path}: train.lrr: unknown key (did you mean 'lr'?)"
    )


def test_set_overrides_and_bad_set(write_config, capsys):
    config = load_config(write_config(), {"train.epochs": 5, "model.backbone.embed_dim": 8})
    assert config.train.epochs == 5 and config.model.backbone["embed_dim"] == 8
    with pytest.raises(SystemExit):
        main(["fit", str(write_config()), "--set", "train.epochs"])
    assert "--set takes KEY=VALUE, e.g. train.epochs=3, got 'train.epochs'" in capsys.readouterr().err
