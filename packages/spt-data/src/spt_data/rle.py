"""COCO compressed RLE read with numpy: counts strings -> run lengths -> pixel rectangles.

A COCO RLE of an ``h x w`` mask lists run lengths of the column-major pixel sequence, alternating
background and foreground and starting with background; they must be non-negative and sum to
``h * w``. The compressed string (pycocotools ``rleToString``) writes each run as a little-endian
sequence of 5-bit groups in the characters ``'0'..'o'`` (``0x20`` = another group follows, ``0x10``
in the last group = negative), and from the fourth run on stores the difference to the run two
places before. :func:`decode_counts` undoes this for many strings at once, without a Python loop;
:func:`run_rects` turns the foreground runs into at most three pixel rectangles each (the part of
the first column, the full columns between, the part of the last column), which is all that
labels and extent checks need: no ``h x w`` bitmap is ever made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_GROUPS", "decode_counts", "rect_extent", "rle_problem", "run_rects"]

MAX_GROUPS = 7  # 5-bit groups per number: 7 hold 2**34, far above any image's pixel count


def _chains(vals: np.ndarray, j: np.ndarray, parity: int, first: int) -> None:
    """In place: vals[j >= first, j % 2 == parity] <- running sum along each mask's chain."""
    pos = np.flatnonzero((j % 2 == parity) & (j >= first))
    if pos.size == 0:
        return
    v = vals[pos]
    cs = np.cumsum(v)
    start = np.maximum.accumulate(np.where(j[pos] == first, np.arange(pos.size), 0))  # chain start
    vals[pos] = cs - cs[start] + v[start]


def decode_counts(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Compressed RLE strings -> (run lengths [R] int64, index of the string of each run [R] int64).

    Raises ValueError (message to follow 'invalid RLE counts string: ') for a character outside ``'0'..'o'``, a number cut off at the end of a
    string, or one longer than :data:`MAX_GROUPS` groups. Counts are not checked here (see
    :func:`rle_problem`).
    """
    lens = np.fromiter((len(s) for s in strings), np.int64, len(strings))
    c = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48  # [n chars]
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if ((c < 0) | (c > 63)).any():
        bad = int(np.flatnonzero((c < 0) | (c > 63))[0])
        ends = np.cumsum(lens)
        n = int(np.searchsorted(ends, bad, side="right"))  # the string holding it
        at = bad - int(ends[n] - lens[n])
        raise ValueError(f"character {chr(c[bad] + 48)!r} at {at} is outside '0'..'o'")
    end = (c & 0x20) == 0  # last group of a number
    ends_at = np.cumsum(lens)[lens > 0] - 1
    if not end[ends_at].all():
        raise ValueError("it ends inside a number")
    starts = np.flatnonzero(np.concatenate([[True], end[:-1]]))  # first char of each number
    group = np.cumsum(np.concatenate([[0], end[:-1]]))  # number of each char
    k = np.arange(c.size) - starts[group]  # position of the char within its number
    if k.max() >= MAX_GROUPS:
        raise ValueError(f"a number has more than {MAX_GROUPS} characters")
    vals = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    last = np.flatnonzero(end)
    neg = (c[last] & 0x10) != 0
    vals[neg] -= np.int64(1) << (5 * (k[last][neg] + 1))  # sign-extend
    owner = np.repeat(np.arange(len(strings)), lens)[starts]  # [R] string of each run
    first = np.searchsorted(owner, owner, side="left")
    j = np.arange(owner.size) - first  # index of the run within its string
    _chains(vals, j, 1, 1)  # run j >= 3 stored as a difference to run j - 2
    _chains(vals, j, 0, 2)
    return vals, owner


def rle_problem(counts: np.ndarray, height: int, width: int) -> str | None:
    """Why decoded run lengths [R] are not a valid ``height x width`` RLE, or None."""
    if (counts < 0).any():
        return f"RLE has a negative run length {int(counts[counts < 0][0])}"
    total = int(counts.sum())
    if total != height * width:
        return f"RLE run lengths sum to {total}, not height*width = {height}*{width} = {height * width}"
    return None


def run_rects(counts: np.ndarray, owner: np.ndarray, height: int) -> np.ndarray:
    """Run lengths [R] of column-major RLEs (``owner`` [R]: mask of each run) of masks ``height`` px
    tall -> foreground pixel rectangles [Q, 5] int64 ``(c0, r0, c1, r1, mask)``, ends exclusive."""
    pos = np.cumsum(counts) - counts  # [R] start of each run, counted over all masks
    first = np.searchsorted(owner, owner, side="left")
    start = pos - pos[first]  # start within its own mask
    j = np.arange(counts.size) - first
    fg = (j % 2 == 1) & (counts > 0)
    s, e, m = start[fg], start[fg] + counts[fg], owner[fg]  # [F] linear [s, e)
    x0, y0 = s // height, s % height
    x1, y1 = (e - 1) // height, (e - 1) % height
    one = x0 == x1
    head = np.stack([x0, y0, x0 + 1, np.where(one, y1 + 1, height), m], 1)
    mid = np.stack([x0 + 1, 0 * x0, x1, 0 * x0 + height, m], 1)[x1 > x0 + 1]
    tail = np.stack([x1, 0 * x1, x1 + 1, y1 + 1, m], 1)[~one]
    return np.concatenate([head, mid, tail])


def rect_extent(rects: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rectangles [Q, >=4] ``(c0, r0, c1, r1, ...)`` -> their extent xyxy px, or None if there are none."""
    if rects.size == 0:
        return None
    return (
        int(rects[:, 0].min()),
        int(rects[:, 1].min()),
        int(rects[:, 2].max()),
        int(rects[:, 3].max()),
    )
