"""Cost of a backbone: multiply-accumulates (MACs), parameters, throughput; ``spt-models profile``
(:func:`profile`, :func:`format_profile`).

MACs are ``FlopCounterMode`` FLOPs // 2 (the paper's "FLOPs" are MACs) of one forward in eval
mode under ``sdpa_kernel(SDPBackend.MATH)``: torch counts 0 for CPU's fused SDPA kernels, while
the MATH backend decomposes attention into counted matmuls. Element-wise work (LayerNorm,
softmax, GELU, gathers) is not counted, as in the paper and in torchvision's published figures.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, inputs: Tensor, **forward_kwargs) -> int:
    """MACs of ``model(inputs, **forward_kwargs)`` in eval mode, no grad (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(inputs, **forward_kwargs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Throughput:
    """median_s: median seconds per forward; fps: images per second at that median; times_s: every repeat."""

    median_s: float
    fps: float
    times_s: list[float]


def measure_fps(
    model: nn.Module, inputs: Tensor, warmup: int = 2, repeats: int = 10, **forward_kwargs
) -> Throughput:
    """Eval-mode, no-grad forwards: ``warmup`` untimed, then the median of ``repeats`` timed ones
    (synchronizing the GPU around each when ``inputs`` is on CUDA). The model's mode is restored."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    cuda = inputs.device.type == "cuda"
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                if cuda:
                    torch.cuda.synchronize(inputs.device)
                start = time.perf_counter()
                model(inputs, **forward_kwargs)
                if cuda:
                    torch.cuda.synchronize(inputs.device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    median = statistics.median(times)
    return Throughput(median_s=median, fps=inputs.shape[0] / median, times_s=times)


def detector_macs(model: nn.Module, height: int, width: int) -> int:
    """MACs of a detector's forward on one ``height x width`` image, mmdetection's ``get_flops``
    convention for the paper's "overall" column: the RPN keeps its test-time 1000 proposals, the box
    head runs on all of them and the mask head on ``detections_per_img`` (100) boxes (score
    threshold 0, so the count does not depend on the random weights). The model is restored."""
    image = torch.rand(3, height, width, device=next(model.parameters()).device)
    return detector_image_macs(model, image)


def detector_image_macs(model: nn.Module, image: Tensor, target: dict | None = None) -> int:
    """:func:`detector_macs` of one given image [3, h, w] in [0, 1] (a token-selecting backbone
    selects on it as in eval); ``target``: its target dict, for a backbone that reads its selection
    from the labels (an oracle SPT). The model is restored."""
    heads = model.roi_heads
    saved = heads.score_thresh
    heads.score_thresh = 0.0
    try:
        return count_macs(model, [image], **({} if target is None else {"targets": [target]}))
    finally:
        heads.score_thresh = saved


MACS_COUNTING = "FlopCounterMode // 2, eval forward, SDPBackend.MATH"


def profile(
    models: Sequence[str],
    *,
    height: int,
    width: int,
    ratios: Sequence[float] = (1.0, 0.25),
    batch: int = 1,
    device: torch.device,
    warmup: int = 2,
    repeats: int = 10,
    seed: int = 0,
    head: str | None = None,
) -> dict[str, Any]:
    """``spt-models profile``'s JSON document: the environment, the input, and one row per
    (model, ratio) with params, MACs, FPS (``repeats`` 0: None) and output shapes of one forward on
    a ``batch x 3 x height x width`` input. Models are built with random init (costs do not depend
    on weights), seeded by ``seed``; an SPT model runs once per ratio of ``ratios`` with random
    ``keep`` masks of exactly that select ratio instead of its gates. ``head``: profile the whole
    detector (91 classes) on each backbone instead (:func:`profile_detectors`)."""
    from .environment import environment

    if head is not None:
        rows = profile_detectors(models, head, height=height, width=width, device=device, seed=seed)
    else:
        rows = profile_backbones(
            models,
            height=height,
            width=width,
            ratios=ratios,
            batch=batch,
            device=device,
            warmup=warmup,
            repeats=repeats,
            seed=seed,
        )
    return {
        "environment": environment(device),
        "input": {"batch": batch, "height": height, "width": width, "seed": seed},
        "timing": {"warmup": warmup, "repeats": repeats},
        "macs_counting": MACS_COUNTING,
        "rows": rows,
    }


def profile_backbones(
    models: Sequence[str],
    *,
    height: int,
    width: int,
    ratios: Sequence[float],
    batch: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The backbone rows of :func:`profile`."""
    from .masks import random_stage_keep
    from .registry import create_model
    from .spt import SPTBackbone

    rows = []
    for name in models:
        torch.manual_seed(seed)
        model = create_model(name).to(device).eval()
        is_spt = isinstance(model, SPTBackbone)
        if is_spt:
            model.selection = "given"  # fixed select ratios through keep masks instead of the gates
        params = count_params(model)
        x = torch.randn(batch, 3, height, width, device=device)
        for ratio in ratios if is_spt else [None]:
            kwargs = {}
            if is_spt:
                gen = torch.Generator().manual_seed(seed)
                kwargs["keep"] = random_stage_keep(
                    batch, height, width, ratio, strides=model.spa_strides, generator=gen, device=device
                )
            log.info("profiling %s (ratio %s) at %dx%d", name, ratio, width, height)
            macs = count_macs(model, x, **kwargs)
            with torch.no_grad():
                out = model(x, **kwargs)
            shapes = (
                {"cls": list(out[0].shape), "tokens": list(out[1].shape)}  # vit_s16: (cls, tokens)
                if not model.multiscale
                else {k: list(v.shape) for k, v in out[0].items()}  # (maps, aux)
            )
            timing = measure_fps(model, x, warmup, repeats, **kwargs) if repeats else None
            rows.append(
                {
                    "model": name,
                    "ratio": ratio,
                    "params": params,
                    "macs": macs,
                    "fps": timing.fps if timing else None,
                    "median_s": timing.median_s if timing else None,
                    "shapes": shapes,
                }
            )
    return rows


def profile_detectors(
    models: Sequence[str], head: str, *, height: int, width: int, device: torch.device, seed: int
) -> list[dict[str, Any]]:
    """Params and overall MACs (:func:`detector_macs`) of ``head`` (91 classes) on each backbone;
    SPT models select with their (random-init) gates."""
    from .detection import create_detector

    rows = []
    for name in models:
        torch.manual_seed(seed)
        model = create_detector(name, head, num_classes=91).to(device).eval()
        log.info("profiling %s + %s at %dx%d", head, name, width, height)
        rows.append(
            {
                "model": f"{head}+{name}",
                "ratio": None,
                "params": count_params(model),
                "backbone_params": count_params(model.backbone.body),
                "macs": detector_macs(model, height, width),
                "fps": None,
                "median_s": None,
                "shapes": {},
            }
        )
    return rows


def format_profile(document: dict[str, Any]) -> str:
    """:func:`profile`'s document as text: the environment line, then one line per row."""
    env, inp = document["environment"], document["input"]
    lines = [
        f"{env['device']}, torch {env['torch']}, {env['threads']} threads, "
        f"input {inp['batch']}x3x{inp['height']}x{inp['width']}",
        f"{'model':<26} {'ratio':>6} {'params (M)':>11} {'MACs (G)':>10} {'FPS':>8}",
    ]
    for r in document["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        fps = "-" if r["fps"] is None else f"{r['fps']:.2f}"
        lines.append(
            f"{r['model']:<26} {ratio:>6} {r['params'] / 1e6:>11.2f} {r['macs'] / 1e9:>10.2f} {fps:>8}"
        )
    return "\n".join(lines)
