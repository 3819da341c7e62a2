"""Rasterising objects onto a grid of cells of side ``stride`` in the training frame.

Rule (ours, stated): in the frame, a pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``. An object covers
a frame pixel if it overlaps it with positive area (more than :data:`EPS` px on each axis). A box
is its continuous rectangle scaled into the frame; a source-mask pixel ``(r, c)`` is the rectangle
``[c*sx, (c+1)*sx) x [r*sy, (r+1)*sy)`` with ``sx = out_w / width``, ``sy = out_h / height``. A cell
is positive iff it contains at least one covered frame pixel ("overlaps an object by >= 1 pixel").
Only pixels inside the resized image exist: padding cells are always negative. The grid is
``ceil(padded_h / stride) x ceil(padded_w / stride)``.

Fast paths: :func:`box_cells` (integer ranges + a 2-D difference array, O(K + cells)) and
:func:`rect_cells` (source-pixel rectangles, e.g. the runs of an RLE, through per-axis lookup tables
source index -> touched cells, then the same difference array: O(rectangles + cells), no bitmap).
:func:`mask_cells` (a full-resolution bitmap, separable cumulative sums, O(h*w)) is the previous
fast path, kept as a second reference; :func:`cells_reference` is the slow per-pixel reference with
the same meaning. Tests hold all of them together.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .frame import Frame

__all__ = ["EPS", "box_cells", "cells_reference", "grid_shape", "mask_cells", "rect_cells"]

EPS = 1e-6  # px: overlaps thinner than this (floating-point slivers) do not count


def grid_shape(frame: Frame, stride: int) -> tuple[int, int]:
    """-> (gh, gw) = ceil(padded_h / stride), ceil(padded_w / stride)."""
    return -(-frame.padded_h // stride), -(-frame.padded_w // stride)


def _pixel_ranges(lo: np.ndarray, hi: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous [lo, hi) (frame px) -> covered integer pixels [p0, p1), clipped to [0, limit)."""
    p0 = np.clip(np.floor(lo + EPS), 0, limit).astype(np.int64)
    p1 = np.clip(np.ceil(hi - EPS), 0, limit).astype(np.int64)
    return p0, p1


def box_cells(boxes: np.ndarray, frame: Frame, stride: int) -> np.ndarray:
    """boxes [K, 4] xyxy in frame px -> cells [gh, gw] bool touched by any box."""
    gh, gw = grid_shape(frame, stride)
    if len(boxes) == 0:
        return np.zeros((gh, gw), bool)
    x0, x1 = _pixel_ranges(boxes[:, 0], boxes[:, 2], frame.out_w)  # [K]
    y0, y1 = _pixel_ranges(boxes[:, 1], boxes[:, 3], frame.out_h)
    keep = (x1 > x0) & (y1 > y0)
    x0, x1, y0, y1 = x0[keep], x1[keep], y0[keep], y1[keep]
    c0, c1 = x0 // stride, (x1 - 1) // stride + 1  # cell columns [c0, c1)
    r0, r1 = y0 // stride, (y1 - 1) // stride + 1
    return _paint(r0, r1, c0, c1, gh, gw)


def _paint(r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Cell rectangles rows [r0, r1) x columns [c0, c1) ([K] each) -> their union [gh, gw] bool."""
    if len(r0) == 0:
        return np.zeros((gh, gw), bool)
    # 2-D difference array: +1 at (r0, c0) and (r1, c1), -1 at (r0, c1) and (r1, c0)
    w1 = gw + 1
    idx = np.concatenate([r0 * w1 + c0, r1 * w1 + c1, r0 * w1 + c1, r1 * w1 + c0])
    wts = np.concatenate([np.ones(2 * len(r0)), -np.ones(2 * len(r0))])
    diff = np.bincount(idx, weights=wts, minlength=(gh + 1) * w1).reshape(gh + 1, w1)
    return diff.cumsum(0).cumsum(1)[:gh, :gw] > 0.5


@lru_cache(maxsize=64)
def _touched_cells(n_src: int, limit: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (g0, g1) [n_src] each: source index c (of n_src, scaled onto ``limit`` frame px) touches
    cells [g0[c], g1[c]) at ``stride``. Both non-decreasing in c. Cached: read-only arrays."""
    scale = limit / n_src
    c = np.arange(n_src, dtype=np.float64)
    p0, p1 = _pixel_ranges(c * scale, (c + 1) * scale, limit)  # frame pixels covered by source index c
    assert (p1 > p0).all(), f"scale {scale} too small: a source pixel covers no frame pixel"
    g0, g1 = p0 // stride, (p1 - 1) // stride + 1
    g0.flags.writeable = g1.flags.writeable = False
    return g0, g1


def rect_cells(rects: np.ndarray, src_size: tuple[int, int], frame: Frame, stride: int) -> np.ndarray:
    """rects [Q, >=4] ``(c0, r0, c1, r1, ...)`` source px, ends exclusive, of an image of
    ``src_size`` (width, height) -> cells [gh, gw] bool of the frame holding a pixel of any of them.

    Same result as :func:`mask_cells` of the union bitmap: the cells a source pixel touches form a
    range that is non-decreasing in its index on each axis, so a rectangle of source pixels touches
    exactly the cell rectangle from its first pixel's first cell to its last pixel's last cell.
    """
    gh, gw = grid_shape(frame, stride)
    rects = rects[(rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])]
    gx0, gx1 = _touched_cells(src_size[0], frame.out_w, stride)
    gy0, gy1 = _touched_cells(src_size[1], frame.out_h, stride)
    c0, c1 = gx0[rects[:, 0]], gx1[rects[:, 2] - 1]
    r0, r1 = gy0[rects[:, 1]], gy1[rects[:, 3] - 1]
    return _paint(r0, r1, c0, c1, gh, gw)


def _reduce_axis(
    cum: np.ndarray, n_src: int, scale: float, limit: int, stride: int, n_cells: int
) -> np.ndarray:
    """cum [..., n_src + 1] (prefix sums along the last axis) -> any-per-cell [..., n_cells] bool."""
    c = np.arange(n_src, dtype=np.float64)
    p0, p1 = _pixel_ranges(c * scale, (c + 1) * scale, limit)  # frame pixels covered by source index c
    assert (p1 > p0).all(), f"scale {scale} too small: a source pixel covers no frame pixel"
    g0, g1 = p0 // stride, (p1 - 1) // stride + 1  # cells [g0, g1) touched by source index c
    g = np.arange(n_cells)
    # g0, g1 are non-decreasing in c, so the sources touching cell g are [cmin, cmax]
    cmin = np.searchsorted(g1, g, side="right")
    cmax = np.searchsorted(g0, g, side="right") - 1
    ok = cmin <= cmax
    lo, hi = np.where(ok, cmin, 0), np.where(ok, cmax + 1, 0)
    return ((cum[..., hi] - cum[..., lo]) > 0) & ok


def mask_cells(mask: np.ndarray, frame: Frame, stride: int) -> np.ndarray:
    """mask [h, w] bool in source px (the original image) -> cells [gh, gw] bool of the frame."""
    gh, gw = grid_shape(frame, stride)
    h, w = mask.shape
    if not mask.any():
        return np.zeros((gh, gw), bool)
    cum_x = np.zeros((h, w + 1), np.int32)
    np.cumsum(mask, axis=1, out=cum_x[:, 1:])
    cols = _reduce_axis(cum_x, w, frame.out_w / w, frame.out_w, stride, gw)  # [h, gw]
    cum_y = np.zeros((gw, h + 1), np.int32)
    np.cumsum(cols.T, axis=1, out=cum_y[:, 1:])
    return _reduce_axis(cum_y, h, frame.out_h / h, frame.out_h, stride, gh).T  # [gh, gw]


def cells_reference(
    boxes: np.ndarray, mask: np.ndarray | None, src_size: tuple[int, int], frame: Frame, stride: int
) -> np.ndarray:
    """Slow reference: paint every covered frame pixel, then any() per cell. boxes [K, 4] frame px,
    mask [h, w] source px or None, src_size (width, height) of the source image -> [gh, gw] bool."""
    gh, gw = grid_shape(frame, stride)
    pix = np.zeros((gh * stride, gw * stride), bool)  # frame pixels, padding included
    jx, iy = np.arange(frame.out_w), np.arange(frame.out_h)
    for x1, y1, x2, y2 in boxes:
        cover_x = (x1 < jx + 1 - EPS) & (x2 > jx + EPS)  # [out_w]
        cover_y = (y1 < iy + 1 - EPS) & (y2 > iy + EPS)  # [out_h]
        pix[: frame.out_h, : frame.out_w] |= cover_y[:, None] & cover_x[None, :]
    if mask is not None:
        w, h = src_size
        sx, sy = frame.out_w / w, frame.out_h / h
        c, r = np.arange(w), np.arange(h)
        mx = (c[None, :] * sx < jx[:, None] + 1 - EPS) & (
            (c[None, :] + 1) * sx > jx[:, None] + EPS
        )  # [out_w, w]
        my = (r[None, :] * sy < iy[:, None] + 1 - EPS) & (
            (r[None, :] + 1) * sy > iy[:, None] + EPS
        )  # [out_h, h]
        hits = (
            my.astype(np.float64) @ mask.astype(np.float64) @ mx.T.astype(np.float64)
        )  # [out_h, out_w] counts
        pix[: frame.out_h, : frame.out_w] |= hits > 0
    return pix.reshape(gh, stride, gw, stride).any(axis=(1, 3))
