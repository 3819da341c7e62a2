"""BDD100K / Scalabel reader on real BDD100K frames (shared/data/bdd100k_vis4d), and its conventions."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from spt_data import DataError, PolygonMask, RleMask, read_bdd
from spt_data.bdd import flatten_poly2d
from spt_data.categories import BDD_CLASSES, bdd_category

# pycocotools under numpy 2 warns on every decode; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _expected(label_file):
    frames = json.loads(label_file.read_text())
    return {fr["name"]: fr for fr in frames}


@pytest.mark.parametrize(
    ("sub", "label_path", "n_frames", "n_labels"),
    [("detect", "labels/annotation.json", 1, 10), ("track", "labels/00091078-875c1f73.json", 6, 87)],
)
def test_every_box_and_category(shared_data, sub, label_path, n_frames, n_labels):
    root = shared_data / "bdd100k_vis4d" / sub
    ds = read_bdd(root / label_path, root / "images", check_images="decode")
    frames = _expected(root / label_path)
    assert len(ds.records) == n_frames == len(frames)
    assert sum(r.num_instances for r in ds.records) == n_labels
    for rec in ds.records:
        fr = frames[rec.image_id]
        assert (rec.width, rec.height) == (1280, 720)
        assert rec.num_instances == len(fr["labels"])
        for k, lab in enumerate(fr["labels"]):
            b = lab["box2d"]
            np.testing.assert_allclose(rec.boxes[k], [b["x1"], b["y1"], b["x2"] + 1, b["y2"] + 1])
            assert rec.category_names[k] == lab["category"]
            assert rec.category_ids[k] == BDD_CLASSES.index(lab["category"]) + 1
            assert rec.ann_ids[k] == lab["id"]
            assert bool(rec.iscrowd[k]) == bool(lab["attributes"].get("crowd", False))
            if "rle" in lab:
                assert isinstance(rec.masks[k], RleMask)
            elif "poly2d" in lab:
                assert isinstance(rec.masks[k], PolygonMask)
            else:
                assert rec.masks[k] is None


def test_detect_and_track_categories(shared_data):
    d = shared_data / "bdd100k_vis4d"
    det = read_bdd(d / "detect" / "labels" / "annotation.json", d / "detect" / "images")
    trk = read_bdd(d / "track" / "labels", d / "track" / "images")  # a folder of frame lists

    def count(ds):
        return dict(Counter(n for r in ds.records for n in r.category_names))

    assert count(det) == {"car": 4, "traffic light": 5, "traffic sign": 1}
    assert count(trk) == {"car": 44, "pedestrian": 35, "truck": 8}
    assert sum(int(r.iscrowd.sum()) for r in trk.records) == 1
    assert [r.extra["frameIndex"] for r in trk.records] == [str(i) for i in range(165, 171)]
    assert all("/00091078-875c1f73/" in r.image_path for r in trk.records)


def test_box2d_is_inclusive_like_the_rle_extent(shared_data):
    """Scalabel box2d corners are inclusive: x2 + 1 is the RLE mask's right edge (checked on all 87 labels)."""
    frames = json.loads((shared_data / "bdd100k_vis4d/track/labels/00091078-875c1f73.json").read_text())
    for fr in frames:
        for lab in fr["labels"]:
            x, y, w, h = mask_utils.toBbox(
                {"size": lab["rle"]["size"], "counts": lab["rle"]["counts"].encode()}
            )
            b = lab["box2d"]
            assert (b["x1"], b["y1"], b["x2"] + 1, b["y2"] + 1) == (x, y, x + w, y + h)


def test_poly2d_bezier_matches_rle_better_than_straight_lines(shared_data):
    frames = json.loads((shared_data / "bdd100k_vis4d/track/labels/00091078-875c1f73.json").read_text())
    iou_curve, iou_lines = [], []
    for fr in frames:
        for lab in fr["labels"]:
            rle = mask_utils.decode({"size": [720, 1280], "counts": lab["rle"]["counts"].encode()}).astype(
                bool
            )
            curve = PolygonMask(
                tuple(
                    flatten_poly2d(p["vertices"], p["types"], p["closed"]).reshape(-1) for p in lab["poly2d"]
                )
            ).decode(720, 1280)
            lines = PolygonMask(
                tuple(np.asarray(p["vertices"], float).reshape(-1) for p in lab["poly2d"])
            ).decode(720, 1280)
            iou_curve.append((curve & rle).sum() / (curve | rle).sum())
            iou_lines.append((lines & rle).sum() / (lines | rle).sum())
    assert np.median(iou_curve) > 0.9
    assert np.mean(iou_curve) > np.mean(iou_lines)


def test_flatten_poly2d_cubic_endpoints():
    pts = flatten_poly2d([[0, 0], [1, 2], [3, 2], [4, 0]], "LCCL", closed=True)
    assert pts[0].tolist() == [0, 0] and pts[-1].tolist() == [4, 0]
    assert len(pts) == 1 + 10  # one cubic, flattened into 10 segments
    assert pts[:, 1].max() == pytest.approx(1.5)  # the cubic's peak: 3 * 0.25 * 2
    closed = flatten_poly2d([[0, 0], [4, 0], [4, 4], [0, 4]], "LLCC", closed=True)
    assert closed[-1].tolist() == [0, 0]  # trailing control pair ends at the first vertex
    with pytest.raises(ValueError, match="pairs"):
        flatten_poly2d([[0, 0], [1, 1], [2, 0]], "LCL", closed=True)


def test_name_mapping():
    assert bdd_category("person") == (1, "pedestrian", False)
    assert bdd_category("bike") == (8, "bicycle", False)
    assert bdd_category("motor") == (7, "motorcycle", False)
    assert bdd_category("other vehicle") == (3, "car", True)
    assert bdd_category("trailer") == (4, "truck", True)
    assert bdd_category("spaceship") is None


def test_mapping_and_non_objects_in_a_file(tmp_path, write_jpeg, write_json, caplog):
    write_jpeg(tmp_path / "img" / "f.jpg", 64, 48)
    labels = [
        {"id": "1", "category": "person", "box2d": {"x1": 1, "y1": 2, "x2": 5, "y2": 9}},
        {"id": "2", "category": "trailer", "box2d": {"x1": 10, "y1": 2, "x2": 30, "y2": 9}},
        {
            "id": "3",
            "category": "drivable area",
            "poly2d": [{"vertices": [[0, 40], [63, 40], [30, 30]], "types": "LLL", "closed": True}],
        },
    ]
    f = write_json(tmp_path / "labels.json", [{"name": "f.jpg", "labels": labels}])
    with caplog.at_level(logging.INFO, logger="spt_data"):
        (rec,) = read_bdd(f, tmp_path / "img").records
    assert rec.category_names == ("pedestrian", "truck")
    assert rec.ignore.tolist() == [False, True]
    assert any("left out 1 non-object labels" in r.getMessage() for r in caplog.records)


def test_scalabel_dataset_object_and_missing_box(tmp_path, write_jpeg, write_json):
    write_jpeg(tmp_path / "img" / "f.jpg", 64, 48)
    poly = [{"vertices": [[10, 10], [20, 10], [20, 30], [10, 30]], "types": "LLLL", "closed": True}]
    f = write_json(
        tmp_path / "l.json",
        {"frames": [{"name": "f.jpg", "labels": [{"id": "a", "category": "car", "poly2d": poly}]}]},
    )
    (rec,) = read_bdd(f, tmp_path / "img").records
    assert rec.boxes[0].tolist() == [10, 10, 20, 30]  # box from the mask (pycocotools fills 10 columns)
    f = write_json(tmp_path / "l.json", [{"name": "f.jpg", "labels": [{"id": "a", "category": "car"}]}])
    with pytest.raises(
        DataError, match=r"frame 0 \('f.jpg'\): label 0 \(id a\): label has neither 'box2d' nor a mask"
    ):
        read_bdd(f, tmp_path / "img")


def test_sizes_without_reading_images(tmp_path, write_json):
    f = write_json(tmp_path / "l.json", [{"name": "nowhere.jpg", "videoName": "v", "labels": []}])
    with pytest.raises(ValueError, match="needs image_size"):
        read_bdd(f, tmp_path, check_images="none")
    (rec,) = read_bdd(f, tmp_path, check_images="none", image_size=(1280, 720)).records
    assert (rec.width, rec.height) == (1280, 720)
    assert rec.image_path == str(tmp_path / "v" / "nowhere.jpg")  # tracking layout: root/videoName/name
