"""COCO instances JSON -> records. Boxes ``[x, y, w, h]`` -> xyxy; polygons and RLE kept as masks.

One record per entry of ``images`` (in file order), carrying all its annotations. A bad annotation
makes its whole image a bad record (raised, or skipped and counted with ``on_error="skip"``): an
image with a silently missing object would give wrong labels. An annotation whose ``image_id`` is
not in ``images`` is a bad record of its own. Duplicate image ids make every image with that id bad.
File-level problems (invalid JSON, wrong top-level type, missing or malformed ``categories``) are
always raised. Compressed RLE in COCO is column-major, as pycocotools reads it.

Each annotation's own ``area`` (for polygons COCO's polygon area, not the pixel count; COCOeval's
small/medium/large ranges read it) is kept in the record's ``extra["area"]``: a JSON list in
instance order, null where an annotation has no numeric area.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import DataError, OnError, as_policy
from .images import check_image
from .jsonfile import load_json, type_name
from .maskcheck import extent_problem, mask_extent
from .records import Dataset, Mask, PolygonMask, Record, RleMask, box_problem

__all__ = ["parse_segmentation", "read_coco"]

_log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any]], Iterable[Any]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _categories(data: dict[str, Any], path: Path) -> dict[int, str]:
    cats = data.get("categories")
    if not isinstance(cats, list):
        raise DataError(f"{path}: 'categories' must be an array, got {type_name(cats)}")
    out: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{path}: category {i}: needs an integer 'id' and a string 'name', got {c!r}")
        if c["id"] in out:
            raise DataError(f"{path}: category {i}: duplicate category id {c['id']}")
        out[c["id"]] = c["name"]
    return out


def parse_segmentation(seg: Any, height: int, width: int) -> tuple[Mask | None, str | None]:
    """COCO ``segmentation`` -> (mask or None, problem or None). Empty/absent -> (None, None)."""
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return None, None
    if isinstance(seg, list):
        rings = []
        for j, ring in enumerate(seg):
            if not isinstance(ring, list) or not all(_is_num(v) for v in ring):
                return None, f"segmentation polygon {j} is not an array of numbers"
            if len(ring) < 6 or len(ring) % 2:
                return (
                    None,
                    f"segmentation polygon {j} has {len(ring)} coordinates (need an even number >= 6)",
                )
            arr = np.asarray(ring, dtype=np.float64)
            if not np.isfinite(arr).all():
                return None, f"segmentation polygon {j} has a non-finite coordinate"
            rings.append(arr)
        return PolygonMask(tuple(rings)), None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            return None, f"segmentation RLE 'size' must be [height, width], got {size!r}"
        if list(size) != [height, width]:
            return None, f"segmentation RLE size {size} != image size [{height}, {width}]"
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != height * width:
                return (
                    None,
                    f"segmentation RLE counts must be non-negative integers summing to {height * width}",
                )
            rle = mask_utils.frPyObjects(seg, height, width)
            return RleMask(bytes(rle["counts"]), (height, width)), None
        if isinstance(counts, str | bytes):
            if isinstance(counts, str) and not counts.isascii():
                return None, "invalid RLE counts string: it has a non-ASCII character"
            raw = counts.encode("ascii") if isinstance(counts, str) else counts
            return RleMask(raw, (height, width)), None
        return None, f"segmentation RLE 'counts' must be a string or an array, got {type_name(counts)}"
    return None, f"segmentation must be an array of polygons or an RLE object, got {type_name(seg)}"


def _parse_image(im: Any) -> str | None:
    if not isinstance(im, dict):
        return f"must be an object, got {type_name(im)}"
    if not _is_int(im.get("id")):
        return f"'id' must be an integer, got {im.get('id')!r}"
    if not isinstance(im.get("file_name"), str) or not im["file_name"]:
        return f"'file_name' must be a non-empty string, got {im.get('file_name')!r}"
    for key in ("width", "height"):
        if not _is_int(im.get(key)) or im[key] <= 0:
            return f"'{key}' must be a positive integer, got {im.get(key)!r}"
    return None


def _parse_annotation(
    ann: dict[str, Any], im: dict[str, Any], cats: dict[int, str]
) -> tuple[tuple[Any, ...] | None, str | None]:
    """-> ((box, cat_id, name, crowd, ignore, mask, ann_id), None) or (None, problem)."""
    w, h = im["width"], im["height"]
    cid = ann.get("category_id")
    if not _is_int(cid) or cid not in cats:
        return None, f"unknown category_id {cid!r}"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
        return None, f"'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}"
    x, y, bw, bh = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, bw, bh)):
        return None, f"bbox has a non-finite value {bbox}"
    if bw < 0 or bh < 0:
        return None, f"bbox has negative size w={bw:g} h={bh:g}"
    if bw == 0 or bh == 0:
        return None, f"bbox has zero area (w={bw:g} h={bh:g})"
    problem = box_problem(x, y, x + bw, y + bh, w, h)
    if problem:
        return None, problem
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, float):
        return None, f"'iscrowd' must be 0 or 1, got {crowd!r}"
    mask, problem = parse_segmentation(ann.get("segmentation"), h, w)
    if mask is not None and problem is None:
        extent, problem = mask_extent(mask, h, w)
        problem = problem or extent_problem(extent, (x, y, x + bw, y + bh))  # type: ignore[arg-type]
    if problem:
        return None, problem
    ignore = bool(ann.get("ignore", 0))
    return ((x, y, x + bw, y + bh), cid, cats[cid], bool(crowd), ignore, mask, str(ann.get("id"))), None


def _index_images(
    entries: list[Any], path: Path, policy: OnError
) -> tuple[dict[int, tuple[int, dict[str, Any]]], set[int]]:
    """-> ({image id: (index, entry)} of the good images, ids of images reported as bad)."""
    images: dict[int, tuple[int, dict[str, Any]]] = {}
    bad_ids: set[int] = set()  # ids of image records already reported as bad
    valid: list[tuple[int, dict[str, Any]]] = []
    for i, im in enumerate(entries):
        problem = _parse_image(im)
        if problem:
            policy(DataError(f"{path}: image {i}: {problem}"))
            if isinstance(im, dict) and _is_int(im.get("id")):
                bad_ids.add(im["id"])
            continue
        valid.append((i, im))
    by_id: dict[int, list[int]] = defaultdict(list)
    for i, im in valid:
        by_id[im["id"]].append(i)
    for i, im in valid:
        others = [j for j in by_id[im["id"]] if j != i]
        if others or im["id"] in bad_ids:
            also = f"also image {', '.join(map(str, others))}" if others else "also an invalid image entry"
            policy(
                DataError(
                    f"{path}: image {i} (id {im['id']}, '{im['file_name']}'): duplicate image id ({also})"
                )
            )
            bad_ids.add(im["id"])
        else:
            images[im["id"]] = (i, im)
    return images, bad_ids


def _group_annotations(
    entries: list[Any], path: Path, images: dict[int, Any], bad_ids: set[int], policy: OnError
) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """-> {image id: [(index, annotation)]}; annotations of unknown images are reported as bad records."""
    anns: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for a, ann in enumerate(entries):
        if not isinstance(ann, dict):
            policy(
                DataError(f"{path}: annotation {a}: must be an object, got {type_name(ann)}"), "annotation"
            )
            continue
        iid = ann.get("image_id")
        if _is_int(iid) and iid in bad_ids:
            continue  # part of an image record already reported as bad
        if not _is_int(iid) or iid not in images:
            policy(
                DataError(
                    f"{path}: annotation {a} (id {ann.get('id')}): image_id {iid!r} is not in 'images'"
                ),
                "annotation",
            )
            continue
        anns[iid].append((a, ann))
    return anns


def read_coco(
    ann_file: str | Path,
    image_root: str | Path,
    *,
    on_error: OnError | str = "raise",
    check_images: str = "header",
    progress: Progress | None = None,
) -> Dataset:
    """Read a COCO instances JSON. Images are ``image_root / file_name``; see the module doc for errors."""
    path, root, policy = Path(ann_file), Path(image_root), as_policy(on_error)
    skipped0 = policy.count
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: top-level JSON is an {type_name(data)}, expected an object with 'images', 'annotations', 'categories'"
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: '{key}' must be an array, got {type_name(data.get(key))}")
    cats = _categories(data, path)

    images, bad_ids = _index_images(data["images"], path, policy)
    anns = _group_annotations(data["annotations"], path, images, bad_ids, policy)
    ann_ids = Counter(
        a.get("id") for a in data["annotations"] if isinstance(a, dict) and _is_int(a.get("id"))
    )

    records = []
    items = list(images.values())
    for i, im in progress(items) if progress else items:
        where = f"{path}: image {i} (id {im['id']}, '{im['file_name']}')"
        try:
            records.append(
                _build_record(path, root, i, im, anns.get(im["id"], []), cats, ann_ids, where, check_images)
            )
        except DataError as err:
            policy(err)
    n_skipped = policy.count - skipped0
    _log.info("%s: %d records, %d skipped", path, len(records), n_skipped)
    return Dataset("coco", records, cats, [str(path)], n_skipped)


def _build_record(
    path: Path,
    root: Path,
    index: int,
    im: dict[str, Any],
    anns: list[tuple[int, dict[str, Any]]],
    cats: dict[int, str],
    ann_id_count: Counter[int],
    where: str,
    check_images: str,
) -> Record:
    image_path = root / im["file_name"]
    check_image(image_path, where, mode=check_images, width=im["width"], height=im["height"])
    parsed, areas = [], []
    for a, ann in anns:
        aid = ann.get("id")
        if not _is_int(aid):
            problem = f"'id' must be an integer, got {aid!r}"
        elif ann_id_count[aid] > 1:
            problem = f"duplicate annotation id ({ann_id_count[aid]} annotations have it)"
        else:
            fields, problem = _parse_annotation(ann, im, cats)
        if problem:
            raise DataError(
                f"{path}: annotation {a} (id {ann.get('id')}) of image '{im['file_name']}': {problem}"
            )
        parsed.append(fields)
        areas.append(_area(ann))
    extra = {"file_name": im["file_name"]}
    if areas:
        extra["area"] = json.dumps(areas)
    return Record.from_instances(
        parsed,
        image_id=str(im["id"]),
        image_path=str(image_path),
        width=im["width"],
        height=im["height"],
        source=str(path),
        source_index=index,
        extra=extra,
    )


def _area(ann: dict[str, Any]) -> float | None:
    """COCO ``area`` of an annotation if it is a finite number, else None (kept for COCOeval parity)."""
    v = ann.get("area")
    return float(v) if _is_num(v) and math.isfinite(v) else None
