"""A backbone of the registry under torchvision's FPN: P2-P6, 256 channels, NCHW out.

Legend: B images, H, W padded batch size in pixels.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from ..backbone import Backbone, SelectionRecord


class BackboneWithFPN(nn.Module):
    """``backbone`` (the contract of :mod:`spt_models.backbone`) + FPN.

    forward(x [B, 3, H, W], valid, generator) -> (features, aux): features the ordered dict
    ``{"0": P2 [B, 256, H/4, W/4], "1": P3, "2": P4, "3": P5 [B, 256, H/32, W/32], "pool": P6
    [B, 256, H/64, W/64]}`` (torchvision's names, so its RPN anchors and RoI pooling apply unchanged),
    aux the backbone's selection record or None. ``out_channels`` is what torchvision's heads read.
    """

    multiscale = True  # returns (maps, aux) as a Backbone does (spt_train.predict reads it)

    def __init__(self, backbone: Backbone, out_channels: int = 256) -> None:
        super().__init__()
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(
            [f["num_chs"] for f in backbone.feature_info], out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(
        self,
        x: Tensor,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
        select: dict[int, Tensor] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], SelectionRecord | None]:
        """select: ``{stride: [B, h, w] bool}`` selection labels of the batch, the ``keep`` of a backbone
        that needs one (``needs_keep``: an SPT built with ``selection="given"``, the ground-truth
        oracle); unused otherwise."""
        keep = None
        if self.body.needs_keep:
            if select is None:
                raise ValueError(
                    f"{type(self.body).__name__} needs the targets' 'select' labels (a given selection), in eval too"
                )
            _, _, H, W = x.shape
            keep = self.body.keep_from_labels(select, H, W)
        maps, aux = self.body(x, valid=valid, generator=generator, keep=keep)
        nchw = OrderedDict(
            (str(i), m.permute(0, 3, 1, 2)) for i, m in enumerate(maps.values())
        )  # [B, c, h, w]
        return self.fpn(nchw), aux
