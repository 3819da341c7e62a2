"""Records Parquet: every field survives a round trip; a wrong schema version is refused."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from spt_data import DataError, Dataset, PolygonMask, Record, read_records, write_records
from spt_data.records import rle_from_bitmap


def test_round_trip(tmp_path):
    bitmap = np.zeros((30, 40), bool)
    bitmap[3:9, 5:7] = True
    rec = Record.build(
        image_id="img 1",
        image_path="/data/img 1.jpg",
        width=40,
        height=30,
        boxes=[[1.5, 2, 10, 12.25], [5, 3, 7, 9], [0, 0, 40, 30]],
        category_ids=[3, 1, 7],
        category_names=["car", "pedestrian", "motorcycle"],
        iscrowd=[False, True, False],
        ignore=[True, False, False],
        masks=[
            PolygonMask((np.array([1.5, 2, 10, 2, 10, 12.25]), np.array([3.0, 3, 4, 4, 3, 5]))),
            rle_from_bitmap(bitmap),
            None,
        ],
        ann_ids=["a", "b", "c"],
        source="labels.json",
        source_index=4,
        extra={"videoName": "v"},
    )
    empty = Record.build(
        image_id="e",
        image_path="e.jpg",
        width=8,
        height=8,
        boxes=np.zeros((0, 4)),
        category_ids=[],
        category_names=[],
    )
    path = tmp_path / "records.parquet"
    write_records(
        path, Dataset("bdd", [rec, empty], {1: "pedestrian", 3: "car", 7: "motorcycle"}, ["labels.json"])
    )
    ds = read_records(path)
    assert ds.format == "bdd" and ds.categories == {1: "pedestrian", 3: "car", 7: "motorcycle"}
    got, got_empty = ds.records
    for f in (
        "image_id",
        "image_path",
        "width",
        "height",
        "category_names",
        "ann_ids",
        "source",
        "source_index",
        "extra",
    ):
        assert getattr(got, f) == getattr(rec, f), f
    for f in ("boxes", "category_ids", "iscrowd", "ignore"):
        assert np.array_equal(getattr(got, f), getattr(rec, f)), f
    for a, b in zip(got.masks[:2], rec.masks[:2]):
        assert np.array_equal(a.decode(30, 40), b.decode(30, 40))
    assert got.masks[2] is None
    assert got_empty.num_instances == 0 and got_empty.boxes.shape == (0, 4)


def test_wrong_schema_version(tmp_path):
    path = tmp_path / "records.parquet"
    write_records(path, Dataset("coco", [], {}, []))
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"spt_data.schema_version": b"99"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(DataError, match=r"records.parquet: records schema version '99', this reader needs 1"):
        read_records(path)
