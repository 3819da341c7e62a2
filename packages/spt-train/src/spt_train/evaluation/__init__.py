"""Evaluation: COCOeval bbox/segm for spt-data records, VOC detection AP, VOC multi-label mAP,
selection metrics (App. B.3), gate AUROC, and scoring of predictions files (COCO results, BDD/Scalabel frames)."""

from .auroc import AurocMeter, auroc
from .coco import STAT_NAMES, coco_image_ids, coco_metrics, records_to_coco
from .evaluate import evaluate_predictions, format_summary, json_safe
from .multilabel import multilabel_map
from .predictions import load_predictions
from .selection import SelectionMeter, selection_counts, selection_ratios
from .voc import format_voc, voc_ap, voc_class_pr, voc_metrics

__all__ = [
    "STAT_NAMES",
    "AurocMeter",
    "SelectionMeter",
    "auroc",
    "coco_image_ids",
    "coco_metrics",
    "evaluate_predictions",
    "format_summary",
    "format_voc",
    "json_safe",
    "load_predictions",
    "multilabel_map",
    "records_to_coco",
    "selection_counts",
    "selection_ratios",
    "voc_ap",
    "voc_class_pr",
    "voc_metrics",
]
