"""``spt-train bench``: params, MACs (backbone and whole detector) and backbone FPS, a table and a
JSON document with the environment. Two forms (DESIGN §8, "Cost is measured at the selection a
model learned"):

**A trained checkpoint at its learned selection** (``--run RUN.yaml [--checkpoint CKPT]``,
:func:`bench_run`): the run's model with the checkpoint's weights, in eval mode (no Gumbel noise,
the run's threshold or an ``--set`` inference setting), on each of the split's first N images alone,
at the image's own frame (the dataset's resize; the detector pads it to 32 as in eval) and with the
image's own selection. Per image: the backbone's MACs, the whole detector's MACs, the per-stride
select ratios and the median of ``repeats`` timed backbone forwards; the row gives the mean, p10
and p90 of the MACs, FPS = images / the sum of the per-image medians, the mean select ratio per
stride and the model's cost reading (``mlp``). Works for every multi-scale backbone (dense Swin,
DynamicSwin, SPT, ...). Detectors only (a classifier's eval reports ``macs.backbone_g`` itself).

**Untrained architectures** (``--models``, :func:`bench`): the registered model at one input size,
random weights (costs do not depend on weights except through a selection). Backbone MACs are the
training-stage forward (train mode, no grad: DynamicSwin runs both MLP paths, as the paper's
tables state). A selecting model (SPT) is benchmarked at given per-stride select ratios
(``ratios``, e.g. those its trained T run measured: :func:`ratios_from_metrics`): every SPA block
keeps the ``ceil(ratio * n)`` top-scored of the image's n real tokens (deterministic top-k of its
gate scores, ``keep_ratio={stride: ratio}`` of :class:`spt_models.spt.SPTBackbone`). The cost
depends on that count only, not on which tokens: the packed layout pours the selected tokens into
``ceil(T / L)`` containers whatever their windows, and with ``mlp="selected"`` the MLP runs on the
T selected tokens. Without ratios an SPT row is marked ``"selection": "untrained gates"`` (random
gates, ratio ~1): such a number must not reach a table.

The detector's MACs are mmdetection's ``get_flops`` convention (score threshold 0:
:func:`spt_models.profiling.detector_macs`). Every MAC count is FlopCounterMode // 2 under the MATH
SDPA backend (:func:`spt_models.count_macs`: CPU attention counted).

JSON: ``{"environment": {device, torch, torchvision, threads, commit}, "size": WxH (the input, or
each frame's size with its count), "warmup", "repeats", "rows": [row]}``, one row per model (one
for ``--run``) with ``model``, ``head``, ``params_m``, ``backbone_params_m``, ``backbone_macs_g``,
``macs_g``, ``backbone_fps``, ``backbone_macs_forward`` (``train`` or ``eval``), ``selection``
(``none``, ``learned``, ``keep ratio`` (a run's model with a ``keep_ratio``: ``spt_t_fixed``, or
``--set model.backbone.keep_ratio=...``), ``ratios`` or ``untrained gates``), ``select_ratio`` ({``stride16``: ...}
measured in the MAC count's forward, mean over images; None without selection), ``mlp`` (SPT's
cost reading, None for other models) and ``provenance`` (one sentence); ``--models`` rows with
ratios add ``ratios`` and ``ratios_source``; a ``--run`` row adds the p10 / p90 of both MAC counts,
``checkpoint``, ``run_config``, ``split``, ``num_images``, ``of_images``, ``evaluated_at``,
``threshold`` and ``per_image``.
"""

from __future__ import annotations

import json
import math
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from spa_core import SPABlock
from spt_models import count_macs, count_params, create_detector, create_model, measure_fps
from spt_models.profiling import detector_image_macs, detector_macs

from .table import git_commit

READINGS = {"all": "MLP on every token (paper text)", "selected": "MLP on selected tokens only"}


def training_stage_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """MACs of one train-mode forward without gradients (the model's mode is restored)."""
    return _macs_and_aux(model, x, train=True)[0]


def _macs_and_aux(model: torch.nn.Module, x: torch.Tensor, *, train: bool, **kwargs: Any) -> tuple[int, Any]:
    """(MACs, the backbone's selection record) of one forward without gradients, in train mode
    (seeded Gumbel noise) or eval mode (:func:`spt_models.count_macs`); the model's mode is restored."""
    aux: list[Any] = []
    hook = model.register_forward_hook(lambda m, a, out: aux.append(out[1]))
    try:
        if not train:
            return count_macs(model, x, **kwargs), aux[-1]
        was = model.training
        model.train()
        try:
            with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                model(x, generator=torch.Generator().manual_seed(0), **kwargs)
        finally:
            model.train(was)
        return counter.get_total_flops() // 2, aux[-1]
    finally:
        hook.remove()


def stride_key(stride: int) -> str:
    return f"stride{stride}"


def select_ratios(aux: Any) -> dict[str, float] | None:
    """A selection record's per-stride ratio of its first image -> ``{"stride16": r, ...}``, or
    None (a dense model)."""
    ratio = getattr(aux, "ratio", None) if aux is not None else None
    if not ratio:
        return None
    return {stride_key(s): float(r[0]) for s, r in sorted(ratio.items())}


def spa_blocks(backbone: torch.nn.Module) -> list[SPABlock]:
    return [m for m in backbone.modules() if isinstance(m, SPABlock)]


def mlp_reading(backbone: torch.nn.Module) -> str | None:
    """The SPA blocks' ``mlp`` option ("all" or "selected"), None for a model without SPA blocks."""
    blocks = spa_blocks(backbone)
    return blocks[0].mlp_mode if blocks else None


def gate_strides(name: str, backbone: dict[str, Any] | None = None) -> tuple[int, ...] | None:
    """The strides at which model ``name`` selects tokens with SPA gates (SPT built with
    ``selection="gate"``), None for any other model; built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = create_model(name, **(backbone or {}))
    if not spa_blocks(model) or getattr(model, "selection", None) != "gate":
        return None
    return tuple(model.spa_strides)


def format_ratios(ratios: dict[int, float]) -> str:
    return ", ".join(f"stride {s} {r:.3f}" for s, r in sorted(ratios.items()))


def check_ratios(
    models: list[str],
    ratios: dict[int, float] | None,
    mlp: str | None,
    flag: str,
    backbone: dict[str, Any] | None = None,
) -> None:
    """ValueError unless every model selects with SPA gates when ``ratios`` or ``mlp`` is given, at
    exactly the strides of ``ratios``. ``flag``: how the ratios were given (``--ratios``, or
    ``--ratios-from PATH``), for the message; ``backbone``: the models' backbone options."""
    if ratios is None and mlp is None:
        return
    option = flag if ratios is not None else "--mlp"
    for name in models:
        strides = gate_strides(name, backbone)
        if strides is None:
            raise ValueError(
                f"{option} applies to models that select tokens with SPA gates (SPT); {name} does not: "
                f"bench it in a call without {option.split()[0]}"
            )
        if ratios is None:
            continue
        unknown = sorted(set(ratios) - set(strides))
        missing = sorted(set(strides) - set(ratios))
        where = f"{name} selects at strides {', '.join(map(str, strides))}"
        if unknown:
            raise ValueError(f"{flag}: unknown stride {unknown[0]}: {where}")
        if missing:
            raise ValueError(f"{flag}: no ratio for stride {missing[0]}: {where}")


def ratios_from_metrics(path: Path) -> tuple[dict[int, float], str, str | None]:
    """A run's eval metrics JSON -> (``{stride: selection.stride<s>.select_ratio}``, where they come
    from (one phrase naming the run, its metrics file, checkpoint and any ``evaluated_at``
    setting), the run's ``mlp`` reading or None when its config does not say)."""
    metrics = json.loads(Path(path).read_text())
    selection = metrics.get("selection") if isinstance(metrics, dict) else None
    ratios: dict[int, float] = {}
    for key, value in (selection or {}).items():
        if not key.startswith("stride") or not key[6:].isdigit() or not isinstance(value, dict):
            continue
        ratio = value.get("select_ratio")
        if ratio is None or not math.isfinite(ratio):
            raise ValueError(
                f"--ratios-from {path}: selection.{key}.select_ratio is {ratio} (no image measured)"
            )
        ratios[int(key[6:])] = float(ratio)
    if not ratios:
        raise ValueError(
            f"--ratios-from {path}: no selection.stride<S>.select_ratio in it (the eval metrics of a run "
            "whose model selects tokens?)"
        )
    config = metrics.get("config", {})
    run = config.get("out_dir") or str(Path(path).parent)
    where = [str(path)]
    if metrics.get("checkpoint"):
        where.append(f"checkpoint {metrics['checkpoint']}")
    settings = metrics.get("evaluated_at") or {}
    where += [f"evaluated at {k}={v}" for k, v in sorted(settings.items())]
    mlp = config.get("model", {}).get("backbone", {}).get("mlp")
    if mlp is None and config.get("model", {}).get("name"):  # the run's model at its default reading
        mlp = mlp_reading(_meta_model(config["model"]["name"], config["model"].get("backbone", {})))
    return ratios, f"measured by run {run} ({'; '.join(where)})", mlp


def _meta_model(name: str, backbone: dict[str, Any]) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **backbone)


def environment(dev: torch.device) -> dict[str, Any]:
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "commit": git_commit(),
    }


def bench(
    models: list[str],
    head: str,
    height: int,
    width: int,
    repeats: int,
    device: str,
    warmup: int = 1,
    *,
    ratios: dict[int, float] | None = None,
    ratios_source: str = "given by --ratios",
    mlp: str | None = None,
    backbone: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Untrained architectures (module docstring): each model's params, MACs, then ``repeats``
    timed backbone forwards after ``warmup`` untimed ones (the MAC counts' forwards come first, so
    the weights are already touched).

    ratios: ``{stride: ratio}`` every SPA block keeps (SPT models only; see :func:`check_ratios`);
    ratios_source: where they come from, written in the rows; mlp: SPT's cost reading ("all" or
    "selected"; default the model's); backbone: more backbone options (small test models)."""
    dev = torch.device(device)
    rows = []
    for name in models:
        torch.manual_seed(0)
        options = dict(backbone or {})
        if ratios is not None:
            options["keep_ratio"] = dict(ratios)
        if mlp is not None:
            options["mlp"] = mlp
        detector = create_detector(name, head, num_classes=91, backbone_kwargs=options).to(dev).eval()
        body = detector.backbone.body
        x = torch.randn(1, 3, height, width, device=dev)
        macs, aux = _macs_and_aux(body, x, train=True)
        row: dict[str, Any] = {
            "model": name,
            "head": head,
            "params_m": count_params(detector) / 1e6,
            "backbone_params_m": count_params(body) / 1e6,
            "backbone_macs_g": macs / 1e9,
            "backbone_macs_forward": "train",
            "macs_g": detector_macs(detector, height, width) / 1e9,
        }
        fps = measure_fps(body, x, warmup=warmup, repeats=repeats) if repeats else None
        row["backbone_fps"] = None if fps is None else fps.fps
        reading = mlp_reading(body)
        measured = select_ratios(aux)
        row.update(select_ratio=measured if reading is not None else None, mlp=reading)
        size = f"{width}x{height}"
        if reading is None:
            row.update(selection="none", provenance=f"untrained architecture at {size} (no gate selection)")
        elif ratios is not None:
            stated = {stride_key(s): r for s, r in sorted(ratios.items())}
            row.update(
                selection="ratios",
                ratios=stated,
                ratios_source=ratios_source,
                provenance=f"benchmarked at the ratios {format_ratios(ratios)} {ratios_source}; "
                f"untrained architecture at {size}, {READINGS[reading]}",
            )
        else:
            row.update(
                selection="untrained gates",
                provenance=f"untrained gates (random init): not a learned selection, do not report; "
                f"untrained architecture at {size}, {READINGS[reading]}",
            )
        rows.append(row)
    return {
        "environment": environment(dev),
        "size": f"{width}x{height}",
        "warmup": warmup,
        "repeats": repeats,
        "rows": rows,
    }


class _BackboneCall:
    """Pre-forward hook on a detector's backbone body: ``x`` and the keyword arguments of its
    last call (``valid``, ``generator``, an oracle's ``keep``), exactly as the detector fed it."""

    def __init__(self, body: torch.nn.Module) -> None:
        self.x: torch.Tensor | None = None
        self.kwargs: dict[str, Any] = {}
        self.handle = body.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.x, self.kwargs = args[0], {k: v for k, v in kwargs.items() if k != "generator"}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@torch.no_grad()
def bench_run(
    config: Any,
    checkpoint: str | Path,
    *,
    run_config: str | Path | None = None,
    split: str = "val",
    images: int = 16,
    repeats: int = 5,
    warmup: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """A trained checkpoint at its learned selection (module docstring) on the first ``images``
    images of ``split`` (skipped images are not counted). ``config``: the run's
    :class:`~spt_train.config.RunConfig` (its inference settings may differ from the checkpoint's:
    :func:`spt_train.predict.load_model`); ``run_config``: its file, for the provenance."""
    from .checkpoint import read_checkpoint
    from .engine import make_dataset, to_device
    from .predict import load_model, model_changes

    if config.model.head == "classifier":
        raise ValueError(
            "bench --run: a classifier run (model.head: classifier); its eval reports the backbone's "
            "MACs per image (macs.backbone_g)"
        )
    if images < 1:
        raise ValueError(f"bench --run: images must be >= 1, got {images}")
    dev = torch.device(device)
    dataset = make_dataset(config, split)
    model = load_model(config, checkpoint, dataset.num_classes, dev)
    body = model.backbone.body
    call = _BackboneCall(body)
    per_image: list[dict[str, Any]] = []
    try:
        for index in range(len(dataset)):
            if len(per_image) == images:
                break
            item = dataset[index]
            if item is None:  # a skipped image (on_error: skip)
                continue
            image, target = item
            image = image.to(dev)
            overall = detector_image_macs(model, image, to_device(target, dev))  # also feeds `call`
            x, kwargs = call.x, call.kwargs
            macs, aux = _macs_and_aux(body, x, train=False, **kwargs)
            seconds = (
                measure_fps(body, x, warmup=warmup, repeats=repeats, **kwargs).median_s if repeats else None
            )
            record = dataset.records[index]
            per_image.append(
                {
                    "index": index,
                    "image_id": record.image_id,
                    "frame": f"{image.shape[-1]}x{image.shape[-2]}",
                    "input": f"{x.shape[-1]}x{x.shape[-2]}",
                    "backbone_macs_g": macs / 1e9,
                    "macs_g": overall / 1e9,
                    "seconds": seconds,
                    "select_ratio": select_ratios(aux),
                }
            )
    finally:
        call.handle.remove()
    if not per_image:
        raise ValueError(f"bench --run: no {split} image could be read ({dataset.path})")
    n = len(per_image)
    frames = Counter(p["frame"] for p in per_image)
    backbone_g = [p["backbone_macs_g"] for p in per_image]
    overall_g = [p["macs_g"] for p in per_image]
    reading = mlp_reading(body)
    ratios = [p["select_ratio"] for p in per_image if p["select_ratio"] is not None]
    mean_ratio = {k: float(np.mean([r[k] for r in ratios])) for k in ratios[0]} if ratios else None
    changes = model_changes(read_checkpoint(checkpoint, mmap=True), config)  # its config only
    selecting = mean_ratio is not None
    fixed = any(b.keep_ratio is not None for b in spa_blocks(body))  # a keep_ratio: top-k, no threshold
    measured = f"{n} {split} images"
    if fixed:
        provenance = f"measured at a fixed keep ratio (the learned gates' top-scored tokens) on {measured}"
    elif selecting:
        provenance = f"measured at the learned selection on {measured}"
    else:
        provenance = f"measured on {measured} (no selection)"
    provenance += f" (checkpoint {checkpoint}, config {run_config or config.out_dir})"
    if reading is not None:
        provenance += f", {READINGS[reading]}"
    if changes:
        provenance += ", evaluated at " + ", ".join(f"{k}={now}" for k, (_, now) in sorted(changes.items()))
    threshold = next((float(b.threshold) for b in spa_blocks(body) if b.keep_ratio is None), None)
    row = {
        "model": config.model.name,
        "head": config.model.head,
        "params_m": count_params(model) / 1e6,
        "backbone_params_m": count_params(body) / 1e6,
        "backbone_macs_g": float(np.mean(backbone_g)),
        "backbone_macs_g_p10": _percentile(backbone_g, 10),
        "backbone_macs_g_p90": _percentile(backbone_g, 90),
        "backbone_macs_forward": "eval",
        "macs_g": float(np.mean(overall_g)),
        "macs_g_p10": _percentile(overall_g, 10),
        "macs_g_p90": _percentile(overall_g, 90),
        "backbone_fps": n / sum(p["seconds"] for p in per_image) if repeats else None,
        "selection": "keep ratio" if fixed else "learned" if selecting else "none",
        "select_ratio": mean_ratio,
        "mlp": reading,
        "threshold": threshold,
        "provenance": provenance,
        "checkpoint": str(checkpoint),
        "run_config": str(run_config) if run_config is not None else None,
        "split": split,
        "num_images": n,
        "of_images": len(dataset),
        "evaluated_at": {key: now for key, (_, now) in changes.items()},
        "per_image": per_image,
    }
    size = (
        ", ".join(f"{f} ({c} images)" for f, c in frames.most_common())
        if len(frames) > 1
        else next(iter(frames))
    )
    return {
        "environment": environment(dev),
        "size": size,
        "warmup": warmup,
        "repeats": repeats,
        "rows": [row],
    }


def format_bench(doc: dict[str, Any]) -> str:
    lines = [f"{doc['environment']['device']}, torch {doc['environment']['torch']}, input {doc['size']}"]
    lines.append(
        f"{'model':<16}{'params (M)':>12}{'backbone MACs (G)':>19}{'overall MACs (G)':>18}{'FPS':>8}"
        "  select ratio"
    )
    for r in doc["rows"]:
        fps = "-" if r["backbone_fps"] is None else f"{r['backbone_fps']:.2f}"
        ratio = r.get("select_ratio")
        ratio_text = " / ".join(f"{k[6:]}: {v:.3f}" for k, v in ratio.items()) if ratio else "-"
        lines.append(
            f"{r['model']:<16}{r['params_m']:>12.2f}{r['backbone_macs_g']:>19.2f}{r['macs_g']:>18.2f}{fps:>8}"
            f"  {ratio_text}"
        )
        if "backbone_macs_g_p10" in r:
            lines.append(
                f"  per image (p10, p90): backbone {r['backbone_macs_g_p10']:.2f}, {r['backbone_macs_g_p90']:.2f} G; "
                f"overall {r['macs_g_p10']:.2f}, {r['macs_g_p90']:.2f} G"
            )
        if r.get("provenance"):
            lines.append(f"  {r['provenance']}")
    return "\n".join(lines)
