"""Scoring a predictions file against a records Parquet: the library behind ``spt-train eval``.

``metric="coco"``: COCOeval ``bbox`` when the predictions carry boxes, ``segm`` when they carry
masks and every ground-truth instance has one (else segm is skipped with a warning in the log
and in ``notes``). ``metric="voc"``: VOC AP at IoU 0.5 and 0.75, all-point and 11-point.

The result is JSON-ready: plain floats, ints, strings, lists and dicts; a NaN (a class without
ground truth, or a COCO stat of an empty area range) is written as ``null``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

from spt_data import read_records

from .coco import STAT_NAMES, coco_metrics, records_to_coco
from .predictions import load_predictions
from .voc import format_voc, voc_metrics

__all__ = ["evaluate_predictions", "format_summary", "json_safe"]

_log = logging.getLogger(__name__)

Metric = Literal["coco", "voc"]


def json_safe(obj: Any) -> Any:
    """Nested metrics -> JSON-serialisable: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()  # numpy scalar
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_predictions(
    gt_records_path: str | Path, predictions_path: str | Path, metric: Metric = "coco"
) -> dict[str, Any]:
    """Score a predictions file (:mod:`.predictions`) against a records Parquet of ``spt-data convert``.

    Returns ``{"metric", "gt", "predictions", "num_images", "num_predictions", "notes", ...}`` plus
    ``"bbox"`` / ``"segm"`` (:func:`~.coco.coco_metrics`) for ``coco`` or ``"voc"``
    (:func:`~.voc.voc_metrics`) for ``voc``; JSON-ready (NaN -> None).
    """
    if metric not in ("coco", "voc"):
        raise ValueError(f"metric must be 'coco' or 'voc', got {metric!r}")
    gt_path, pred_path = Path(gt_records_path), Path(predictions_path)
    ds = read_records(gt_path)
    preds = load_predictions(pred_path, ds)
    out: dict[str, Any] = {
        "metric": metric,
        "gt": str(gt_path),
        "predictions": str(pred_path),
        "num_images": len(ds.records),
        "num_predictions": len(preds),
        "notes": [],
    }
    has_box = not preds or "bbox" in preds[0]
    has_mask = bool(preds) and "segmentation" in preds[0]
    if metric == "voc":
        if not has_box:
            raise ValueError(f"{pred_path}: VOC evaluation needs boxes; the predictions have only masks")
        out["voc"] = voc_metrics(ds.records, preds, ds.categories)
        return json_safe(out)
    gt = records_to_coco(ds.records, ds.categories)
    if has_box:
        out["bbox"] = coco_metrics(gt, preds, "bbox")
    if has_mask:
        missing = sum(1 for a in gt["annotations"] if "segmentation" not in a)
        if missing:
            note = f"segm not evaluated: {missing} ground-truth instances of {gt_path} have no mask"
            _log.warning(note)
            out["notes"].append(note)
        else:
            out["segm"] = coco_metrics(gt, preds, "segm")
    return json_safe(out)


def format_summary(metrics: dict[str, Any]) -> str:
    """Metrics of :func:`evaluate_predictions` -> the text the CLI prints: COCOeval's summary and
    a per-class AP table per IoU type, or the VOC table."""
    parts = [f"{metrics.get('predictions', '')} on {metrics.get('gt', '')}"]
    parts += [f"note: {n}" for n in metrics.get("notes", [])]
    if "voc" in metrics:
        parts.append("VOC detection AP (all-point and 11-point)\n" + format_voc(_nan(metrics["voc"])))
    for iou_type in ("bbox", "segm"):
        m = metrics.get(iou_type)
        if m is None:
            continue
        rows = [f"{'class':<20}{'AP':>8}{'AP50':>8}{'AP75':>8}{'num_gt':>8}"]
        for name, v in _nan(m)["per_class"].items():
            rows.append(f"{name:<20}{v['AP']:>8.3f}{v['AP50']:>8.3f}{v['AP75']:>8.3f}{v['num_gt']:>8d}")
        head = f"COCOeval {iou_type}: " + " ".join(f"{k} {_fmt(m[k])}" for k in STAT_NAMES[:3])
        parts.append(head + "\n" + m["summary"] + "\n".join(rows) + "\n")
    return "\n".join(parts)


def _nan(obj: Any) -> Any:
    """None -> NaN again (for printing JSON-ready metrics)."""
    if isinstance(obj, dict):
        return {k: _nan(v) for k, v in obj.items()}
    return math.nan if obj is None else obj


def _fmt(v: float | None) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
