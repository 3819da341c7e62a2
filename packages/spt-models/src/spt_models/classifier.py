"""Multi-label image classifier (PASCAL VOC, paper Tables 5 and 7) on any backbone of the registry.

Legend: B images, K classes, h, w the stage-4 grid (stride 32), C its channels.

    maps["stage4"] [B, h, w, C] -> mean over the real tokens -> LayerNorm -> Linear -> logits [B, K]

``vit_s16`` goes through the same head from its (already normalised) cls feature. Ground-truth
selection (Fig. 4): with ``gt_select=True`` the selection labels of the batch are the backbone's
``keep`` (``vit_s16`` at stride 16; an SPT built with ``selection="given"`` at its SPA strides,
``backbone.spa_strides``: 16 and 32 by default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone
from .masks import fit_grid, token_valid
from .registry import create_model
from .vit import VisionTransformer


class Classifier(nn.Module):
    """backbone + global pooling + norm + linear; BCE with logits for multi-label targets.

    forward(x [B, 3, H, W], labels=None, select=None, valid=None, generator=None) -> (logits [B, K],
    losses): ``losses`` is ``{}`` without ``labels``, else ``{"loss_cls": BCE (mean over B x K)}``
    plus the backbone's auxiliary losses (``loss_select`` when ``select`` is given), each times its
    weight in ``loss_weights`` (default ``{"loss_select": 0.01}``).
    labels [B, K] {0, 1}; select ``{stride: [B, h_s, w_s] bool}`` selection labels of the batch;
    valid [B, 2] real (height, width) of each padded image, or None.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        gt_select: bool = False,
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, (Backbone, VisionTransformer)):
            raise ValueError(f"backbone must be a registry backbone, got {type(backbone).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if backbone.multiscale and backbone.needs_keep != gt_select:
            raise ValueError(
                "gt_select=True needs an SPT built with selection='given' (e.g. spt_t_oracle) or vit_s16"
            )
        self.backbone, self.gt_select = backbone, gt_select
        dim = backbone.feature_info[-1]["num_chs"]  # stage 4's, or the ViT's tokens (its cls has the same)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.loss_weights = {"loss_select": 0.01, **(loss_weights or {})}

    def forward(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        select: dict[int, Tensor] | None = None,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        _, _, H, W = x.shape
        if self.gt_select and select is None:
            raise ValueError("gt_select=True: forward needs the selection labels (select={16: ..., 32: ...})")
        if not self.backbone.multiscale:
            pooled, aux = self._vit(x, select), None
        else:
            keep = self.backbone.keep_from_labels(select, H, W) if self.gt_select else None
            maps, aux = self.backbone(x, valid=valid, generator=generator, keep=keep)
            pooled = self._pool(maps["stage4"], valid)
        logits = self.head(self.norm(pooled))  # [B, K]
        losses: dict[str, Tensor] = {}
        if labels is not None:
            losses["loss_cls"] = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            if aux is not None:
                for name, value in aux.losses(select).items():
                    losses[name] = self.loss_weights.get(name, 1.0) * value
        return logits, losses

    def _vit(self, x: Tensor, select: dict[int, Tensor] | None) -> Tensor:
        """vit_s16: the cls feature [B, C]; with ``gt_select`` the stride-16 labels are its keep."""
        _, _, H, W = x.shape
        p = self.backbone.patch_size
        keep = fit_grid(select[p], (H // p, W // p)) if self.gt_select else None
        cls, _ = self.backbone(x, keep)
        return cls

    def _pool(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """Mean over the real tokens: x [B, h, w, C] -> [B, C]."""
        if valid is None:
            return x.mean(dim=(1, 2))
        real = token_valid(valid, tuple(x.shape[1:3]), self.backbone.feature_info[-1]["reduction"])
        real = real.unsqueeze(-1).to(x.dtype)  # [B, h, w, 1]
        return (x * real).sum(dim=(1, 2)) / real.sum(dim=(1, 2))


def create_classifier(
    name: str, num_classes: int = 20, *, gt_select: bool = False, **backbone_kwargs: Any
) -> Classifier:
    """``Classifier(create_model(name, **backbone_kwargs), num_classes)``; VOC has 20 classes."""
    return Classifier(create_model(name, **backbone_kwargs), num_classes, gt_select=gt_select)
