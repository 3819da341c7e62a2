"""Run configuration: YAML checked against a schema (dataclasses) before anything runs.

An unknown or misspelt key (in the nested ``model.backbone`` and ``model.detector`` too), a wrong
type, a value out of range or a missing file stops with a :class:`ConfigError` naming the file and
the key (``run.yaml: train.lr: expected a number, got 'fast'``, ``run.yaml: train.clip_grad: must be
> 0 or null, got -1``). The resolved config (defaults filled in) is saved beside the outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from spt_models.cliargs import DEVICE_HELP, is_device_name
from spt_models.detection import HEADS

__all__ = [
    "MODEL_HEADS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "RunError",
    "SplitConfig",
    "TrainConfig",
    "check_model",
    "compose_config",
    "from_mapping",
    "load_config",
]

MODEL_HEADS = (*HEADS, "classifier")  # model.head: a detector head of spt_models.detection, or a classifier


class ConfigError(ValueError):
    """A config that cannot run; the message names the file and the key."""


class RunError(RuntimeError):
    """A run that cannot start, resume or be evaluated as asked (a damaged or foreign checkpoint, a
    busy out_dir); the message names the file. Here, not in checkpoint.py, so the CLI catches it
    without importing torch."""


@dataclass
class ModelConfig:
    name: str = "spt_t"  # a registered backbone (spt_models.list_models())
    head: Literal[MODEL_HEADS] = "faster_rcnn"
    backbone: dict[str, Any] = field(default_factory=dict)  # overrides of the backbone's config fields
    detector: dict[str, Any] = field(default_factory=dict)  # torchvision detector options (rpn_*, box_*)
    select_weight: float = 0.01  # alpha of eq. 10
    weights: str | None = None  # a torchvision Swin state dict to start from (path), or none
    gt_select: bool = False  # classifier: the selection labels are the backbone's keep (Fig. 4)


@dataclass
class SplitConfig:
    records: str  # records Parquet (spt-data convert)
    labels: str | None = None  # selection-label Parquet (spt-data labels); none: no selection loss
    images: str | None = None  # folder the records' image paths are relative to (default: as stored)


@dataclass
class DataConfig:
    train: SplitConfig
    val: SplitConfig | None = None
    short: int | None = 800  # resize_policy: short side (none: keep the size)
    long: int | None = 1333  # resize_policy: long side cap
    pad_to: int = 32  # frame padding multiple, as the labels were made
    flip: float = 0.5  # horizontal flip probability in training
    masks: bool = False  # load instance masks (mask heads)
    on_error: Literal["raise", "skip"] = "raise"  # unreadable image: stop, or skip it (counted, logged)


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 2  # images per process and step
    lr: float = 1e-4  # AdamW, the Swin detection recipe
    gate_lr_scale: float = 1.0  # lr multiplier of the selection gates (1: one lr for all)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500  # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.001
    schedule: Literal["step", "cosine"] = "step"
    milestones: tuple[float, ...] = (
        0.75,
        0.9167,
    )  # step schedule: fractions of all steps (epochs 27, 33 of 36)
    gamma: float = 0.1  # step schedule: lr factor at each milestone
    clip_grad: float | None = None  # max gradient norm, none: no clipping
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # auto: bf16 where supported, else fp32
    seed: int = 0
    num_workers: int = 0
    checkpoint_steps: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    keep_epochs: int | None = None  # keep the newest N epoch_N.pt (none: every one)
    max_steps: int | None = None  # stop after this many steps in all (demo schedules by steps)
    log_steps: int = 10


@dataclass
class RunConfig:
    data: DataConfig
    out_dir: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # auto: CUDA if present; cpu, cuda, cuda:N, mps


POSITIVE = {
    "epochs",
    "batch_size",
    "lr",
    "gate_lr_scale",
    "pad_to",
    "log_steps",
    "short",
    "long",
    "max_steps",
    "clip_grad",
    "keep_epochs",
}
NON_NEGATIVE = {"warmup_steps", "num_workers", "checkpoint_steps", "weight_decay", "select_weight", "seed"}
UNIT = {"flip", "warmup_factor", "gamma"}
PATHS = {"records", "labels", "images", "weights"}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and check a YAML run config; ``overrides`` are dotted keys (``{"train.epochs": 1}``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, got {type(data).__name__}")
    return checked_config(apply_overrides(data, overrides or {}, str(path)), path)


def compose_config(base: Path | None, overrides: dict[str, Any], name: str) -> RunConfig:
    """``spt-train config``: the ``base`` file's mapping (or ``{}``) with dotted ``overrides``
    applied, checked as :func:`load_config` checks a file; errors name ``name`` (the file to be
    written) and the key."""
    data = yaml.safe_load(base.read_text()) if base is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{base}: a config is a mapping of sections, got {type(data).__name__}")
    return checked_config(apply_overrides(data, overrides, name), Path(name))


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], file: str) -> dict[str, Any]:
    """Set each dotted key of ``overrides`` (``{"train.epochs": 1}``) in the nested ``data`` (in place)."""
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{file}: {key}: {p} is not a mapping")
        node[last] = value
    return data


def checked_config(data: dict[str, Any], file: Path) -> RunConfig:
    """The :class:`RunConfig` of a mapping, its keys, types, ranges, paths and model checked."""
    config = from_mapping(RunConfig, data, str(file), "")
    check_paths(config, file)
    check_model(config, file)
    return config


def from_mapping(cls: type, data: Any, file: str, where: str) -> Any:
    """``cls(**data)`` with every key and type checked, recursively; errors name ``file: where.key``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {where or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise unknown_key(file, where, str(key), fields)
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{file}: {key}: missing (required)")
            continue
        kwargs[name] = convert(hints[name], data[name], file, key)
        check_range(name, data[name], file, key, nullable=type(None) in typing.get_args(hints[name]))
    return cls(**kwargs)


def unknown_key(file: str | Path, where: str, key: str, known: Iterable[str]) -> ConfigError:
    """``file: where.key: unknown key (did you mean 'x'?)``, or the known keys when none is close."""
    known = list(known)
    near = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"
    return ConfigError(f"{file}: {where}{key}: unknown key{hint}")


def convert(tp: Any, value: Any, file: str, key: str) -> Any:
    """Check ``value`` against the type hint ``tp``; -> the value (tuples for tuple hints)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, file, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{file}: {key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, file, f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{file}: {key}: expected a list, got {value!r}")
        item = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise ConfigError(f"{file}: {key}: expected 2 values, got {list(value)}")
        return tuple(convert(item, v, file, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{file}: {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{file}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp}")  # a bug in the schema, not in the user's file


def check_range(name: str, value: Any, file: str, key: str, nullable: bool = False) -> None:
    """The setting ``name`` (``value`` as written, its type already checked) within its range."""
    if value is None:
        return
    if name == "device" and not is_device_name(value):
        raise ConfigError(f"{file}: {key}: must be {DEVICE_HELP}, got {value!r}")
    if name == "milestones":
        if not all(0 < m <= 1 for m in value):
            raise ConfigError(f"{file}: {key}: must be fractions of all steps in (0, 1], got {list(value)}")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise ConfigError(f"{file}: {key}: must be strictly increasing, got {list(value)}")
    if name == "betas" and not all(0 <= b < 1 for b in value):
        raise ConfigError(f"{file}: {key}: must be in [0, 1), got {list(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    null = " or null" if nullable else ""
    if name in POSITIVE and not value > 0:
        raise ConfigError(f"{file}: {key}: must be > 0{null}, got {value}")
    if name in NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{file}: {key}: must be >= 0{null}, got {value}")
    if name in UNIT and not 0 <= value <= 1:
        raise ConfigError(f"{file}: {key}: must be in [0, 1]{null}, got {value}")


def check_paths(config: RunConfig, file: Path) -> None:
    """Every input path exists (relative paths are taken from the working directory)."""
    splits = [("data.train", config.data.train), ("data.val", config.data.val)]
    for where, split in splits:
        if split is None:
            continue
        for name in ("records", "labels", "images"):
            value = getattr(split, name)
            if value is not None and not Path(value).exists():
                raise ConfigError(f"{file}: {where}.{name}: {value} does not exist")
    if config.model.weights is not None and not Path(config.model.weights).exists():
        raise ConfigError(f"{file}: model.weights: {config.model.weights} does not exist")


def check_model(config: RunConfig, file: Path) -> None:
    """The model, its backbone overrides, the detector options, the head and ``gt_select`` fit
    together. The backbone is built on the meta device (no memory, no weights), so a bad override
    stops here, the detector's option names are checked without building it, and a classifier learns
    whether it can take ground-truth selection: ``vit_s16``, or an SPT built with ``selection="given"``
    (which needs it)."""
    import torch

    from spt_models import create_model, list_models
    from spt_models.registry import UnknownOptionError

    m = config.model
    if m.name not in list_models():
        raise ConfigError(f"{file}: model.name: unknown model {m.name!r}; known: {', '.join(list_models())}")
    try:
        with torch.device("meta"):
            backbone = create_model(m.name, **m.backbone)
    except UnknownOptionError as e:
        raise unknown_key(file, "model.backbone.", e.option, e.known) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{file}: model.backbone: {e}") from None
    if m.head != "classifier":
        check_detector(m, file)
        if m.gt_select:
            raise ConfigError(
                f"{file}: model.gt_select: ground-truth selection is for head 'classifier', got head {m.head!r}"
            )
        if not backbone.multiscale:
            raise ConfigError(f"{file}: model.name: {m.name} is single-scale: head 'classifier' only")
        return
    if m.detector:
        raise ConfigError(
            f"{file}: model.detector: detector options do not apply to head 'classifier', got {sorted(m.detector)}"
        )
    given = backbone.multiscale and backbone.needs_keep
    if given and not m.gt_select:
        raise ConfigError(
            f"{file}: model.gt_select: {m.name} selects the label tokens (selection 'given'): set gt_select: true"
        )
    if m.gt_select and not (given or not backbone.multiscale):
        raise ConfigError(
            f"{file}: model.gt_select: ground-truth selection needs vit_s16 or an SPT with selection "
            f"'given' (e.g. spt_t_oracle), got {m.name!r}"
        )
    if m.gt_select:
        for where, split in (("data.train", config.data.train), ("data.val", config.data.val)):
            if split is not None and split.labels is None:
                raise ConfigError(
                    f"{file}: {where}.labels: gt_select needs selection labels (spt-data labels)"
                )


def check_detector(m: ModelConfig, file: Path) -> None:
    """``model.detector``'s option names are ones the head takes (``spt_models.detection.detector_options``):
    torchvision's ``**kwargs`` would swallow a misspelt one and build another model."""
    from spt_models.detection import check_detector_options
    from spt_models.registry import UnknownOptionError

    if "loss_weights" in m.detector:
        raise ConfigError(f"{file}: model.detector.loss_weights: set by model.select_weight")
    try:
        check_detector_options(m.head, m.detector)
    except UnknownOptionError as e:
        raise unknown_key(file, "model.detector.", e.option, e.known) from None
    except ValueError as e:
        raise ConfigError(f"{file}: model.detector: {e}") from None


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain data (tuples as lists), for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))
