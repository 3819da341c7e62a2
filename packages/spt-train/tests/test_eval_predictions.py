"""Predictions files: COCO results and BDD/Scalabel frames on the ground truth's own ids; bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spt_data import Dataset, Record, write_records
from spt_data.records import rle_from_bitmap
from spt_train.evaluation import evaluate_predictions, format_summary, load_predictions


def _dataset(ids=("42", "43"), fmt="coco") -> Dataset:
    mask = np.zeros((80, 100), bool)
    mask[10:30, 20:60] = True
    recs = [
        Record.build(
            image_id=iid, image_path=f"{iid}.jpg", width=100, height=80, boxes=[[20, 10, 60, 30]],
            category_ids=[3], category_names=["car"], masks=[rle_from_bitmap(mask)], source="gt.json",
            source_index=i,
        )
        for i, iid in enumerate(ids)
    ]  # fmt: skip
    return Dataset(fmt, recs, {1: "pedestrian", 3: "car"}, ["gt.json"])


def _write(tmp_path: Path, data, name="pred.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_coco_results_keep_the_gt_ids(tmp_path):
    preds = [{"image_id": 43, "category_id": 3, "bbox": [20, 10, 40, 20], "score": 0.5}]
    got = load_predictions(_write(tmp_path, preds), _dataset())
    assert got == [{"image_id": 43, "category_id": 3, "score": 0.5, "bbox": [20.0, 10.0, 40.0, 20.0]}]


def test_bdd_frames_by_name_and_category_name(tmp_path):
    """box2d corners are inclusive pixels, as in BDD ground truth: width x2 - x1 + 1."""
    ds = _dataset(("f-1.jpg", "f-2.jpg"), "bdd")
    frames = {"frames": [{"name": "f-2.jpg", "labels": [
        {"category": " Car", "box2d": {"x1": 20, "y1": 10, "x2": 59, "y2": 29}, "score": 0.9}]}]}  # fmt: skip
    (got,) = load_predictions(_write(tmp_path, frames), ds)
    assert got == {"image_id": 2, "category_id": 3, "score": 0.9, "bbox": [20.0, 10.0, 40.0, 20.0]}


def test_evaluate_bdd_frames_end_to_end(tmp_path):
    ds = _dataset(("f-1.jpg", "f-2.jpg"), "bdd")
    write_records(tmp_path / "gt.parquet", ds)
    box = {"x1": 20, "y1": 10, "x2": 59, "y2": 29}
    frames = [
        {"name": n, "labels": [{"category": "car", "box2d": box, "score": 0.9}]}
        for n in ("f-1.jpg", "f-2.jpg")
    ]
    for metric, key in (("coco", "bbox"), ("voc", "voc")):
        m = evaluate_predictions(tmp_path / "gt.parquet", _write(tmp_path, frames), metric)
        ap = m[key]["AP"] if metric == "coco" else m[key]["AP50"]
        assert ap == pytest.approx(1.0)
        assert m[key]["per_class"]["pedestrian"]["AP" if metric == "coco" else "AP50"] is None  # NaN -> null
        json.dumps(m, allow_nan=False)
        assert "car" in format_summary(m)


def test_segmentation_predictions_are_scored_as_segm(tmp_path):
    ds = _dataset()
    write_records(tmp_path / "gt.parquet", ds)
    rle = ds.records[0].masks[0]
    preds = [{"image_id": i, "category_id": 3, "score": 0.9, "segmentation": {"size": [80, 100], "counts": rle.counts.decode()}}
             for i in (42, 43)]  # fmt: skip
    m = evaluate_predictions(tmp_path / "gt.parquet", _write(tmp_path, preds))
    assert m["segm"]["AP"] == pytest.approx(1.0) and "bbox" not in m


@pytest.mark.parametrize(
    ("preds", "message"),
    [
        ([{"image_id": 42, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5},
          {"image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5}],
         "prediction 1: unknown image_id 7 (not an image of the ground truth)"),
        ([{"image_id": 42, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5}],
         "prediction 0 (image_id 42): unknown category_id 2 (not a category of the ground truth)"),
        ([{"image_id": 42, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5},
          {"image_id": 42, "category_id": 3, "score": 0.5}],
         "prediction 1: missing 'bbox'"),
        ([{"image_id": 42, "category_id": 3, "bbox": [0, 0, 5], "score": 0.5}],
         "prediction 0: 'bbox' must be 4 finite numbers [x, y, w, h], got [0, 0, 5]"),
        ([{"image_id": 42, "category_id": 3, "bbox": [0, 0, 5, 5], "score": "high"}],
         "prediction 0: 'score' must be a finite number, got 'high'"),
        ({"images": []}, "expected a COCO results array or BDD/Scalabel frames, got a JSON object"),
        ([{"name": "42", "labels": [{"category": "bus", "box2d": {"x1": 0, "y1": 0, "x2": 5, "y2": 5}, "score": 1}]}],
         "frame 0 ('42'): label 0: unknown category 'bus' (not a category of the ground truth)"),
        ([{"name": "nope.jpg", "labels": []}], "frame 0: unknown image name 'nope.jpg' (not a frame of the ground truth)"),
    ],
)  # fmt: skip
def test_bad_predictions_name_the_file_and_the_record(tmp_path, preds, message):
    path = _write(tmp_path, preds)
    with pytest.raises(ValueError) as err:
        load_predictions(path, _dataset())
    assert str(err.value) == f"{path}: {message}"


def test_malformed_json(tmp_path):
    path = _write(tmp_path, '[{"image_id": 42, "category_id": 3,\n "bbox": [0, 0, 5, 5] "score": 0.5}]')
    with pytest.raises(ValueError) as err:
        load_predictions(path, _dataset())
    assert str(err.value) == f"{path}: invalid JSON at line 2 column 23: Expecting ',' delimiter"


def test_missing_file(tmp_path):
    with pytest.raises(ValueError) as err:
        load_predictions(tmp_path / "none.json", _dataset())
    assert str(err.value) == f"{tmp_path / 'none.json'}: predictions file not found"


def test_segmentation_of_the_wrong_size(tmp_path):
    preds = [
        {"image_id": 42, "category_id": 3, "score": 0.9, "segmentation": {"size": [8, 10], "counts": "0"}}
    ]
    path = _write(tmp_path, preds)
    with pytest.raises(ValueError) as err:
        load_predictions(path, _dataset())
    assert (
        str(err.value)
        == f"{path}: prediction 0 (image '42', 100x80): segmentation RLE size [8, 10] != image size [80, 100]"
    )
