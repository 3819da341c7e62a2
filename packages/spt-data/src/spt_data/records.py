"""The one record schema every reader produces, and the checks a box must pass.

A :class:`Record` is one image: its path and size, K instances with boxes ``[K, 4]`` (xyxy, float64,
continuous pixel coordinates: the image spans ``[0, width] x [0, height]``, pixel ``(r, c)`` covers
``[c, c+1) x [r, r+1)``), category ids/names, crowd and ignore flags, and optional instance masks
(polygons or COCO compressed RLE). It also names where it came from (source file + record index).

Box validity (:func:`box_problem`): finite, ``x2 > x1`` and ``y2 > y1`` (zero area is an error), and
inside the image up to :data:`BOX_TOLERANCE` = 1 px: ``x1 >= -1``, ``y1 >= -1``, ``x2 <= width + 1``,
``y2 <= height + 1``, and the box must overlap the image (``x1 < width``, ``x2 > 0``, same for y).
Boxes within the tolerance are kept as given (never clipped); rasterisation only ever counts pixels
inside the image.

:func:`records_fingerprint` is a sha256 over what the selection labels are made from (image ids,
sizes, boxes, category ids, masks, in order): a labels file records it, and a reader of the labels
compares it with its records.
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "BOX_TOLERANCE",
    "Dataset",
    "Mask",
    "PolygonMask",
    "Record",
    "RleMask",
    "box_problem",
    "hflip_record",
    "records_fingerprint",
    "rle_from_bitmap",
]

BOX_TOLERANCE = 1.0  # px a box may extend past the image border before it is an error


def _decode(rle: dict) -> np.ndarray:
    """pycocotools RLE -> [H, W] bool (its numpy-2 ``copy=False`` DeprecationWarning silenced here only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*__array__ implementation doesn't accept a copy", category=DeprecationWarning
        )
        return mask_utils.decode(rle).astype(bool)


@dataclass(frozen=True, eq=False)
class PolygonMask:
    """Instance mask as polygons: rings of flat ``[x0, y0, x1, y1, ...]`` float64 arrays (COCO layout)."""

    rings: tuple[np.ndarray, ...]

    def rle(self, height: int, width: int) -> dict:
        """-> pycocotools compressed RLE of the union of the rings (COCO's own polygon semantics)."""
        return mask_utils.merge(mask_utils.frPyObjects([r.tolist() for r in self.rings], height, width))

    def rle_string(self, height: int, width: int) -> bytes:
        """-> compressed RLE counts of the rasterised polygon (see :meth:`rle`)."""
        return bytes(self.rle(height, width)["counts"])

    def decode(self, height: int, width: int) -> np.ndarray:
        """-> [height, width] bool, rasterised by pycocotools (COCO's own polygon semantics)."""
        return _decode(self.rle(height, width))


@dataclass(frozen=True, eq=False)
class RleMask:
    """Instance mask as COCO compressed RLE (``counts`` bytes, column-major) of an image ``size=(h, w)``."""

    counts: bytes
    size: tuple[int, int]

    def rle_string(self, height: int, width: int) -> bytes:
        """-> the compressed counts. The RLE size must equal the image size (readers check this)."""
        if tuple(self.size) != (height, width):
            raise ValueError(f"RLE size {list(self.size)} != image size [{height}, {width}]")
        return self.counts

    def decode(self, height: int, width: int) -> np.ndarray:
        """-> [height, width] bool. The RLE size must equal the image size (readers check this)."""
        return _decode({"size": list(self.size), "counts": self.rle_string(height, width)})


Mask: TypeAlias = PolygonMask | RleMask


def rle_from_bitmap(bitmap: np.ndarray) -> RleMask:
    """[H, W] bool/uint8 -> :class:`RleMask` (COCO compressed RLE)."""
    rle = mask_utils.encode(np.asfortranarray(bitmap.astype(np.uint8)))
    return RleMask(counts=bytes(rle["counts"]), size=(int(rle["size"][0]), int(rle["size"][1])))


@dataclass(frozen=True, eq=False)
class Record:
    """One image and its K instances. Arrays: boxes [K, 4] float64 xyxy px; category_ids, iscrowd, ignore [K]."""

    image_id: str
    image_path: str
    width: int
    height: int
    boxes: np.ndarray
    category_ids: np.ndarray
    category_names: tuple[str, ...]
    iscrowd: np.ndarray
    ignore: np.ndarray
    masks: tuple[Mask | None, ...]
    ann_ids: tuple[str, ...]
    source: str
    source_index: int
    extra: dict[str, str] = field(default_factory=dict)  # free-form strings, e.g. BDD videoName

    def __post_init__(self) -> None:
        k = len(self.category_names)
        assert self.boxes.shape == (k, 4), (self.boxes.shape, k)
        assert self.category_ids.shape == (k,) and self.iscrowd.shape == (k,) and self.ignore.shape == (k,)
        assert len(self.masks) == k and len(self.ann_ids) == k

    @property
    def num_instances(self) -> int:
        return len(self.category_names)

    @classmethod
    def build(
        cls,
        *,
        image_id: str,
        image_path: str,
        width: int,
        height: int,
        boxes: list[list[float]] | np.ndarray,
        category_ids: list[int] | np.ndarray,
        category_names: list[str] | tuple[str, ...],
        iscrowd: list[bool] | np.ndarray | None = None,
        ignore: list[bool] | np.ndarray | None = None,
        masks: list[Mask | None] | tuple[Mask | None, ...] | None = None,
        ann_ids: list[str] | tuple[str, ...] | None = None,
        source: str = "",
        source_index: int = -1,
        extra: dict[str, str] | None = None,
    ) -> Record:
        """Build a record from lists (missing flags default to False, masks to None, ann ids to 0..K-1)."""
        k = len(category_names)
        return cls(
            image_id=str(image_id),
            image_path=str(image_path),
            width=int(width),
            height=int(height),
            boxes=np.asarray(boxes, dtype=np.float64).reshape(k, 4),
            category_ids=np.asarray(category_ids, dtype=np.int64).reshape(k),
            category_names=tuple(category_names),
            iscrowd=np.zeros(k, bool) if iscrowd is None else np.asarray(iscrowd, dtype=bool).reshape(k),
            ignore=np.zeros(k, bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(k),
            masks=(None,) * k if masks is None else tuple(masks),
            ann_ids=tuple(str(i) for i in range(k)) if ann_ids is None else tuple(ann_ids),
            source=str(source),
            source_index=int(source_index),
            extra=dict(extra or {}),
        )

    @classmethod
    def from_instances(cls, instances: list[tuple[Any, ...]], **image: Any) -> Record:
        """Build from per-instance tuples ``(box xyxy, category_id, name, iscrowd, ignore, mask, ann_id)``
        and the image fields (image_id, image_path, width, height, source, source_index, extra)."""
        cols = list(zip(*instances)) if instances else [[] for _ in range(7)]
        return cls.build(
            boxes=np.asarray(cols[0], dtype=np.float64).reshape(-1, 4),
            category_ids=list(cols[1]),
            category_names=list(cols[2]),
            iscrowd=list(cols[3]),
            ignore=list(cols[4]),
            masks=list(cols[5]),
            ann_ids=list(cols[6]),
            **image,
        )


@dataclass
class Dataset:
    """What a reader returns: the records, the dataset's categories ``{id: name}`` and the skip count."""

    format: str
    records: list[Record]
    categories: dict[int, str]
    sources: list[str]
    num_skipped: int = 0


def box_problem(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> str | None:
    """Why box xyxy is invalid in a ``width x height`` image (see module doc), or None if it is valid."""
    for name, v in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
        if not math.isfinite(v):
            return f"box has a non-finite coordinate {name}={v}"
    if x2 < x1:
        return f"box x2={x2:g} < x1={x1:g}"
    if y2 < y1:
        return f"box y2={y2:g} < y1={y1:g}"
    if x2 == x1 or y2 == y1:
        return f"box has zero area (x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g})"
    tol = BOX_TOLERANCE
    if x1 < -tol:
        return f"box x1={x1:g} < 0 (tolerance {tol:g} px)"
    if y1 < -tol:
        return f"box y1={y1:g} < 0 (tolerance {tol:g} px)"
    if x2 > width + tol:
        return f"box x2={x2:g} > width {width} (tolerance {tol:g} px)"
    if y2 > height + tol:
        return f"box y2={y2:g} > height {height} (tolerance {tol:g} px)"
    if x1 >= width or x2 <= 0 or y1 >= height or y2 <= 0:
        return f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image"
    return None


def hflip_record(record: Record) -> Record:
    """The record of the horizontally flipped image: x -> width - x for boxes; masks mirrored pixel-exactly.

    Masks come back as RLE (polygons are rasterised first: polygon rasterisation is not
    mirror-symmetric at edge pixels, a flipped bitmap is).
    """
    w = record.width
    boxes = record.boxes.copy()
    boxes[:, [0, 2]] = w - record.boxes[:, [2, 0]]  # [K, 4]
    masks = tuple(
        None if m is None else rle_from_bitmap(m.decode(record.height, w)[:, ::-1]) for m in record.masks
    )
    return Record(
        image_id=record.image_id,
        image_path=record.image_path,
        width=w,
        height=record.height,
        boxes=boxes,
        category_ids=record.category_ids.copy(),
        category_names=record.category_names,
        iscrowd=record.iscrowd.copy(),
        ignore=record.ignore.copy(),
        masks=masks,
        ann_ids=record.ann_ids,
        source=record.source,
        source_index=record.source_index,
        extra={**record.extra, "hflip": "1"},
    )


def _mask_bytes(mask: Mask | None) -> bytes:
    if mask is None:
        return b"N"
    if isinstance(mask, RleMask):
        return b"R" + struct.pack("<q", len(mask.counts)) + mask.counts
    rings = [np.ascontiguousarray(r, dtype="<f8").tobytes() for r in mask.rings]
    return b"P" + b"".join(struct.pack("<q", len(r)) + r for r in rings)


def records_fingerprint(records: Iterable[Record], *, sizes_only: bool = False) -> str:
    """sha256 (hex) over each record's image id, width and height and, unless ``sizes_only``, its
    boxes, category ids and masks, in order: equal for the same records read from any copy of a file."""
    h = hashlib.sha256()
    for r in records:
        image_id = r.image_id.encode("utf-8")
        h.update(struct.pack("<qqq", len(image_id), r.width, r.height) + image_id)
        if sizes_only:
            continue
        h.update(struct.pack("<q", r.num_instances))
        h.update(np.ascontiguousarray(r.boxes, dtype="<f8").tobytes())  # [K, 4]
        h.update(np.ascontiguousarray(r.category_ids, dtype="<i8").tobytes())  # [K]
        for m in r.masks:
            h.update(_mask_bytes(m))
    return h.hexdigest()
