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
        (lambda d: d["train"].update(epochs=0), "train.epochs: must be > 0, got 0"),
        (
            lambda d: d["model"].update(head="yolo"),
            "model.head: expected one of ['faster_rcnn', 'mask_rcnn', 'cascade_mask_rcnn', 'classifier'], got 'yolo'",
        ),
        (
            lambda d: d["data"]["train"].update(records="nope.parquet"),
            "data.train.records: nope.parquet does not exist",
        ),
        (lambda d: d["data"].pop("train"), "data.train: missing (required)"),
        (lambda d: d["data"].update(flip=2), "data.flip: must be in [0, 1], got 2"),
        (lambda d: d["train"].update(max_steps=0), "train.max_steps: must be > 0 or null, got 0"),
        (lambda d: d["train"].update(clip_grad=-1), "train.clip_grad: must be > 0 or null, got -1"),
        (lambda d: d["train"].update(clip_grad=0), "train.clip_grad: must be > 0 or null, got 0"),
        (
            lambda d: d["train"].update(milestones=[1.5, -2]),
            "train.milestones: must be fractions of all steps in (0, 1], got [1.5, -2]",
        ),
        (
            lambda d: d["train"].update(milestones=[0.9, 0.5]),
            "train.milestones: must be strictly increasing, got [0.9, 0.5]",
        ),
        (lambda d: d["train"].update(lr=float("inf")), "train.lr: expected a finite number, got inf"),
        (lambda d: d["train"].update(lr=float("nan")), "train.lr: expected a finite number, got nan"),
        (lambda d: d["train"].update(lr=-0.1), "train.lr: must be > 0, got -0.1"),
        (
            lambda d: d["train"].update(weight_decay=float("inf")),
            "train.weight_decay: expected a finite number, got inf",
        ),
        (lambda d: d["train"].update(gamma=float("nan")), "train.gamma: expected a finite number, got nan"),
        (
            lambda d: d["model"].update(select_weight=float("inf")),
            "model.select_weight: expected a finite number, got inf",
        ),
        (lambda d: d["train"].update(betas=[2, 0.999]), "train.betas: must be in [0, 1), got [2, 0.999]"),
        (lambda d: d["train"].update(betas=[0.9, 1]), "train.betas: must be in [0, 1), got [0.9, 1]"),
        (lambda d: d.update(device="tpu"), "device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        (lambda d: d.update(device="cuda:x"), "device: must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
        (
            lambda d: d["model"]["detector"].update(fpn_chanels=16),
            "model.detector.fpn_chanels: unknown key (did you mean 'fpn_channels'?)",
        ),
        (
            lambda d: d["model"]["detector"].update(anchor_size=[8, 16, 32, 64, 128]),
            "model.detector.anchor_size: unknown key (did you mean 'anchor_sizes'?)",
        ),
        (
            lambda d: d["model"]["detector"].update(box_batch_size_per_imag=8),
            "model.detector.box_batch_size_per_imag: unknown key (did you mean 'box_batch_size_per_image'?)",
        ),
        (
            lambda d: d["model"].update(head="cascade_mask_rcnn"),  # torchvision's name, not the cascade's
            "model.detector.box_batch_size_per_image: unknown key (did you mean 'batch_size_per_image'?)",
        ),
        (
            lambda d: d["model"]["detector"].update(min_size=800),
            "model.detector: ['min_size']: the detector does not resize; resize in the dataset "
            "(spt-data resize_policy)",
        ),
        (
            lambda d: d["model"]["detector"].update(loss_weights={"loss_select": 1.0}),
            "model.detector.loss_weights: set by model.select_weight",
        ),
        (
            lambda d: d["model"]["backbone"].update(embed_dm=8),
            "model.backbone.embed_dm: unknown key (did you mean 'embed_dim'?)",
        ),
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


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_every_device_name_is_accepted(write_config, device):
    assert load_config(write_config(), {"device": device}).device == device


def test_config_refuses_to_write_a_bad_device(write_config, tmp_path, capsys):
    out = tmp_path / "composed.yaml"
    assert main(["config", str(write_config()), "--set", "device=tpu", "--out", str(out)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"spt-train config: error: {out}: device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"
    )
    assert not out.exists()


def test_set_overrides_and_bad_set(write_config, capsys):
    config = load_config(write_config(), {"train.epochs": 5, "model.backbone.embed_dim": 8})
    assert config.train.epochs == 5 and config.model.backbone["embed_dim"] == 8
    with pytest.raises(SystemExit):
        main(["fit", str(write_config()), "--set", "train.epochs"])
    assert (
        "argument --set: must be KEY=VALUE, e.g. train.epochs=3, got 'train.epochs'"
        in capsys.readouterr().err
    )


def enums_naming(node, value):
    """Every ``enum`` list of a schema (nested mappings and lists) that holds ``value``."""
    if isinstance(node, dict):
        found = [node["enum"]] if value in (node.get("enum") or []) else []
        return found + [e for child in node.values() for e in enums_naming(child, value)]
    if isinstance(node, list):
        return [e for child in node for e in enums_naming(child, value)]
    return []


def test_the_heads_are_defined_once_the_schema_and_the_config_agree():
    """spt_models.detection.HEADS is the one list: the config's model.head takes it and
    "classifier", the CLIs' --head choices are it, and the workflow schema's head enums match."""
    import typing
    from pathlib import Path

    from spt_models.detection import HEADS
    from spt_train.cli import build_parser
    from spt_train.config import MODEL_HEADS, ModelConfig

    assert (
        typing.get_args(typing.get_type_hints(ModelConfig)["head"]) == MODEL_HEADS == (*HEADS, "classifier")
    )
    schema = Path(__file__).resolve().parents[3] / "workflows" / "schemas" / "config.schema.yaml"
    enums = enums_naming(yaml.safe_load(schema.read_text()), HEADS[0])
    assert enums and all(tuple(e) in (HEADS, MODEL_HEADS) for e in enums), enums
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    assert next(a.choices for a in bench._actions if a.dest == "head") == HEADS
