"""The checks an instance mask must pass when it is read, so that a bad mask never moves labels.

- RLE: a valid compressed string (:mod:`.rle`), run lengths non-negative and summing to
  ``height * width``; its ``size`` equals the image's (checked by the readers, which know the size).
- Polygon: every vertex inside the image up to :data:`~.records.BOX_TOLERANCE` (1 px, as boxes);
  rings of at least 3 numeric points (checked by the readers, which know the layout).
- Any mask: not empty, and its extent (the box of its pixels) agrees with the instance's box: each
  side within ``MASK_BOX_TOLERANCE_PX + MASK_BOX_TOLERANCE_FRACTION * box side`` (4 px + 10 % of the
  box's width for x1/x2, of its height for y1/y2). Real COCO polygons stray up to ~6.5 px from
  their rounded boxes; a cut or foreign mask strays by tens of pixels.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from .records import BOX_TOLERANCE, Mask, PolygonMask
from .rle import decode_counts, rect_extent, rle_problem, run_rects

__all__ = [
    "MASK_BOX_TOLERANCE_FRACTION",
    "MASK_BOX_TOLERANCE_PX",
    "bitmap_extent",
    "extent_problem",
    "mask_extent",
    "rle_string_problem",
]

MASK_BOX_TOLERANCE_PX = 4.0
MASK_BOX_TOLERANCE_FRACTION = 0.1

Extent = tuple[float, float, float, float]


def rle_string_problem(counts: bytes, height: int, width: int) -> str | None:
    """Why a compressed RLE string is not a valid ``height x width`` mask, or None."""
    try:
        runs, _ = decode_counts([counts])
    except ValueError as e:
        return f"invalid RLE counts string: {e}"
    return rle_problem(runs, height, width)


def _polygon_problem(mask: PolygonMask, height: int, width: int) -> str | None:
    tol = BOX_TOLERANCE
    for j, ring in enumerate(mask.rings):
        xy = ring.reshape(-1, 2)  # [P, 2]
        out = (xy[:, 0] < -tol) | (xy[:, 0] > width + tol) | (xy[:, 1] < -tol) | (xy[:, 1] > height + tol)
        if out.any():
            p = int(np.flatnonzero(out)[0])
            return (
                f"polygon {j} point {p} (x={xy[p, 0]:g}, y={xy[p, 1]:g}) lies outside the "
                f"{width}x{height} image (tolerance {tol:g} px)"
            )
    return None


def bitmap_extent(bitmap: np.ndarray) -> Extent | None:
    """[H, W] bool -> extent xyxy px of its pixels, or None if it is empty."""
    ys, xs = np.nonzero(bitmap)
    if xs.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def mask_extent(mask: Mask, height: int, width: int) -> tuple[Extent | None, str | None]:
    """-> (extent xyxy px of the mask's pixels, None) or (None, problem). Empty masks are a problem."""
    if isinstance(mask, PolygonMask):
        problem = _polygon_problem(mask, height, width)
        if problem:
            return None, problem
        x, y, w, h = (float(v) for v in mask_utils.toBbox(mask.rle(height, width)))
        ext = (x, y, x + w, y + h) if w > 0 and h > 0 else None
    else:
        if tuple(mask.size) != (height, width):
            return None, f"RLE size {list(mask.size)} != image size [{height}, {width}]"
        try:
            runs, owner = decode_counts([mask.counts])
        except ValueError as e:
            return None, f"invalid RLE counts string: {e}"
        problem = rle_problem(runs, height, width)
        if problem:
            return None, problem
        e = rect_extent(run_rects(runs, owner, height))
        ext = None if e is None else tuple(float(v) for v in e)  # type: ignore[assignment]
    if ext is None:
        return None, "mask is empty (no pixel inside the image)"
    return ext, None


def extent_problem(extent: Extent, box: Extent) -> str | None:
    """Why a mask's extent disagrees with its box beyond the tolerance (module doc), or None."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    for i, name in enumerate(("x1", "y1", "x2", "y2")):
        side, axis = (bw, "width") if i % 2 == 0 else (bh, "height")
        tol = MASK_BOX_TOLERANCE_PX + MASK_BOX_TOLERANCE_FRACTION * side
        if abs(extent[i] - box[i]) > tol:
            ext = ", ".join(f"{v:g}" for v in extent)
            bx = ", ".join(f"{v:g}" for v in box)
            return (
                f"mask extent ({ext}) disagrees with box ({bx}): {name} differs by "
                f"{abs(extent[i] - box[i]):g} px (tolerance {tol:.3g} px: {MASK_BOX_TOLERANCE_PX:g} px + "
                f"{MASK_BOX_TOLERANCE_FRACTION:.0%} of the box {axis})"
            )
    return None
