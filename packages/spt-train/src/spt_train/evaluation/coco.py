"""COCO-style detection and segmentation metrics through pycocotools' COCOeval, for spt-data records.

:func:`records_to_coco` turns records of any reader (COCO, BDD100K/Scalabel, VOC) into a COCO
ground-truth dict; :func:`coco_metrics` runs ``COCOeval(gt, results, iou_type)`` unchanged and
returns its 12 stats by name plus per-class AP. Conventions:

- Image ids: the records' own ids when every one is a decimal integer (COCO: pycocotools sees the
  same ids in the same order, so ties between equal scores break the same way); otherwise
  1..N in record order (BDD frame names, VOC file ids), the record id kept as ``spt_image_id``.
  :func:`coco_image_ids` is that mapping; predictions go through it (:mod:`.predictions`).
- Annotation ids are 1..M: COCOeval treats a matched ground-truth id of 0 as "unmatched".
- ``iscrowd`` = the record's crowd flag **or** its ignore flag (BDD ``other person``/``trailer``...,
  VOC ``difficult``). COCOeval cannot say "ignore" otherwise: its ``_prepare`` overwrites any
  ``ignore`` field with ``iscrowd``, and a crowd region is what it leaves out of both TP and FP
  (a detection matching it, by intersection over the detection's area, costs nothing). Scalabel's
  COCO conversion does the same (``iscrowd = crowd or ignored``).
- ``area``: COCO's own area when the reader kept it (``extra["area"]``, needed for exact parity:
  COCO's polygon area is not the pixel count), else the mask's pixel count, else the box area.
- Classes without (non-crowd) ground truth: COCOeval leaves their precision at -1 and its means
  skip them; their per-class AP is NaN and ``class_mean_AP`` (the explicit mean over the classes
  with ground truth) equals ``AP`` up to summation order. A stat COCOeval reports as -1 (no ground
  truth in that area range) is NaN here.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from spt_data import PolygonMask, Record, RleMask

__all__ = ["STAT_NAMES", "coco_image_ids", "coco_metrics", "records_to_coco"]

# The order of COCOeval.stats.
STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip

IouType = Literal["bbox", "segm"]


def coco_image_ids(records: Sequence[Record]) -> dict[str, int]:
    """record image_id -> the integer image id of :func:`records_to_coco` (see the module doc)."""
    ids = [r.image_id for r in records]
    seen: dict[str, int] = {}
    for i, iid in enumerate(ids):
        if iid in seen:
            raise ValueError(f"{records[i].source}: records {seen[iid]} and {i} share image_id {iid!r}")
        seen[iid] = i
    if all(s.isdigit() and str(int(s)) == s for s in ids):
        return {s: int(s) for s in ids}
    return {s: i + 1 for i, s in enumerate(ids)}


def _areas(r: Record) -> list[float]:
    """The K annotation areas of a record: COCO's kept ``area``, else mask pixels, else box area."""
    kept = json.loads(r.extra["area"]) if "area" in r.extra else []
    if len(kept) != r.num_instances:
        kept = [None] * r.num_instances
    out = []
    for k, (area, mask) in enumerate(zip(kept, r.masks)):
        if area is None and mask is not None:
            area = float(mask_utils.area(_rle(mask, r.height, r.width)))
        if area is None:
            x1, y1, x2, y2 = r.boxes[k]
            area = float((x2 - x1) * (y2 - y1))
        out.append(float(area))
    return out


def _rle(mask: PolygonMask | RleMask, height: int, width: int) -> dict:
    """Mask -> pycocotools compressed RLE ``{"size": [h, w], "counts": bytes}``."""
    if isinstance(mask, PolygonMask):
        return mask.rle(height, width)
    return {"size": [height, width], "counts": mask.rle_string(height, width)}


def _segmentation(mask: PolygonMask | RleMask, height: int, width: int) -> list | dict:
    """Mask -> COCO ``segmentation`` (polygons as lists, RLE with ``counts`` as a str)."""
    if isinstance(mask, PolygonMask):
        return [ring.tolist() for ring in mask.rings]
    return {"size": [height, width], "counts": mask.rle_string(height, width).decode("ascii")}


def records_to_coco(records: Sequence[Record], categories: Mapping[int, str] | None = None) -> dict:
    """spt-data records -> a COCO ground-truth dict (``images``, ``annotations``, ``categories``).

    records: of any reader; boxes [K, 4] xyxy px become ``bbox`` [x, y, w, h]. categories: every
    class of the dataset ``{id: name}`` (``Dataset.categories``; classes without ground truth stay
    in the table and get NaN AP); default: the classes the records use.
    """
    if categories is None:
        categories = {int(c): n for r in records for c, n in zip(r.category_ids, r.category_names)}
    ids = coco_image_ids(records)
    images, anns = [], []
    for r in records:
        image = {"id": ids[r.image_id], "width": r.width, "height": r.height, "file_name": r.image_path}
        images.append(image | {"spt_image_id": r.image_id})  # the record's own id, for the reader
        for k, area in enumerate(_areas(r)):
            cid = int(r.category_ids[k])
            if cid not in categories:
                raise ValueError(
                    f"{r.source}: record {r.source_index} (image {r.image_id!r}) instance {k}: "
                    f"category id {cid} is not in the categories {sorted(categories)}"
                )
            x1, y1, x2, y2 = (float(v) for v in r.boxes[k])
            ann = {
                "id": len(anns) + 1,
                "image_id": ids[r.image_id],
                "category_id": cid,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": area,
                "iscrowd": int(r.iscrowd[k] or r.ignore[k]),
                "ignore": int(r.ignore[k]),  # informative only: COCOeval reads iscrowd
                "spt_ann_id": r.ann_ids[k],
            }
            if r.masks[k] is not None:
                ann["segmentation"] = _segmentation(r.masks[k], r.height, r.width)
            anns.append(ann)
    cats = [{"id": int(c), "name": n} for c, n in sorted(categories.items())]
    return {"images": images, "annotations": anns, "categories": cats}


def _check(gt: dict, results: Sequence[dict], iou_type: str) -> None:
    """Every result names a ground-truth image and category and has its iou_type's field."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    field = "bbox" if iou_type == "bbox" else "segmentation"
    if iou_type == "segm":
        for a in gt["annotations"]:
            if "segmentation" not in a:
                raise ValueError(
                    f"segm evaluation needs a mask for every ground-truth instance: annotation "
                    f"{a['id']} of image {a['image_id']} has none"
                )
    images = {im["id"] for im in gt["images"]}
    cats = {c["id"] for c in gt["categories"]}
    for i, d in enumerate(results):
        if d.get("image_id") not in images:
            raise ValueError(f"result {i}: image_id {d.get('image_id')!r} is not in the ground truth")
        if d.get("category_id") not in cats:
            raise ValueError(f"result {i}: category_id {d.get('category_id')!r} is not in the ground truth")
        if field not in d:
            raise ValueError(f"result {i}: {iou_type} evaluation needs '{field}'")


def _results(coco_gt: COCO, results: Sequence[dict], iou_type: str) -> COCO:
    """COCO results object. Segm drops ``bbox`` so areas are mask areas (as detectron2 does)."""
    drop = "bbox" if iou_type == "segm" else "segmentation"
    dets = [{k: v for k, v in d.items() if k != drop} for d in results]
    if dets:
        return coco_gt.loadRes(dets)
    empty = COCO()  # loadRes cannot take an empty list
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": []}
    empty.dataset["categories"] = list(coco_gt.dataset["categories"])
    empty.createIndex()
    return empty


def _mean_valid(p: np.ndarray) -> float:
    """Mean of the entries COCOeval filled (> -1), NaN if none."""
    p = p[p > -1]
    return float(np.mean(p)) if p.size else math.nan


def coco_metrics(gt: dict, results: Sequence[dict], iou_type: IouType = "bbox") -> dict[str, Any]:
    """Run COCOeval on a ground-truth dict and COCO results -> metrics.

    gt: a COCO ground-truth dict (:func:`records_to_coco`; not modified). results: COCO results
    (``image_id``, ``category_id``, ``score`` and ``bbox`` [x, y, w, h] or ``segmentation``).
    Returns the 12 stats by name (:data:`STAT_NAMES`, floats, NaN where COCOeval says -1),
    ``per_class`` ``{name: {"AP", "AP50", "AP75", "num_gt"}}`` (area all, 100 detections; NaN for
    classes without non-crowd ground truth), ``class_mean_AP`` (mean of the per-class APs that are
    not NaN), ``classes_without_gt`` and ``summary`` (COCOeval's printed summary, 12 lines).
    """
    _check(gt, results, iou_type)
    gt = dict(gt, annotations=[dict(a) for a in gt["annotations"]])  # COCOeval writes into them
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # pycocotools prints progress; a library does not
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, _results(coco_gt, results, iou_type), iou_type)
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    metrics: dict[str, Any] = {"iou_type": iou_type}
    for name, v in zip(STAT_NAMES, ev.stats):
        metrics[name] = math.nan if v == -1 else float(v)
    metrics.update(_per_class(ev, coco_gt))
    metrics["summary"] = summary.getvalue()
    return metrics


def _per_class(ev: COCOeval, coco_gt: COCO) -> dict[str, Any]:
    """Per-class AP / AP50 / AP75 from ``ev.eval["precision"]`` [T, R, K, A, M] (area all, last M)."""
    precision = ev.eval["precision"]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(ev.params.iouThrs - 0.75)))
    names = [coco_gt.cats[c]["name"] for c in ev.params.catIds]
    if len(set(names)) < len(names):  # keys must be unique: fall back to "id name"
        names = [f"{c} {n}" for c, n in zip(ev.params.catIds, names)]
    per_class, without = {}, []
    for k, (cid, name) in enumerate(zip(ev.params.catIds, names)):
        p = precision[:, :, k, 0, -1]  # [T, R]
        num_gt = len(coco_gt.getAnnIds(catIds=[cid], iscrowd=False))
        per_class[name] = {
            "AP": _mean_valid(p),
            "AP50": _mean_valid(p[t50]),
            "AP75": _mean_valid(p[t75]),
            "num_gt": num_gt,
        }
        if math.isnan(per_class[name]["AP"]):
            without.append(name)
    aps = [v["AP"] for v in per_class.values() if not math.isnan(v["AP"])]
    return {
        "per_class": per_class,
        "class_mean_AP": float(np.mean(aps)) if aps else math.nan,
        "classes_without_gt": without,
    }
