"""Predictions files -> COCO results, checked against the ground truth they are scored on.

Two layouts, told apart by the top level:

- **COCO results json**: an array of ``{"image_id", "category_id", "score", "bbox": [x, y, w, h]}``
  and/or ``"segmentation"`` (compressed or uncompressed RLE, or polygons). ``image_id`` is the
  ground truth's own id (the COCO image id; for BDD/VOC ground truth the frame name / file id, as
  a string); ``category_id`` a ground-truth category id. The first prediction decides which of
  ``bbox`` / ``segmentation`` the file carries; every prediction must then have it.
- **BDD100K / Scalabel frames json**: an array of frames (or ``{"frames": [...]}``), each
  ``{"name", "labels": [{"category", "box2d": {"x1", "y1", "x2", "y2"}, "score"}]}``. ``name`` is
  the ground truth's frame name, ``category`` a ground-truth category name (case and surrounding
  spaces ignored, as spt-data reads categories). ``box2d`` corners are inclusive pixel indices, as
  in BDD ground truth, so the box is ``[x1, y1, x2 + 1, y2 + 1]`` (Scalabel's COCO width
  ``x2 - x1 + 1``).

An empty array is an empty set of predictions. Anything else (invalid JSON, an unknown image or
category, a missing or malformed field) raises ValueError naming the file, the prediction (index)
and the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spt_data import Dataset, Record, RleMask
from spt_data.coco import parse_segmentation
from spt_data.jsonfile import load_json, type_name
from spt_data.maskcheck import rle_string_problem

from .coco import coco_image_ids

__all__ = ["load_predictions"]


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class _Gt:
    """What a prediction is checked against: images by record id, categories by id and by name."""

    def __init__(self, gt: Dataset | Sequence[Record], categories: Mapping[int, str] | None) -> None:
        records = gt.records if isinstance(gt, Dataset) else list(gt)
        if categories is None:
            categories = gt.categories if isinstance(gt, Dataset) else None
        if categories is None:
            categories = {int(c): n for r in records for c, n in zip(r.category_ids, r.category_names)}
        self.ids = coco_image_ids(records)  # record image_id -> COCO image id
        self.records = {r.image_id: r for r in records}
        self.categories = dict(categories)
        self.by_name = {n.strip().lower(): c for c, n in self.categories.items()}


def load_predictions(
    path: str | Path, gt: Dataset | Sequence[Record], *, categories: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """Read a COCO results or BDD/Scalabel frames json -> COCO results on the ground truth's ids.

    gt: the ground truth (a Dataset, or records; then ``categories`` or the records' classes).
    Returns dicts ``{"image_id": int (:func:`~.coco.coco_image_ids`), "category_id", "score",
    "bbox": [x, y, w, h]}`` and/or ``"segmentation"`` (compressed RLE, ``counts`` a str), in file
    order, ready for :func:`~.coco.coco_metrics`.
    """
    path = Path(path)
    g = _Gt(gt, categories)
    data = load_json(path, "predictions")
    if isinstance(data, dict) and "frames" in data:
        return _bdd(data["frames"], path, g)
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: expected a COCO results array or BDD/Scalabel frames, got a JSON {type_name(data)}"
        )
    if data and isinstance(data[0], dict) and "name" in data[0] and "image_id" not in data[0]:
        return _bdd(data, path, g)
    return _coco(data, path, g)


def _coco(items: list[Any], path: Path, g: _Gt) -> list[dict[str, Any]]:
    fields = [f for f in ("bbox", "segmentation") if items and isinstance(items[0], dict) and f in items[0]]
    out = []
    for i, d in enumerate(items):
        where = f"{path}: prediction {i}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: must be an object, got {type_name(d)}")
        for key in ("image_id", "category_id", "score", *fields):
            if key not in d:
                raise ValueError(f"{where}: missing '{key}'")
        if not fields:
            raise ValueError(f"{where}: needs 'bbox' or 'segmentation'")
        iid, cid = d["image_id"], d["category_id"]
        if isinstance(iid, bool) or not isinstance(iid, int | str) or str(iid) not in g.records:
            raise ValueError(f"{where}: unknown image_id {iid!r} (not an image of the ground truth)")
        if isinstance(cid, bool) or not isinstance(cid, int) or cid not in g.categories:
            raise ValueError(
                f"{where} (image_id {iid!r}): unknown category_id {cid!r} (not a category of the ground truth)"
            )
        rec = g.records[str(iid)]
        pred: dict[str, Any] = {
            "image_id": g.ids[rec.image_id],
            "category_id": cid,
            "score": _score(d, where),
        }
        if "bbox" in fields:
            pred["bbox"] = _bbox(d["bbox"], where)
        if "segmentation" in fields:
            pred["segmentation"] = _segmentation(d["segmentation"], rec, where)
        out.append(pred)
    return out


def _score(d: dict[str, Any], where: str) -> float:
    if "score" not in d:
        raise ValueError(f"{where}: missing 'score'")
    if not _num(d["score"]):
        raise ValueError(f"{where}: 'score' must be a finite number, got {d['score']!r}")
    return float(d["score"])


def _bbox(b: Any, where: str) -> list[float]:
    if not (isinstance(b, list) and len(b) == 4 and all(_num(v) for v in b)):
        raise ValueError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {b!r}")
    if b[2] < 0 or b[3] < 0:
        raise ValueError(f"{where}: 'bbox' has a negative size w={b[2]} h={b[3]}")
    return [float(v) for v in b]


def _segmentation(seg: Any, rec: Record, where: str) -> dict[str, Any]:
    """COCO segmentation (RLE or polygons) of an image of rec's size -> compressed RLE dict."""
    h, w = rec.height, rec.width
    mask, problem = parse_segmentation(seg, h, w)
    if mask is None and problem is None:
        problem = "'segmentation' is empty"
    if problem is None and isinstance(mask, RleMask):
        problem = rle_string_problem(mask.counts, h, w)
    if problem:
        raise ValueError(f"{where} (image {rec.image_id!r}, {w}x{h}): {problem}")
    counts = mask.counts if isinstance(mask, RleMask) else mask.rle(h, w)["counts"]  # type: ignore[union-attr]
    return {"size": [h, w], "counts": bytes(counts).decode("ascii")}


def _bdd(frames: Any, path: Path, g: _Gt) -> list[dict[str, Any]]:
    if not isinstance(frames, list):
        raise ValueError(f"{path}: 'frames' must be an array, got {type_name(frames)}")
    out = []
    for i, fr in enumerate(frames):
        where = f"{path}: frame {i}"
        if not isinstance(fr, dict):
            raise ValueError(f"{where}: must be an object, got {type_name(fr)}")
        if "name" not in fr:
            raise ValueError(f"{where}: missing 'name'")
        name = fr["name"]
        if not isinstance(name, str) or name not in g.records:
            raise ValueError(f"{where}: unknown image name {name!r} (not a frame of the ground truth)")
        labels = fr.get("labels") or []
        if not isinstance(labels, list):
            raise ValueError(f"{where} ('{name}'): 'labels' must be an array, got {type_name(labels)}")
        for j, lab in enumerate(labels):
            out.append(_bdd_label(lab, f"{where} ('{name}'): label {j}", g.ids[name], g))
    return out


def _bdd_label(lab: Any, where: str, image_id: int, g: _Gt) -> dict[str, Any]:
    if not isinstance(lab, dict):
        raise ValueError(f"{where}: must be an object, got {type_name(lab)}")
    for key in ("category", "box2d", "score"):
        if key not in lab:
            raise ValueError(f"{where}: missing '{key}'")
    cat = lab["category"]
    cid = g.by_name.get(cat.strip().lower()) if isinstance(cat, str) else None
    if cid is None:
        raise ValueError(f"{where}: unknown category {cat!r} (not a category of the ground truth)")
    box = lab["box2d"]
    keys = ("x1", "y1", "x2", "y2")
    if not (isinstance(box, dict) and all(_num(box.get(k)) for k in keys)):
        raise ValueError(f"{where}: 'box2d' must have finite numbers x1, y1, x2, y2, got {box!r}")
    x1, y1, x2, y2 = (float(box[k]) for k in keys)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{where}: 'box2d' has x2 < x1 or y2 < y1: {box!r}")
    bbox = [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0]  # inclusive corners -> width x2 - x1 + 1
    return {"image_id": image_id, "category_id": cid, "score": _score(lab, where), "bbox": bbox}
