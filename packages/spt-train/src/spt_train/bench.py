"""``spt-train bench``: params, MACs (backbone and whole detector) and backbone FPS of registered
models at one input size, a table and a JSON document with the environment.

MACs are FlopCounterMode // 2 under the MATH SDPA backend (CPU attention counted). Backbone MACs
are the training-stage forward (train mode, no grad: DynamicSwin runs both MLP paths, SPT selects
with its gates), as the paper's tables state; the detector's are mmdetection's ``get_flops``
convention (:func:`spt_models.profiling.detector_macs`).
"""

from __future__ import annotations

import platform
from typing import Any

import torch
import torchvision
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from spt_models import count_params, create_detector, measure_fps
from spt_models.profiling import detector_macs

from .table import git_commit


def training_stage_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """MACs of one train-mode forward without gradients (the model's mode is restored)."""
    was = model.training
    model.train()
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x, generator=torch.Generator().manual_seed(0))
    finally:
        model.train(was)
    return counter.get_total_flops() // 2


def bench(
    models: list[str], head: str, height: int, width: int, repeats: int, device: str, warmup: int = 1
) -> dict[str, Any]:
    """Each model: params, MACs, then ``repeats`` timed backbone forwards after ``warmup`` untimed
    ones (the MAC counts' forwards come first, so the weights are already touched)."""
    dev = torch.device(device)
    rows = []
    for name in models:
        torch.manual_seed(0)
        detector = create_detector(name, head, num_classes=91).to(dev).eval()
        backbone = detector.backbone.body
        x = torch.randn(1, 3, height, width, device=dev)
        row = {
            "model": name,
            "head": head,
            "params_m": count_params(detector) / 1e6,
            "backbone_params_m": count_params(backbone) / 1e6,
            "backbone_macs_g": training_stage_macs(backbone, x) / 1e9,
            "macs_g": detector_macs(detector, height, width) / 1e9,
        }
        fps = measure_fps(backbone, x, warmup=warmup, repeats=repeats) if repeats else None
        rows.append({**row, "backbone_fps": None if fps is None else fps.fps})
    return {
        "environment": {
            "device": torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads(),
            "commit": git_commit(),
        },
        "size": f"{width}x{height}",
        "warmup": warmup,
        "repeats": repeats,
        "rows": rows,
    }


def format_bench(doc: dict[str, Any]) -> str:
    lines = [f"{doc['environment']['device']}, torch {doc['environment']['torch']}, input {doc['size']}"]
    lines.append(
        f"{'model':<16}{'params (M)':>12}{'backbone MACs (G)':>19}{'overall MACs (G)':>18}{'FPS':>8}"
    )
    for r in doc["rows"]:
        fps = "-" if r["backbone_fps"] is None else f"{r['backbone_fps']:.2f}"
        lines.append(
            f"{r['model']:<16}{r['params_m']:>12.2f}{r['backbone_macs_g']:>19.2f}{r['macs_g']:>18.2f}{fps:>8}"
        )
    return "\n".join(lines)
