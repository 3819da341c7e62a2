"""PASCAL VOC detection AP, the official devkit's logic (``VOCevaldet.m``, ``VOCap.m``).

Per class: detections sorted by decreasing score (stable, as MATLAB's ``sort``); each goes to the
ground truth of its image and class with the highest IoU (the first on ties); IoU >= threshold
(the devkit's ``>=``) and that object ``difficult`` -> ignored (neither TP nor FP); not yet
detected -> TP; already detected -> FP (duplicate); below the threshold -> FP. Recall is over the
non-difficult objects. AP: ``all_point`` (VOC2010+: area under the monotone precision envelope at
every recall change) or ``11_point`` (VOC2007: mean of the best precision at recall >= k/10,
k = 0..10).

Boxes are continuous xyxy px (spt-data's convention). The devkit's ``+ 1`` widths belong to its
inclusive integer corners; spt-data reads VOC's ``[xmin, ymin, xmax, ymax]`` as ``[xmin - 1,
ymin - 1, xmax, ymax]``, so plain continuous IoU here equals the devkit's IoU on the XML values.
Ignored objects are the records' ``ignore`` (VOC ``difficult``) or ``iscrowd`` flags. Classes
without non-ignored ground truth get NaN and are left out of the mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spt_data import Record

from .coco import coco_image_ids

__all__ = ["VOC_IOUS", "format_voc", "voc_ap", "voc_class_pr", "voc_metrics"]

VOC_IOUS: tuple[float, ...] = (0.5, 0.75)


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, eleven_point: bool = False) -> float:
    """recall, precision [D] (cumulative, in detection order) -> AP (devkit's VOCap / VOC2007)."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if eleven_point:
        ap = 0.0
        for t in np.arange(11) / 10:  # k/10 exactly as decimals: 0.3, not 3 * 0.1
            p = precision[recall >= t]
            ap += (float(p.max()) if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone envelope from the right
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """box [4], gt [G, 4] xyxy -> IoU [G]; 0 where they do not overlap."""
    iw = np.minimum(box[2], gt[:, 2]) - np.maximum(box[0], gt[:, 0])
    ih = np.minimum(box[3], gt[:, 3]) - np.maximum(box[1], gt[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), -np.inf)


def voc_class_pr(
    gt_boxes: Mapping[Any, np.ndarray],
    gt_ignore: Mapping[Any, np.ndarray],
    det_images: Sequence[Any],
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """One class: gt_boxes {image: [G, 4]}, gt_ignore {image: [G] bool}, D detections (image keys,
    boxes [D, 4] xyxy, scores [D]) -> (recall [D'], precision [D'], npos). D' leaves out the
    detections matched to ignored objects (the devkit's "don't care")."""
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    detected = {k: np.zeros(len(v), bool) for k, v in gt_boxes.items()}
    npos = int(sum(int((~np.asarray(v, bool)).sum()) for v in gt_ignore.values()))
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for n, d in enumerate(order):
        img = det_images[d]
        gts = gt_boxes.get(img)
        if gts is None or len(gts) == 0:
            fp[n] = 1
            continue
        ov = _iou(det_boxes[d], gts)
        j = int(np.argmax(ov))  # first maximum, as the devkit's strict ``ov > ovmax``
        if ov[j] < iou_threshold:
            fp[n] = 1
        elif gt_ignore[img][j]:
            continue  # don't care
        elif not detected[img][j]:
            tp[n], detected[img][j] = 1, True
        else:
            fp[n] = 1
    keep = (tp + fp) > 0  # the devkit's cumsum counts ignored detections as neither
    tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    recall = tp / npos if npos else np.full(len(tp), math.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).tiny)
    return recall, precision, npos


def voc_metrics(
    records: Sequence[Record],
    results: Sequence[dict],
    categories: Mapping[int, str] | None = None,
    iou_thresholds: Sequence[float] = VOC_IOUS,
) -> dict[str, Any]:
    """VOC detection AP per class and mean, all-point and 11-point, at each IoU threshold.

    records: the ground truth; results: COCO results on :func:`~.coco.coco_image_ids` ids with
    ``bbox`` [x, y, w, h] (what :func:`~.predictions.load_predictions` returns). Returns
    ``AP50``, ``AP50_11pt``, ``AP75``, ``AP75_11pt`` (means over the classes with ground truth),
    ``per_class`` ``{name: {the same keys, "num_gt"}}`` (NaN without ground truth),
    ``classes_without_gt`` and ``summary`` (a text table).
    """
    if categories is None:
        categories = {int(c): n for r in records for c, n in zip(r.category_ids, r.category_names)}
    ids = coco_image_ids(records)
    gt_boxes: dict[int, dict[int, np.ndarray]] = defaultdict(dict)  # class -> image -> [G, 4]
    gt_ignore: dict[int, dict[int, np.ndarray]] = defaultdict(dict)  # class -> image -> [G]
    for r in records:
        for c in np.unique(r.category_ids):
            sel = r.category_ids == c
            gt_boxes[int(c)][ids[r.image_id]] = r.boxes[sel]
            gt_ignore[int(c)][ids[r.image_id]] = (r.ignore | r.iscrowd)[sel]
    dets: dict[int, list[dict]] = defaultdict(list)
    for i, d in enumerate(results):
        if "bbox" not in d:
            raise ValueError(f"result {i}: VOC evaluation needs 'bbox'")
        dets[d["category_id"]].append(d)
    per_class: dict[str, dict[str, Any]] = {}
    for cid, name in sorted(categories.items()):
        per_class[name] = _class_aps(gt_boxes[cid], gt_ignore[cid], dets[cid], iou_thresholds)
    out: dict[str, Any] = {}
    for key in _keys(iou_thresholds):
        aps = [v[key] for v in per_class.values() if not math.isnan(v[key])]
        out[key] = float(np.mean(aps)) if aps else math.nan
    out["per_class"] = per_class
    out["classes_without_gt"] = [n for n, v in per_class.items() if v["num_gt"] == 0]
    out["summary"] = format_voc(out)
    return out


def _keys(iou_thresholds: Sequence[float]) -> list[str]:
    return [k for t in iou_thresholds for k in (f"AP{round(t * 100)}", f"AP{round(t * 100)}_11pt")]


def _class_aps(
    boxes: dict[int, np.ndarray], ignore: dict[int, np.ndarray], dets: list[dict], ious: Sequence[float]
) -> dict[str, Any]:
    det_boxes = np.array([d["bbox"] for d in dets], np.float64).reshape(-1, 4)  # [D, 4] xywh
    det_boxes[:, 2:] += det_boxes[:, :2]  # -> xyxy
    images = [d["image_id"] for d in dets]
    scores = np.array([d["score"] for d in dets], np.float64)
    out: dict[str, Any] = {}
    for t, key in zip(ious, _keys(ious)[::2]):
        rec, prec, npos = voc_class_pr(boxes, ignore, images, det_boxes, scores, t)
        out[key] = voc_ap(rec, prec) if npos else math.nan
        out[f"{key}_11pt"] = voc_ap(rec, prec, eleven_point=True) if npos else math.nan
        out["num_gt"] = npos
    return out


def format_voc(metrics: Mapping[str, Any]) -> str:
    """VOC metrics -> a text table: one row per class, the mean last (NaN: no ground truth)."""
    keys = [k for k in metrics if k.startswith("AP")]
    rows = [f"{'class':<16}" + "".join(f"{k:>11}" for k in keys) + f"{'num_gt':>8}"]
    for name, v in metrics["per_class"].items():
        rows.append(f"{name:<16}" + "".join(f"{v[k]:>11.4f}" for k in keys) + f"{v['num_gt']:>8d}")
    rows.append(f"{'mean':<16}" + "".join(f"{metrics[k]:>11.4f}" for k in keys))
    return "\n".join(rows) + "\n"
