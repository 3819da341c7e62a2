"""COCO compressed RLE read with numpy == pycocotools; invalid strings are named, never decoded."""

from __future__ import annotations

import numpy as np
import pytest

from spt_data.records import rle_from_bitmap
from spt_data.rle import decode_counts, rect_extent, rle_problem, run_rects


def _paint(rects: np.ndarray, n: int, height: int, width: int) -> np.ndarray:
    out = np.zeros((n, height, width), bool)
    for c0, r0, c1, r1, m in rects:
        out[m, r0:r1, c0:c1] = True
    return out


def _masks(rng: np.random.Generator, height: int, width: int) -> list[np.ndarray]:
    sparse = rng.random((height, width)) < 0.02
    blob = np.zeros((height, width), bool)
    blob[height // 4 : height - 2, 1 : width // 2] = True  # runs that span many columns
    return [
        sparse,
        blob,
        np.zeros((height, width), bool),  # empty: one background run
        np.ones((height, width), bool),  # full: a zero-length first run
        rng.random((height, width)) < 0.6,
    ]


@pytest.mark.parametrize("seed", range(6))
def test_decode_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    masks = _masks(rng, height, width)
    rles = [rle_from_bitmap(m) for m in masks]
    runs, owner = decode_counts([r.counts for r in rles])
    for n, (m, r) in enumerate(zip(masks, rles)):
        assert rle_problem(runs[owner == n], height, width) is None
        assert np.array_equal(r.decode(height, width), m)
    painted = _paint(run_rects(runs, owner, height), len(masks), height, width)
    assert np.array_equal(painted, np.stack(masks))


def test_large_counts_round_trip():
    m = np.zeros((720, 1280), bool)
    m[700:, 1000:] = True  # a first run of 1000 * 720 + 700 pixels: 5 groups
    runs, owner = decode_counts([rle_from_bitmap(m).counts])
    assert runs.tolist() == [1000 * 720 + 700, 20] + [700, 20] * 279
    assert rect_extent(run_rects(runs, owner, 720)) == (1000, 700, 1280, 720)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (b"garbage!", "character 'r' at 2 is outside '0'..'o'"),
        (b"0P", "it ends inside a number"),
        (b"PPPPPPPP0", "a number has more than 7 characters"),
    ],
)
def test_invalid_strings(counts, message):
    with pytest.raises(ValueError, match=message):
        decode_counts([b"00", counts])


def test_counts_must_sum_to_the_image():
    assert rle_problem(np.array([5, 3]), 3, 3) == "RLE run lengths sum to 8, not height*width = 3*3 = 9"
    assert rle_problem(np.array([10, -1]), 3, 3) == "RLE has a negative run length -1"
    assert rle_problem(np.array([], np.int64), 3, 3) is not None
