"""Cost of a backbone: multiply-accumulates (MACs), parameters, throughput.

MACs are ``FlopCounterMode`` FLOPs // 2 (the paper's "FLOPs" are MACs) of one forward in eval
mode under ``sdpa_kernel(SDPBackend.MATH)``: torch counts 0 for CPU's fused SDPA kernels, while
the MATH backend decomposes attention into counted matmuls. Element-wise work (LayerNorm,
softmax, GELU, gathers) is not counted, as in the paper and in torchvision's published figures.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


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
        raise ValueError(f"repeats should be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
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
