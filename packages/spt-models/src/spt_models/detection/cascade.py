"""Cascade R-CNN RoI heads (Cai & Vasconcelos, 2018) for torchvision's ``GeneralizedRCNN``.

:class:`CascadeRoIHeads` is a drop-in ``roi_heads`` with torchvision's ``RoIHeads`` contract::

    model = MaskRCNN(backbone, num_classes=91)
    model.roi_heads = CascadeRoIHeads(91)

The numbers are mmdetection's ``cascade_mask_rcnn_r50_fpn`` / Swin ``4conv1f`` configs: three stages
with IoU thresholds 0.5 / 0.6 / 0.7 (foreground and background thresholds equal), loss weights
1 / 0.5 / 0.25, class-agnostic box regression with per-stage target stds (BoxCoder weights = 1 / std),
512 RoIs per image at 0.25 positive fraction, ground-truth boxes added to each stage's proposals.

Legend: B images, N_i boxes of image i, R boxes over the batch, G_i ground-truth boxes of image i,
K classes including background (index 0), C feature channels, D_i detections of image i.
"""

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

STAGE_IOU = (0.5, 0.6, 0.7)
STAGE_WEIGHTS = (1.0, 0.5, 0.25)
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
BOX_HEADS = ("4conv1fc", "2fc")
SCORE_AVERAGES = ("logits", "probs")
SMOOTH_L1_BETA = 1 / 9  # torchvision's fastrcnn_loss


class StageSamples(NamedTuple):
    """The RoIs one stage trains on, per image: ``boxes`` [R_i, 4], ``labels`` [R_i] int64 (0 is
    background), ``matched_idxs`` [R_i] int64 index into the image's ground truth (0 for background),
    ``is_gt`` [R_i] bool (the RoI is a ground-truth box added to the proposals)."""

    boxes: list[Tensor]
    labels: list[Tensor]
    matched_idxs: list[Tensor]
    is_gt: list[Tensor]


def coder_weights(stds: tuple[float, ...]) -> tuple[float, float, float, float]:
    """mmdetection target stds (x, y, w, h) -> torchvision ``BoxCoder`` weights, ``1 / std``."""
    if len(stds) != 4 or min(stds) <= 0:
        raise ValueError(f"box target stds must be 4 positive numbers, got {stds}")
    wx, wy, ww, wh = (1.0 / s for s in stds)
    return wx, wy, ww, wh


def label_proposals(
    boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor, iou_thresh: float
) -> tuple[Tensor, Tensor]:
    """boxes [N, 4], gt_boxes [G, 4], gt_labels [G] -> (labels [N] int64, matched_idxs [N] int64).

    A box is positive (the label of its best ground truth) when its best IoU >= ``iou_thresh``, else
    background (label 0, matched index 0): mmdetection's MaxIoUAssigner with pos = neg threshold."""
    N = boxes.shape[0]
    if gt_boxes.shape[0] == 0:  # background-only image
        zeros = torch.zeros(N, dtype=torch.int64, device=boxes.device)
        return zeros, zeros.clone()
    matcher = det_utils.Matcher(iou_thresh, iou_thresh, allow_low_quality_matches=False)
    matched = matcher(box_ops.box_iou(gt_boxes, boxes))  # [N], -1 below the threshold
    matched_idxs = matched.clamp(min=0)
    labels = gt_labels[matched_idxs].to(torch.int64)
    labels[matched < 0] = 0
    return labels, matched_idxs


def sample_stage(
    proposals: list[Tensor],
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    *,
    iou_thresh: float,
    batch_size_per_image: int,
    positive_fraction: float,
) -> StageSamples:
    """proposals [N_i, 4], gt_boxes [G_i, 4], gt_labels [G_i] -> the stage's sampled RoIs.

    Adds the ground truth to the proposals, labels them at ``iou_thresh`` (:func:`label_proposals`)
    and samples at most ``batch_size_per_image`` RoIs with at most ``positive_fraction`` positives."""
    sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
    all_boxes = [torch.cat([p, g.to(p.dtype)]) for p, g in zip(proposals, gt_boxes)]  # [N_i + G_i, 4]
    labelled = [label_proposals(b, g, gl, iou_thresh) for b, g, gl in zip(all_boxes, gt_boxes, gt_labels)]
    pos, neg = sampler([labels for labels, _ in labelled])
    out = StageSamples([], [], [], [])
    for p, b, (labels, matched_idxs), pos_i, neg_i in zip(proposals, all_boxes, labelled, pos, neg):
        keep = torch.where(pos_i.bool() | neg_i.bool())[0]  # [R_i]
        out.boxes.append(b[keep])
        out.labels.append(labels[keep])
        out.matched_idxs.append(matched_idxs[keep])
        out.is_gt.append(keep >= p.shape[0])
    return out


def box_loss(
    class_logits: Tensor,
    box_deltas: Tensor,
    samples: StageSamples,
    gt_boxes: list[Tensor],
    coder: det_utils.BoxCoder,
) -> tuple[Tensor, Tensor]:
    """class_logits [R, K], box_deltas [R, 4] (class-agnostic) -> (loss_cls, loss_box) scalars.

    torchvision's ``fastrcnn_loss`` math: cross-entropy over all sampled RoIs, smooth-L1 (beta 1/9)
    summed over the positives and divided by R. Zero (with a graph) when there are no RoIs."""
    labels = torch.cat(samples.labels)  # [R]
    if labels.numel() == 0:
        zero = class_logits.sum() * 0 + box_deltas.sum() * 0
        return zero, zero.clone()
    loss_cls = F.cross_entropy(class_logits, labels)
    pos = [lab > 0 for lab in samples.labels]
    targets = coder.encode_single(
        torch.cat(
            [g.to(b.dtype)[m[p]] for g, b, m, p in zip(gt_boxes, samples.boxes, samples.matched_idxs, pos)]
        ),
        torch.cat([b[p] for b, p in zip(samples.boxes, pos)]),
    )  # [P, 4]
    pos_deltas = box_deltas[torch.cat(pos)]  # [P, 4]
    loss_box = F.smooth_l1_loss(pos_deltas, targets, beta=SMOOTH_L1_BETA, reduction="sum") / labels.numel()
    return loss_cls, loss_box


def refine_boxes(
    box_deltas: Tensor, boxes: list[Tensor], coder: det_utils.BoxCoder, image_shapes: list[tuple[int, int]]
) -> list[Tensor]:
    """box_deltas [R, 4] (class-agnostic), boxes [N_i, 4] with sum N_i = R -> decoded boxes [N_i, 4],
    clipped to each image and detached (the next stage does not backpropagate into this one)."""
    decoded = coder.decode_single(box_deltas.detach(), torch.cat(boxes))  # [R, 4]
    per_image = decoded.split([b.shape[0] for b in boxes])
    return [box_ops.clip_boxes_to_image(d, shape) for d, shape in zip(per_image, image_shapes)]


def average_scores(stage_logits: list[Tensor], mode: str = "logits") -> Tensor:
    """S tensors [R, K] of stage class logits -> class probabilities [R, K].

    ``"logits"``: softmax of the mean logits (mmdetection ``CascadeRoIHead``: ``ms_scores`` holds raw
    ``cls_score``, averaged, then ``softmax`` in ``predict_by_feat``); ``"probs"``: mean of the
    softmaxes (detectron2 ``CascadeROIHeads``)."""
    if mode == "logits":
        return F.softmax(torch.stack(stage_logits).mean(0), dim=-1)
    if mode == "probs":
        return torch.stack([F.softmax(x, dim=-1) for x in stage_logits]).mean(0)
    raise ValueError(f"score average must be one of {SCORE_AVERAGES}, got {mode!r}")


def postprocess_detections(
    boxes: list[Tensor],
    probs: Tensor,
    image_shapes: list[tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """boxes [N_i, 4] (class-agnostic), probs [R, K] -> per image boxes [D_i, 4], scores [D_i],
    labels [D_i]. torchvision's ``RoIHeads.postprocess_detections`` with one box shared by all
    classes: every (box, foreground class) is a candidate; score threshold, NMS per class, top-k."""
    out_boxes, out_scores, out_labels = [], [], []
    for b, p, shape in zip(boxes, probs.split([b.shape[0] for b in boxes]), image_shapes):
        N, K = p.shape
        b = box_ops.clip_boxes_to_image(b, shape)[:, None].expand(N, K - 1, 4).reshape(-1, 4)  # [N*(K-1), 4]
        scores = p[:, 1:].reshape(-1)  # [N*(K-1)]
        labels = torch.arange(1, K, device=p.device).repeat(N)  # [N*(K-1)]
        keep = torch.where(scores > score_thresh)[0]
        b, scores, labels = b[keep], scores[keep], labels[keep]
        keep = box_ops.remove_small_boxes(b, min_size=1e-2)
        b, scores, labels = b[keep], scores[keep], labels[keep]
        keep = box_ops.batched_nms(b, scores, labels, nms_thresh)[:detections_per_img]
        out_boxes.append(b[keep])
        out_scores.append(scores[keep])
        out_labels.append(labels[keep])
    return out_boxes, out_scores, out_labels


class AgnosticBoxPredictor(nn.Module):
    """x [R, F] -> (class logits [R, K], class-agnostic box deltas [R, 4]); torchvision's
    ``FastRCNNPredictor`` names, mmdetection's init (normal std 0.01 / 0.001, zero bias)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4)
        for layer, std in ((self.cls_score, 0.01), (self.bbox_pred, 0.001)):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def build_box_head(
    kind: str, in_channels: int, roi_size: int, conv_channels: int, fc_channels: int
) -> nn.Module:
    """RoI features [R, C, roi_size, roi_size] -> [R, fc_channels].

    ``"4conv1fc"``: mmdetection ``Shared4Conv1FCBBoxHead`` (4 conv 3x3 + BatchNorm + ReLU, 1 fc), as
    torchvision's ``FastRCNNConvFCHead`` (convert to SyncBatchNorm for multi-GPU, as the Swin config);
    ``"2fc"``: ``Shared2FCBBoxHead`` = torchvision's ``TwoMLPHead``."""
    if kind == "4conv1fc":
        shape = (in_channels, roi_size, roi_size)
        return FastRCNNConvFCHead(shape, [conv_channels] * 4, [fc_channels], norm_layer=nn.BatchNorm2d)
    if kind == "2fc":
        return TwoMLPHead(in_channels * roi_size**2, fc_channels)
    raise ValueError(f"box_head must be one of {BOX_HEADS}, got {kind!r}")


class CascadeRoIHeads(nn.Module):
    """Cascade R-CNN box heads (+ a Mask R-CNN mask head on the last stage) as torchvision ``roi_heads``.

    ``forward(features {name: [B, C, H_l, W_l]}, proposals [N_i, 4], image_shapes [(H, W)], targets)``
    returns ``(detections, losses)`` exactly like ``torchvision...roi_heads.RoIHeads``: in training
    ``([], {"loss_classifier", "loss_box_reg"[, "loss_mask"]})`` (box losses summed over the stages
    with ``stage_weights``), in eval ``([{"boxes" [D_i, 4], "labels" [D_i], "scores" [D_i],
    "masks" [D_i, 1, 28, 28]}], {})``; ``GeneralizedRCNN.transform`` rescales boxes and pastes masks.

    Training (mmdetection ``CascadeRoIHead.loss``): stage s adds the ground truth to its proposals,
    samples RoIs at IoU ``stage_iou[s]``, and its detached, decoded predictions for the sampled
    non-ground-truth RoIs are stage s+1's proposals. The mask head is trained on the last stage's
    positives (torchvision ``maskrcnn_loss``, weight 1).

    Test (mmdetection ``CascadeRoIHead.predict_bbox`` / ``_refine_roi``, v2 ``simple_test``): stage s's
    head runs on stage s's own input boxes (the proposals refined by stages < s), not on the last
    stage's boxes; the stages' class scores are averaged (``score_average="logits"``: raw logits
    averaged then softmax, as mmdetection; ``"probs"``: mean of softmaxes, as detectron2); the boxes
    are the last stage's decoded boxes; then torchvision's score threshold, per-class NMS and top-k.
    Masks come from the single mask head on the final boxes (mmdetection has one mask head per stage
    and averages their sigmoids; here the mask head is the last stage's only).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        out_channels: int = 256,
        featmap_names: tuple[str, ...] = ("0", "1", "2", "3"),
        stage_iou: tuple[float, ...] = STAGE_IOU,
        stage_weights: tuple[float, ...] = STAGE_WEIGHTS,
        stage_stds: tuple[tuple[float, ...], ...] = STAGE_STDS,
        box_head: Literal["4conv1fc", "2fc"] = "4conv1fc",
        conv_channels: int = 256,
        representation_size: int = 1024,
        mask: bool = True,
        mask_channels: int = 256,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        score_average: Literal["logits", "probs"] = "logits",
    ) -> None:
        super().__init__()
        _check_stages(stage_iou, stage_weights, stage_stds)
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        if score_average not in SCORE_AVERAGES:
            raise ValueError(f"score_average must be one of {SCORE_AVERAGES}, got {score_average!r}")
        self.stage_iou = tuple(stage_iou)
        self.stage_weights = tuple(stage_weights)
        self.coders = [det_utils.BoxCoder(coder_weights(s)) for s in stage_stds]  # weights 1 / std
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.score_average = score_average

        names = list(featmap_names)
        self.box_roi_pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
        S = len(stage_iou)
        self.box_heads = nn.ModuleList(
            build_box_head(box_head, out_channels, 7, conv_channels, representation_size) for _ in range(S)
        )
        self.box_predictors = nn.ModuleList(
            AgnosticBoxPredictor(representation_size, num_classes) for _ in range(S)
        )
        self.mask_roi_pool = self.mask_head = self.mask_predictor = None
        if mask:
            self.mask_roi_pool = MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2)
            self.mask_head = MaskRCNNHeads(out_channels, [mask_channels] * 4, 1)
            self.mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, num_classes)

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    def has_mask(self) -> bool:
        return self.mask_head is not None

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """features {name: [B, C, H_l, W_l]}, proposals B x [N_i, 4] -> (detections, losses)."""
        if self.training:
            targets = self._check_targets(targets, len(proposals))
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._detect(features, proposals, image_shapes), {}

    def stage_forward(
        self,
        stage: int,
        features: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[Tensor, Tensor]:
        """boxes B x [N_i, 4] -> (class logits [R, K], class-agnostic deltas [R, 4]) of stage ``stage``."""
        x = self.box_roi_pool(features, boxes, image_shapes)  # [R, C, 7, 7]
        x = self.box_heads[stage](x)  # [R, F]
        return self.box_predictors[stage](x)

    def _losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        gt_boxes = [t["boxes"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        boxes = [p.detach() for p in proposals]
        loss_cls, loss_box = [], []
        for s in range(self.num_stages):
            samples = sample_stage(
                boxes,
                gt_boxes,
                gt_labels,
                iou_thresh=self.stage_iou[s],
                batch_size_per_image=self.batch_size_per_image,
                positive_fraction=self.positive_fraction,
            )
            logits, deltas = self.stage_forward(s, features, samples.boxes, image_shapes)
            cls, box = box_loss(logits, deltas, samples, gt_boxes, self.coders[s])
            loss_cls.append(self.stage_weights[s] * cls)
            loss_box.append(self.stage_weights[s] * box)
            if s < self.num_stages - 1:
                refined = refine_boxes(deltas, samples.boxes, self.coders[s], image_shapes)
                boxes = [b[~g] for b, g in zip(refined, samples.is_gt)]  # the next stage re-adds the gt
        losses = {"loss_classifier": sum(loss_cls), "loss_box_reg": sum(loss_box)}
        if self.has_mask():
            losses["loss_mask"] = self._mask_loss(features, samples, image_shapes, targets)
        return losses

    def _mask_loss(
        self,
        features: dict[str, Tensor],
        samples: StageSamples,
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """torchvision ``maskrcnn_loss`` on the positives of the last stage's ``samples``."""
        pos = [lab > 0 for lab in samples.labels]
        boxes = [b[p] for b, p in zip(samples.boxes, pos)]  # B x [P_i, 4]
        matched_idxs = [m[p] for m, p in zip(samples.matched_idxs, pos)]
        mask_logits = self._mask_logits(features, boxes, image_shapes)  # [P, K, 28, 28]
        gt_masks = [t["masks"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        return maskrcnn_loss(mask_logits, boxes, gt_masks, gt_labels, matched_idxs)

    def _mask_logits(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """boxes B x [N_i, 4] -> mask logits [R, K, 28, 28]."""
        x = self.mask_roi_pool(features, boxes, image_shapes)  # [R, C, 14, 14]
        return self.mask_predictor(self.mask_head(x))

    def _detect(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        boxes, stage_logits = proposals, []
        for s in range(self.num_stages):
            logits, deltas = self.stage_forward(s, features, boxes, image_shapes)
            stage_logits.append(logits)
            boxes = refine_boxes(deltas, boxes, self.coders[s], image_shapes)  # the last: final boxes
        probs = average_scores(stage_logits, self.score_average)  # [R, K]
        det = postprocess_detections(
            boxes, probs, image_shapes, self.score_thresh, self.nms_thresh, self.detections_per_img
        )
        result = [{"boxes": b, "labels": lab, "scores": sc} for b, sc, lab in zip(*det)]
        if self.has_mask():
            mask_logits = self._mask_logits(features, det[0], image_shapes)
            for r, m in zip(result, maskrcnn_inference(mask_logits, det[2])):
                r["masks"] = m  # [D_i, 1, 28, 28]
        return result

    def _check_targets(
        self, targets: list[dict[str, Tensor]] | None, num_images: int
    ) -> list[dict[str, Tensor]]:
        if targets is None or len(targets) != num_images:
            got = None if targets is None else f"{len(targets)} targets"
            raise ValueError(
                f"CascadeRoIHeads in training needs one target per image ({num_images}), got {got}"
            )
        keys = ("boxes", "labels", "masks") if self.has_mask() else ("boxes", "labels")
        for i, t in enumerate(targets):
            missing = [k for k in keys if k not in t]
            if missing:
                raise ValueError(f"target of image {i} lacks {missing}, has {sorted(t)}")
            if not t["boxes"].is_floating_point() or t["boxes"].ndim != 2 or t["boxes"].shape[-1] != 4:
                raise TypeError(
                    f"target boxes of image {i} must be float [G, 4], got {t['boxes'].dtype} {tuple(t['boxes'].shape)}"
                )
            if t["labels"].dtype != torch.int64:
                raise TypeError(f"target labels of image {i} must be int64, got {t['labels'].dtype}")
        return targets


def _check_stages(
    stage_iou: tuple[float, ...], stage_weights: tuple[float, ...], stage_stds: tuple[tuple[float, ...], ...]
) -> None:
    """One IoU threshold, one loss weight and one std 4-tuple per stage, thresholds in (0, 1]."""
    if not (len(stage_iou) == len(stage_weights) == len(stage_stds) >= 1):
        raise ValueError(
            "stage_iou, stage_weights and stage_stds need one entry per stage, got "
            f"{len(stage_iou)}, {len(stage_weights)} and {len(stage_stds)}"
        )
    if not all(0 < t <= 1 for t in stage_iou):
        raise ValueError(f"stage_iou must be in (0, 1], got {stage_iou}")
