"""Object-to-pixel ratio and subset manifests."""

from __future__ import annotations

import numpy as np
import pytest

from spt_data import Record, object_ratio, read_manifest, subset_manifest, write_manifest
from spt_data.records import rle_from_bitmap


def _rec(image_id, width, height, boxes, masks=None):
    return Record.build(
        image_id=image_id,
        image_path=f"{image_id}.jpg",
        width=width,
        height=height,
        boxes=np.asarray(boxes, float).reshape(-1, 4),
        category_ids=[1] * len(boxes),
        category_names=["car"] * len(boxes),
        masks=masks,
    )


def test_ratio_is_the_union_of_object_pixels():
    # two overlapping 10x10 boxes in a 40x20 image: union 10*10 + 10*10 - 5*5 = 175 px
    rec = _rec("a", 40, 20, [[0, 0, 10, 10], [5, 5, 15, 15]])
    assert object_ratio(rec) == pytest.approx(175 / 800)
    # a fractional box covers every pixel it overlaps: [0.5, 2.5) x [0, 1) touches 3 pixels
    assert object_ratio(_rec("b", 10, 10, [[0.5, 0, 2.5, 1]])) == pytest.approx(3 / 100)
    assert object_ratio(_rec("c", 10, 10, [])) == 0.0


def test_masks_count_instead_of_their_boxes():
    m = np.zeros((20, 40), bool)
    m[2:4, 3:8] = True  # 10 px inside a 10x10 box
    rec = _rec("a", 40, 20, [[0, 0, 10, 10]], [rle_from_bitmap(m)])
    assert object_ratio(rec) == pytest.approx(10 / 800)
    assert object_ratio(rec, use_masks=False) == pytest.approx(100 / 800)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_round_trip(tmp_path, suffix):
    recs = [
        _rec("small", 40, 20, [[0, 0, 10, 10]]),  # 0.125
        _rec("edge", 40, 20, [[0, 0, 20, 10]]),  # exactly 0.25: not < 0.25
        _rec("big", 40, 20, [[0, 0, 40, 20]]),  # 1.0
        _rec("empty", 40, 20, []),  # 0.0
    ]
    rows = subset_manifest(recs, max_ratio=0.25)
    assert [r["in_subset"] for r in rows] == [True, False, False, True]
    assert [r["ratio"] for r in rows] == [0.125, 0.25, 1.0, 0.0]
    path = tmp_path / f"m{suffix}"
    write_manifest(path, rows, {"max_ratio": 0.25})
    back = read_manifest(path)
    assert back == rows
