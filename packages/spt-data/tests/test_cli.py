"""``spt-data`` end to end in a temp dir: synth -> convert -> labels -> subset -> stats, and error handling."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from spt_data import (
    object_ratio,
    read_labels,
    read_manifest,
    read_records,
    records_fingerprint,
    resize_policy,
    selection_labels,
)
from spt_data.cli import main


def test_pipeline_end_to_end(tmp_path, capsys):
    raw, rec, lab, man, stats = (
        tmp_path / n for n in ("raw", "rec.parquet", "lab.parquet", "man.csv", "stats.json")
    )
    assert (
        main(
            [
                "--no-progress",
                "synth",
                "--out",
                str(raw),
                "--num-images",
                "12",
                "--seed",
                "5",
                "--size",
                "160x96",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--no-progress",
                "convert",
                "--format",
                "bdd",
                "--ann",
                str(raw / "labels" / "train.json"),
                "--images",
                str(raw / "images" / "train"),
                "--out",
                str(rec),
            ]
        )
        == 0
    )
    rec_coco = tmp_path / "rec_coco.parquet"
    rec_small = tmp_path / "rec_small.parquet"
    assert (
        main(
            [
                "convert",
                "--format",
                "coco",
                "--ann",
                str(raw / "annotations" / "instances_train.json"),
                "--images",
                str(raw / "images" / "train"),
                "--out",
                str(rec_coco),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--no-progress",
                "labels",
                "--records",
                str(rec),
                "--out",
                str(lab),
                "--short",
                "192",
                "--long",
                "640",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *("--no-progress", "subset", "--records", str(rec), "--out", str(man)),
                *("--max-ratio", "0.25", "--records-out", str(rec_small)),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "stats",
                "--records",
                str(rec),
                "--labels",
                str(lab),
                "--manifest",
                str(man),
                "--out",
                str(stats),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote 12 images" in out and "12 records, 0 skipped" in out and "36 grids" in out

    records = read_records(rec).records
    assert len(records) == 12 and [r.image_path for r in records] == [
        r.image_path for r in read_records(rec_coco).records
    ]
    labels = read_labels(lab)
    assert len(labels) == 36 and labels.params["short"] == 192
    assert labels.params["records"] == str(rec) and labels.records_fingerprint == records_fingerprint(records)
    for r in records:
        frame = resize_policy(r.width, r.height, short=192, long=640, pad_to=32)
        assert frame.out_w == 320
        for s, grid in selection_labels(r, frame).items():
            assert np.array_equal(labels.grid(r.image_id, s), grid)
    rows = read_manifest(man)
    assert [row["ratio"] for row in rows] == pytest.approx([object_ratio(r) for r in records])
    assert [row["in_subset"] for row in rows] == [object_ratio(r) < 0.25 for r in records]
    small = read_records(rec_small)
    assert [r.image_id for r in small.records] == [r.image_id for r in records if object_ratio(r) < 0.25]
    assert small.categories == read_records(rec).categories
    summary = json.loads(stats.read_text())
    assert summary["records"]["images"] == 12
    assert summary["records"]["instances"] == sum(r.num_instances for r in records)
    assert summary["manifest"]["in_subset"] == sum(row["in_subset"] for row in rows)
    assert set(summary["labels"]) == {"stride_8", "stride_16", "stride_32"}


def _broken_coco(tmp_path, write_jpeg, write_json):
    write_jpeg(tmp_path / "img" / "a.jpg", 64, 48)
    write_jpeg(tmp_path / "img" / "b.jpg", 64, 48)
    return write_json(
        tmp_path / "instances.json",
        {
            "images": [
                {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [60, 1, 50, 5]},  # x2 = 110 > 64
            ],
            "categories": [{"id": 1, "name": "car"}],
        },
    )


def test_convert_on_error(tmp_path, write_jpeg, write_json, caplog, capsys):
    ann = _broken_coco(tmp_path, write_jpeg, write_json)
    out = tmp_path / "rec.parquet"
    args = [
        "--no-progress",
        "convert",
        "--format",
        "coco",
        "--ann",
        str(ann),
        "--images",
        str(tmp_path / "img"),
        "--out",
        str(out),
    ]
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert main(args) == 2  # raise (default): exit code 2, message logged, nothing written
    assert not out.exists()
    assert any(
        "annotation 1 (id 2) of image 'b.jpg': box x2=110 > width 64" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert main([*args, "--on-error", "skip"]) == 0
    assert "1 records, 1 image skipped" in capsys.readouterr().out
    assert [r.image_id for r in read_records(out).records] == ["1"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("skipped image: ") and "b.jpg" in m for m in messages)
    assert "1 image skipped (each logged above)" in messages
