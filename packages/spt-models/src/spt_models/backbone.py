"""The one backbone contract of every multi-scale model (Swin, SPT, DynamicSwin, SparseViT, DAT).

Legend: B images, H, W input pixels, C channels of stage 1 (stage i has C * 2**(i-1)).

    forward(x [B, 3, H, W], valid=None, generator=None, keep=None) -> (maps, aux)

maps: ordered dict ``stage1..stage4`` of NHWC maps ``[B, H/4, W/4, C] .. [B, H/32, W/32, 8C]``,
described by ``model.feature_info`` (timm's name / num_chs / reduction); an FPN permutes them to
NCHW (:class:`~spt_models.detection.fpn.BackboneWithFPN`). aux: the model's selection record (a
:class:`SelectionRecord`), or None for dense models (Swin, DAT). valid: the real extent of each
image of a padded batch, ``[B, 2]`` integer (height, width) in pixels or a ``[B, H, W]`` bool pixel
mask; each model uses it wherever its method can (never select padding, ratios over real tokens).
generator: the random generator of training-time selection noise. keep: ``{stride: [B, h, w]
bool}``, the given selection of a model that needs one (``needs_keep``: an SPT built with
``selection="given"``, the ground-truth oracle), made from a batch's selection labels by
``keep_from_labels``; None for every other model, which ignores it.

Besides forward, every backbone has ``fresh_keys()`` (state-dict keys a Swin checkpoint does not
provide, kept at their init by :func:`~spt_models.weights.load_swin_weights`), ``needs_keep``,
``keep_from_labels(labels, height, width)`` and ``multiscale = True``. ``vit_s16``
(:class:`~spt_models.vit.VisionTransformer`) is the one single-scale model and no Backbone:
``multiscale = False``, ``forward(x, keep) -> (cls, tokens)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
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
    """Base class of the multi-scale backbones: the contract above. Subclasses build ``features``
    (Swin's layout: patch embedding, stage, merging, ..., stage) and ``feature_info``; the forward
    here is the dense one (Swin, DAT), the models that select override it."""

    multiscale = True  # four maps, strides 4 to 32: what detectors and the classifier's stage-4 pooling need
    features: nn.Sequential
    feature_info: list[dict]

    def forward(
        self,
        x: Tensor,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
        keep: dict[int, Tensor] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], SelectionRecord | None]:
        """x [B, 3, H, W] -> (the four NHWC stage maps of ``features``, None): every token computed.
        ``valid``, ``generator`` and ``keep`` are accepted for the contract and unused."""
        return stage_maps(self.features, x), None

    def fresh_keys(self) -> list[str]:
        """State-dict keys a Swin checkpoint does not provide (they keep their init when Swin weights
        load): none."""
        return []

    def from_swin_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A Swin state dict (torchvision layout) in this model's keys, for blocks that hold Swin's
        weights under other names (DAT's deformable attention): unchanged here."""
        return state

    @property
    def needs_keep(self) -> bool:
        """Whether forward needs ``keep``, a given selection (ground-truth oracle): no."""
        return False

    def keep_from_labels(
        self, labels: dict[int, Tensor], height: int, width: int
    ) -> dict[int, Tensor] | None:
        """forward's ``keep`` from a batch's selection labels ``{stride: [B, h', w'] bool}`` for a
        ``height x width`` input: None, the model selects by itself (or computes every token)."""
        return None
