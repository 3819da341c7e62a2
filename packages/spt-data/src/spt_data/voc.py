"""PASCAL VOC layout -> records: ``Annotations/<id>.xml``, ``JPEGImages``, ``ImageSets/Main/<split>.txt``,
``SegmentationObject/<id>.png`` (and ``SegmentationClass``) where present.

Conventions:
- ``bndbox`` corners are 1-based inclusive pixel indices, so the continuous 0-based box is
  ``[xmin - 1, ymin - 1, xmax, ymax]`` (as detectron2 reads VOC). ``difficult=1`` -> ignore flag.
- ``SegmentationObject`` PNGs hold 0 (background), 1..N (instance), 255 (void border, part of no
  instance). ``instances="xml"`` (default): instances are the XML objects, and PNG value i is the mask
  of the i-th object (VOC's rule); a value above the object count, or a SegmentationClass disagreeing
  with the object's class, is an error. ``instances="segmentation"``: instances are the PNG values
  (class = majority SegmentationClass value, mapped by ``class_names.txt`` when present, else VOC order;
  box = mask extent); the XML gives only the file name and size. Use it for exports whose XML and
  masks do not correspond one to one (e.g. labelme's).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .categories import VOC_CLASSES, voc_category
from .errors import DataError, OnError, as_policy
from .images import check_image
from .maskcheck import bitmap_extent, extent_problem
from .records import Dataset, Record, box_problem, rle_from_bitmap

__all__ = ["read_voc"]

_log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any]], Iterable[Any]]
INSTANCE_MODES = ("xml", "segmentation")


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    raw = _text(node, tag)
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: <{tag}> must be a number, got {raw!r}") from e


def _class_names(root: Path) -> list[str] | None:
    f = root / "class_names.txt"
    if not f.is_file():
        return None
    names = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return names


def _read_png(path: Path, where: str, width: int, height: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            arr = np.array(img)  # palette PNG -> [H, W] indices
    except OSError as e:
        raise DataError(f"{where}: cannot read {path}: {e}") from e
    if arr.shape != (height, width):
        raise DataError(f"{where}: {path} has shape {list(arr.shape)}, expected [{height}, {width}]")
    return arr


def read_voc(
    root: str | Path,
    *,
    split: str | None = "trainval",
    instances: str = "xml",
    on_error: OnError | str = "raise",
    check_images: str = "header",
    progress: Progress | None = None,
) -> Dataset:
    """Read a VOC folder (the one holding ``Annotations``). ``split=None`` reads every ``Annotations/*.xml``."""
    if instances not in INSTANCE_MODES:
        raise ValueError(f"instances must be one of {INSTANCE_MODES}, got {instances!r}")
    root, policy = Path(root), as_policy(on_error)
    skipped0 = policy.count
    if split is None:
        ids = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
        source = root / "Annotations"
    else:
        source = root / "ImageSets" / "Main" / f"{split}.txt"
        if not source.is_file():
            raise DataError(f"{source}: split file not found")
        ids = [ln.split()[0] for ln in source.read_text(encoding="utf-8").splitlines() if ln.strip()]
    class_names = _class_names(root)
    records = []
    for index, image_id in enumerate(progress(ids) if progress else ids):
        try:
            records.append(_build_record(root, source, index, image_id, instances, check_images, class_names))
        except DataError as err:
            policy(err)
    n_skipped = policy.count - skipped0
    _log.info("%s: %d records, %d skipped", source, len(records), n_skipped)
    cats = {i + 1: n for i, n in enumerate(VOC_CLASSES)}
    return Dataset("voc", records, cats, [str(source)], n_skipped)


def _build_record(
    root: Path,
    source: Path,
    index: int,
    image_id: str,
    instances: str,
    check_images: str,
    class_names: list[str] | None,
) -> Record:
    xml_path = root / "Annotations" / f"{image_id}.xml"
    where = f"{xml_path}: image '{image_id}'"
    if not xml_path.is_file():
        raise DataError(f"{where}: annotation file not found (listed as record {index} in {source})")
    try:
        ann = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{where}: unreadable XML: {e}") from e
    width, height = _image_size(ann, where)
    file_name = _text(ann, "filename") or f"{image_id}.jpg"
    image_path = root / "JPEGImages" / file_name
    check_image(image_path, where, mode=check_images, width=width, height=height)

    objs = [_parse_object(obj, j, where, width, height) for j, obj in enumerate(ann.findall("object"))]
    obj_png = root / "SegmentationObject" / f"{image_id}.png"
    cls_png = root / "SegmentationClass" / f"{image_id}.png"
    inst = _read_png(obj_png, where, width, height) if obj_png.is_file() else None
    cls = _read_png(cls_png, where, width, height) if cls_png.is_file() else None
    if instances == "segmentation":
        if inst is None or cls is None:
            raise DataError(
                f"{where}: instances='segmentation' needs {obj_png.name} in SegmentationObject and SegmentationClass"
            )
        rows = _instances_from_png(inst, cls, class_names, where)
    else:
        rows = [(*o[:3], False, o[3], None, o[4]) for o in objs]
        if inst is not None:
            rows = _attach_masks(rows, inst, cls, class_names, where)
    return Record.from_instances(
        rows,
        image_id=image_id,
        image_path=str(image_path),
        width=width,
        height=height,
        source=str(xml_path),
        source_index=index,
    )


def _image_size(ann: ET.Element, where: str) -> tuple[int, int]:
    size = ann.find("size")
    if size is None:
        raise DataError(f"{where}: missing <size>")
    width, height = _number(size, "width", where), _number(size, "height", where)
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise DataError(f"{where}: <size> must be positive integers, got {width:g}x{height:g}")
    return int(width), int(height)


def _parse_object(obj: ET.Element, j: int, where: str, width: int, height: int) -> tuple[Any, ...]:
    """One <object> -> (box, category_id, name, difficult, index string); DataError if bad."""
    name = _text(obj, "name") or ""
    owhere = f"{where}: object {j} ('{name}')"
    mapped = voc_category(name)
    if mapped is None:
        raise DataError(f"{owhere}: unknown class {name!r}")
    bb = obj.find("bndbox")
    if bb is None:
        raise DataError(f"{owhere}: missing <bndbox>")
    xmin, ymin, xmax, ymax = (_number(bb, t, owhere) for t in ("xmin", "ymin", "xmax", "ymax"))
    box = (xmin - 1.0, ymin - 1.0, xmax, ymax)
    problem = box_problem(*box, width, height)
    if problem:
        raise DataError(f"{owhere}: {problem} (VOC bndbox {xmin:g},{ymin:g},{xmax:g},{ymax:g})")
    difficult = _text(obj, "difficult") or "0"
    if difficult not in ("0", "1"):
        raise DataError(f"{owhere}: <difficult> must be 0 or 1, got {difficult!r}")
    return box, mapped[0], mapped[1], difficult == "1", str(j)


def _png_class(value: int, class_names: list[str] | None, where: str) -> tuple[int, str]:
    name = (class_names[value] if value < len(class_names) else "") if class_names else ""
    mapped = (
        voc_category(name)
        if class_names
        else ((value, VOC_CLASSES[value - 1]) if 1 <= value <= len(VOC_CLASSES) else None)
    )
    if mapped is None:
        raise DataError(f"{where}: SegmentationClass value {value} ({name!r}) is not a VOC class")
    return mapped


def _majority_class(cls: np.ndarray, m: np.ndarray) -> int:
    vals = cls[m]
    vals = vals[(vals != 0) & (vals != 255)]
    return int(np.bincount(vals).argmax()) if vals.size else 0


def _instances_from_png(
    inst: np.ndarray, cls: np.ndarray, class_names: list[str] | None, where: str
) -> list[tuple[Any, ...]]:
    rows = []
    for v in np.unique(inst):
        if v in (0, 255):
            continue
        m = inst == v  # [H, W]
        c = _majority_class(cls, m)
        if c == 0:
            raise DataError(f"{where}: SegmentationObject instance {v} has no class in SegmentationClass")
        cid, name = _png_class(c, class_names, where)
        ys, xs = np.nonzero(m)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        rows.append((box, cid, name, False, False, rle_from_bitmap(m), f"png{int(v)}"))
    return rows


def _attach_masks(
    rows: list[tuple[Any, ...]],
    inst: np.ndarray,
    cls: np.ndarray | None,
    class_names: list[str] | None,
    where: str,
) -> list[tuple[Any, ...]]:
    values = [int(v) for v in np.unique(inst) if v not in (0, 255)]
    if values and values[-1] > len(rows):
        raise DataError(
            f"{where}: SegmentationObject has instance {values[-1]} but the XML has {len(rows)} objects "
            "(use instances='segmentation' for masks that do not follow the XML order)"
        )
    out = [list(r) for r in rows]
    for v in values:
        m = inst == v
        if cls is not None:
            c = _majority_class(cls, m)
            if c and _png_class(c, class_names, where)[0] != out[v - 1][1]:
                raise DataError(
                    f"{where}: SegmentationObject instance {v} is class {_png_class(c, class_names, where)[1]!r} "
                    f"in SegmentationClass but object {v - 1} is {out[v - 1][2]!r}"
                )
        problem = extent_problem(bitmap_extent(m), out[v - 1][0])  # type: ignore[arg-type]
        if problem:
            raise DataError(f"{where}: SegmentationObject instance {v} (object {v - 1}): {problem}")
        out[v - 1][5] = rle_from_bitmap(m)
    return [tuple(r) for r in out]
