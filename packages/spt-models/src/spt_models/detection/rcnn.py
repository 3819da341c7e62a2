"""torchvision's two-stage detectors with what torchvision never hands the backbone: the real image
extents (``valid``, from ``image_sizes``) and, in training, the selection labels carried in the targets.

Legend: B images, h_s, w_s a token grid at stride s.

Images arrive already resized (spt-data's ``resize_policy``, in the dataset) so that precomputed
selection labels line up with the tokens: the transform normalises and batches (pads right and
bottom to a multiple of 32) but never resizes. Targets may hold ``target["select"] = {8: [h8, w8],
16: ..., 32: ...}`` bool grids of the image's own frame (what ``spt_data.selection_labels``
returns); they are padded to the batch (padding negative) and handed to the backbone's selection
record, whose losses (``loss_select`` for SPT, ``loss_ratio`` for DynamicSwin) join torchvision's
loss dict, each times its weight (``loss_weights``, ``loss_select``: alpha = 0.01).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.transform import GeneralizedRCNNTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform without its resize: normalise, then batch (pad to ``size_divisible``)."""

    def __init__(
        self,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
        size_divisible: int = 32,
    ) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=image_mean, image_std=image_std)
        self.size_divisible = size_divisible

    def resize(self, image: Tensor, target: dict | None = None) -> tuple[Tensor, dict | None]:
        return image, target


def batch_select_labels(targets: list[dict] | None) -> dict[int, Tensor] | None:
    """Per-image ``target["select"]`` grids -> ``{stride: [B, max h_s, max w_s] bool}``, each image
    top-left aligned and padded with False; None when no target carries labels.

    Raises ValueError when only some targets carry labels, or when their strides differ.
    """
    if not targets:
        return None
    has = ["select" in t for t in targets]
    if not any(has):
        return None
    if not all(has):
        missing = [i for i, h in enumerate(has) if not h]
        raise ValueError(f"targets {missing} have no 'select' labels while others have: label all or none")
    strides = sorted(targets[0]["select"])
    out = {}
    for s in strides:
        grids = []
        for i, t in enumerate(targets):
            if sorted(t["select"]) != strides:
                raise ValueError(
                    f"target {i} has select strides {sorted(t['select'])}, target 0 has {strides}"
                )
            grids.append(torch.as_tensor(t["select"][s], dtype=torch.bool))
        h, w = max(g.shape[0] for g in grids), max(g.shape[1] for g in grids)
        batch = torch.zeros(len(grids), h, w, dtype=torch.bool, device=targets[0]["boxes"].device)
        for i, g in enumerate(grids):
            batch[i, : g.shape[0], : g.shape[1]] = g.to(batch.device)
        out[s] = batch
    return out


class SelectRCNN(GeneralizedRCNN):
    """:class:`~torchvision.models.detection.generalized_rcnn.GeneralizedRCNN` whose backbone is a
    :class:`~spt_models.detection.fpn.BackboneWithFPN`.

    ``targets`` may be given in eval too: an oracle backbone (SPT with ``selection="given"``) reads
    its selection from their ``select`` labels.

    forward(images: list of [3, h_i, w_i] float in [0, 1], targets=None, generator=None) -> the loss
    dict in training (torchvision's losses + the backbone's auxiliary losses), the detections in eval.
    ``loss_weights``: weight of each auxiliary loss by name (default ``{"loss_select": 0.01}``; others 1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: nn.Module,
        roi_heads: nn.Module,
        transform: nn.Module,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)
        self.loss_weights = {"loss_select": 0.01, **(loss_weights or {})}

    def forward(  # type: ignore[override]
        self,
        images: list[Tensor],
        targets: list[dict] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        for i, t in enumerate(targets or []):
            bad = (t["boxes"][:, 2:] <= t["boxes"][:, :2]).any(1).nonzero().flatten()
            if bad.numel():
                raise ValueError(f"target {i}: box {t['boxes'][bad[0]].tolist()} has zero or negative size")
        valid = torch.tensor(batch.image_sizes, device=batch.tensors.device)  # [B, 2] real (h, w)
        labels = batch_select_labels(targets)
        features, aux = self.backbone(batch.tensors, valid=valid, generator=generator, select=labels)
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if not self.training:
            return self.transform.postprocess(detections, batch.image_sizes, original_sizes)
        losses = {**detector_losses, **proposal_losses}
        if aux is not None:
            for name, value in aux.losses(labels).items():
                losses[name] = self.loss_weights.get(name, 1.0) * value
        return losses
