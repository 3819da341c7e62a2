"""Bad masks never pass silently: each case raises a DataError with the exact message naming the file
and the record, or with ``on_error="skip"`` is counted and logged while the good record is kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spt_data import DataError, RleMask, read_bdd, read_coco, read_records, write_records
from spt_data.records import rle_from_bitmap


def _jpeg(path: Path, w: int = 128, h: int = 96) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, format="JPEG")


def _rect_rle(x0: int, y0: int, x1: int, y1: int) -> str:
    m = np.zeros((96, 128), bool)
    m[y0:y1, x0:x1] = True
    return rle_from_bitmap(m).counts.decode()


def _coco(tmp: Path, segmentation: Any) -> Callable[[str], Any]:
    for n in ("a", "b"):
        _jpeg(tmp / "img" / f"{n}.jpg")
    data = {
        "images": [
            {"id": i, "file_name": f"{n}.jpg", "width": 128, "height": 96} for i, n in ((1, "a"), (2, "b"))
        ],
        "annotations": [
            {
                "id": 4711,
                "image_id": 1,
                "category_id": 3,
                "bbox": [10, 10, 20, 20],
                "segmentation": segmentation,
            },
            {"id": 4712, "image_id": 2, "category_id": 3, "bbox": [10, 10, 20, 20]},
        ],
        "categories": [{"id": 3, "name": "car"}],
    }
    (tmp / "instances.json").write_text(json.dumps(data))
    return lambda on_error: read_coco(tmp / "instances.json", tmp / "img", on_error=on_error)


def _bdd(tmp: Path, **mask: Any) -> Callable[[str], Any]:
    for n in ("a", "b"):
        _jpeg(tmp / "img" / f"{n}.jpg")
    box = {"x1": 10, "y1": 10, "x2": 49, "y2": 39}  # inclusive: the continuous box 10, 10, 50, 40
    frames = [
        {"name": "a.jpg", "labels": [{"id": "7", "category": "car", "box2d": box, **mask}]},
        {"name": "b.jpg", "labels": [{"id": "8", "category": "car", "box2d": box}]},
    ]
    (tmp / "det.json").write_text(json.dumps(frames))
    return lambda on_error: read_bdd(tmp / "det.json", tmp / "img", on_error=on_error)


def _rle(counts: str, size: tuple[int, int] = (96, 128)) -> dict[str, Any]:
    return {"size": list(size), "counts": counts}


A0 = "instances.json: annotation 0 (id 4711) of image 'a.jpg': "
L0 = "det.json: frame 0 ('a.jpg'): label 0 (id 7): "
HALF = _rect_rle(10, 10, 50, 40)[: len(_rect_rle(10, 10, 50, 40)) // 2]
CASES: dict[str, tuple[Callable[[Path], Callable[[str], Any]], str]] = {
    "coco rle counts do not sum to h*w": (
        lambda t: _coco(t, _rle("0P1")),
        A0 + "RLE run lengths sum to 32, not height*width = 96*128 = 12288",
    ),
    "coco rle of another image's size": (
        lambda t: _coco(t, _rle("0P1", (720, 1280))),
        A0 + "segmentation RLE size [720, 1280] != image size [96, 128]",
    ),
    "coco garbage rle": (
        lambda t: _coco(t, _rle("garbage!")),
        A0 + "invalid RLE counts string: character 'r' at 2 is outside '0'..'o'",
    ),
    "coco rle with a non-ascii character": (
        lambda t: _coco(t, _rle("0é")),
        A0 + "invalid RLE counts string: it has a non-ASCII character",
    ),
    "coco polygon outside the image": (
        lambda t: _coco(t, [[200, 200, 220, 200, 220, 220]]),
        A0 + "polygon 0 point 0 (x=200, y=200) lies outside the 128x96 image (tolerance 1 px)",
    ),
    "coco polygon of two points": (
        lambda t: _coco(t, [[10, 10, 20, 20]]),
        A0 + "segmentation polygon 0 has 4 coordinates (need an even number >= 6)",
    ),
    "coco polygon not numeric": (
        lambda t: _coco(t, [[10, 10, "20", 20, 30, 30]]),
        A0 + "segmentation polygon 0 is not an array of numbers",
    ),
    "coco polygon with no pixel": (
        lambda t: _coco(t, [[10, 10, 10.2, 10, 10.2, 10.2]]),
        A0 + "mask is empty (no pixel inside the image)",
    ),
    "coco mask far from its box": (
        lambda t: _coco(t, _rle(_rect_rle(60, 60, 100, 90))),
        A0 + "mask extent (60, 60, 100, 90) disagrees with box (10, 10, 30, 30): x1 differs by 50 px "
        "(tolerance 6 px: 4 px + 10% of the box width)",
    ),
    "bdd rle cut to half its length": (
        lambda t: _bdd(t, rle=_rle(HALF)),
        L0 + "RLE run lengths sum to 2794, not height*width = 96*128 = 12288",
    ),
    "bdd garbage rle": (
        lambda t: _bdd(t, rle=_rle("not an rle")),
        L0 + "invalid RLE counts string: character 't' at 2 is outside '0'..'o'",
    ),
    "bdd mask covers half its box": (
        lambda t: _bdd(t, rle=_rle(_rect_rle(10, 10, 30, 40))),
        L0 + "mask extent (10, 10, 30, 40) disagrees with box (10, 10, 50, 40): x2 differs by 20 px "
        "(tolerance 8 px: 4 px + 10% of the box width)",
    ),
    "bdd poly2d outside the image": (
        lambda t: _bdd(
            t, poly2d=[{"vertices": [[10, 10], [300, 10], [10, 30]], "types": "LLL", "closed": True}]
        ),
        L0 + "polygon 0 point 1 (x=300, y=10) lies outside the 128x96 image (tolerance 1 px)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_mask_raises_exact_message(name, tmp_path):
    make, message = CASES[name]
    with pytest.raises(DataError) as info:
        make(tmp_path)("raise")
    assert str(info.value).endswith(message), str(info.value)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_mask_skipped_and_logged(name, tmp_path, caplog):
    make, message = CASES[name]
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        ds = make(tmp_path)("skip")
    assert ds.num_skipped == 1 and [r.image_id for r in ds.records] == [ds.records[0].image_id]
    assert len(ds.records) == 1 and ds.records[0].image_path.endswith("b.jpg")
    assert any(r.getMessage().endswith(message) for r in caplog.records)


def test_records_file_with_a_bad_rle_is_an_error(tmp_path):
    ds = _coco(tmp_path, _rle(_rect_rle(10, 10, 30, 30)))("raise")
    rec = ds.records[0]
    bad = type(rec)(**{**rec.__dict__, "masks": (RleMask(b"0P1", (96, 128)),)})
    ds.records[0] = bad
    write_records(tmp_path / "records.parquet", ds)  # a file written by hand or an older version
    with pytest.raises(DataError) as info:
        read_records(tmp_path / "records.parquet")
    assert str(info.value) == (
        f"{tmp_path / 'records.parquet'}: row 0 (image '1'): instance 0 (annotation 4711): "
        "RLE run lengths sum to 32, not height*width = 96*128 = 12288"
    )
