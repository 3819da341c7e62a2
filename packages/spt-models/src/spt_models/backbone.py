"""The one backbone contract of every multi-scale model (Swin, SPT, DynamicSwin, SparseViT, DAT).

Legend: B images, H, W input pixels, C channels of stage 1 (stage i has C * 2**(i-1)).

    forward(x [B, 3, H, W], valid=None, generator=None) -> (maps, aux)

maps: ordered dict ``stage1..stage4`` of NHWC maps ``[B, H/4, W/4, C] .. [B, H/32, W/32, 8C]``,
described by ``model.feature_info`` (timm's name / num_chs / reduction). aux: the model's selection
record (a :class:`SelectionRecord`), or None for dense models (Swin, DAT). valid: the real extent of
each image of a padded batch, ``[B, 2]`` integer (height, width) in pixels or a ``[B, H, W]`` bool
pixel mask; each model uses it wherever its method can (never select padding, ratios over real
tokens). generator: the random generator of training-time selection noise.

``forward_intermediates`` is timm's, so FPN code needs no permutes. ``vit_s16`` is the single-scale
exception: ``forward(x, keep) -> (cls, tokens)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")


class SelectionRecord(Protocol):
    """What a token-sparse backbone returns beside its maps."""

    @property
    def ratio(self) -> dict[int, Tensor]:
        """{stride: [B]} per image, the fraction of its real tokens the stage computed on."""
        ...

    def losses(self, labels: dict[int, Tensor] | None) -> dict[str, Tensor]:
        """The model's auxiliary losses, named as in a torchvision loss dict (``loss_select``,
        ``loss_ratio``). labels: ``{stride: [B, h, w] bool}`` selection labels on the batch's token
        grids, or None (then only the losses that need no labels)."""
        ...


def stages(features: nn.Sequential) -> Iterator[tuple[int, nn.Module, nn.Module]]:
    """The four stages of a Swin-layout ``features`` (patch embed, stage, merge, ..., stage) ->
    ``(i, downsample, stage)``: ``downsample`` is ``features[0]`` (patch embedding) for stage 0 and
    the patch merging before it otherwise; ``stage`` is ``features[2 * i + 1]``."""
    for i in range(4):
        yield i, features[2 * i], features[2 * i + 1]


def stage_maps(features: nn.Sequential, x: Tensor) -> OrderedDict[str, Tensor]:
    """Dense forward of a Swin-layout ``features``: x [B, 3, H, W] -> the four NHWC stage outputs."""
    maps: OrderedDict[str, Tensor] = OrderedDict()
    for i, downsample, stage in stages(features):
        x = maps[STAGE_NAMES[i]] = stage(downsample(x))  # [B, h, w, c]
    return maps


class Backbone(nn.Module):
    """Base class of the multi-scale backbones: the contract above, plus timm's
    :meth:`forward_intermediates`. Subclasses set ``feature_info`` and implement ``forward``."""

    feature_info: list[dict]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        *,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Stage maps as a list, as timm's ``forward_intermediates(..., intermediates_only=True)``.

        indices: None (all four stages), an int n (the last n stages) or stage indices 0..3.
        output_fmt: ``"NCHW"`` ([B, c, h, w]) or ``"NHWC"`` ([B, h, w, c]).
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt should be 'NCHW' or 'NHWC', got {output_fmt!r}")
        if indices is None:
            take = list(range(4))
        elif isinstance(indices, int):
            if not 1 <= indices <= 4:
                raise ValueError(f"indices as an int takes the last n stages, 1 <= n <= 4, got {indices}")
            take = list(range(4 - indices, 4))
        else:
            take = list(indices)
            if any(not 0 <= i < 4 for i in take):
                raise ValueError(f"stage indices should be in [0, 4), got {take}")
        maps, _ = self(x, valid=valid, generator=generator)
        out = [maps[STAGE_NAMES[i]] for i in take]
        return [m.permute(0, 3, 1, 2) for m in out] if output_fmt == "NCHW" else out
