"""COCOeval parity on published numbers, and the ground-truth conversion of every spt-data reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spt_data import Record, read_bdd, read_coco, write_records
from spt_train.evaluation import STAT_NAMES, coco_metrics, evaluate_predictions, records_to_coco

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

# coco_eval_val2014_100/PROVENANCE.md, "Full precision" (pycocotools 2.0.11; faster_coco_eval's test)
PUBLISHED = {
    "bbox": [
        0.5045806987249628, 0.6969727247299577, 0.5729816669904824, 0.5856257209410443,
        0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
        0.595352982877607, 0.6398109626113442, 0.5664205978994309, 0.5642905982905982,
    ],
    "segm": [
        0.3195452758576433, 0.5622883972521636, 0.29892653412086784, 0.3873740315997837,
        0.31018272403369485, 0.3269339071005138, 0.2682297225711534, 0.41544868114906375,
        0.4168394992198818, 0.4694498622754236, 0.37675922666197265, 0.3814715099715099,
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def coco_eval_dir() -> Path:
    d = SHARED_DATA / "coco_eval_val2014_100"
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d}")
    return d


@pytest.fixture(scope="module")
def gt_parquet(coco_eval_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GT json through spt-data's COCO reader (no images: check_images='none') to Parquet."""
    ds = read_coco(
        coco_eval_dir / "annotations" / "instances_val2014_100.json", coco_eval_dir, check_images="none"
    )
    path = tmp_path_factory.mktemp("gt") / "records.parquet"
    write_records(path, ds)
    return path


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_cocoeval_parity_with_published_numbers(coco_eval_dir, gt_parquet, iou_type):
    preds = coco_eval_dir / "results" / f"instances_val2014_fake{iou_type}100_results.json"
    metrics = evaluate_predictions(gt_parquet, preds, "coco")
    got = [metrics[iou_type][name] for name in STAT_NAMES]
    assert max(abs(g - p) for g, p in zip(got, PUBLISHED[iou_type])) < 1e-12, got
    assert metrics["num_images"] == 100 and metrics["num_predictions"] == 734
    assert set(metrics) & {"bbox", "segm"} == {iou_type}  # the bbox file has no masks, the segm file no boxes
    json.dumps(metrics, allow_nan=False)  # every number JSON-ready


def test_classes_without_gt_are_nan_and_left_out_of_the_mean(coco_eval_dir, gt_parquet):
    metrics = evaluate_predictions(
        gt_parquet, coco_eval_dir / "results" / "instances_val2014_fakebbox100_results.json"
    )
    bbox = metrics["bbox"]
    per_class = bbox["per_class"]
    assert len(per_class) == 80  # every category of the file, used or not
    without = [n for n, v in per_class.items() if v["AP"] is None]
    assert without == bbox["classes_without_gt"] and len(without) == 10  # 70 of 80 classes used
    assert all(per_class[n]["num_gt"] == 0 for n in without)
    aps = [v["AP"] for v in per_class.values() if v["AP"] is not None]
    # COCOeval's AP is the mean over the classes with ground truth, as Scalabel's evaluator takes it
    assert bbox["class_mean_AP"] == pytest.approx(bbox["AP"], abs=1e-12)
    assert float(np.mean(aps)) == pytest.approx(bbox["AP"], abs=1e-12)


def _record(image_id, boxes, cats, names, crowd=None, ignore=None) -> Record:
    return Record.build(
        image_id=image_id, image_path=f"{image_id}.jpg", width=100, height=80, boxes=boxes,
        category_ids=cats, category_names=names, iscrowd=crowd, ignore=ignore, source="mem", source_index=0,
    )  # fmt: skip


def test_ignore_and_crowd_become_iscrowd_and_ids_start_at_one():
    recs = [
        _record("a", [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70]], [1, 1, 2], ["car", "car", "bus"],
                crowd=[False, True, False], ignore=[False, False, True]),
        _record("b", [[1.5, 2.5, 11.5, 12.5]], [1], ["car"]),
    ]  # fmt: skip
    gt = records_to_coco(recs, {1: "car", 2: "bus", 3: "truck"})
    assert [im["id"] for im in gt["images"]] == [1, 2]  # non-integer record ids -> 1..N in order
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3, 4]
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1, 1, 0]
    assert gt["annotations"][3]["bbox"] == [1.5, 2.5, 10.0, 10.0]
    assert gt["annotations"][2]["area"] == 200.0  # no mask, no COCO area: the box area
    assert [c["name"] for c in gt["categories"]] == ["car", "bus", "truck"]
    # a perfect detector: AP 1 on car; bus only has an ignored object, truck none: NaN, left out
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [1.5, 2.5, 10, 10], "score": 0.8},
               {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 20], "score": 0.7}]  # fmt: skip
    m = coco_metrics(gt, results, "bbox")
    assert m["AP"] == pytest.approx(1.0) and m["per_class"]["car"]["AP"] == pytest.approx(1.0)
    assert math.isnan(m["per_class"]["bus"]["AP"]) and math.isnan(m["per_class"]["truck"]["AP"])
    assert m["classes_without_gt"] == ["bus", "truck"]
    assert math.isnan(m["APm"]) and math.isnan(m["APl"])  # COCOeval's -1 (no GT in that range) -> NaN
    assert "Average Precision" in m["summary"] and len(m["summary"].splitlines()) == 12


def test_empty_results_give_zero_ap():
    gt = records_to_coco([_record("7", [[0, 0, 10, 10]], [1], ["car"])])
    assert gt["images"][0]["id"] == 7  # integer record ids are kept (COCO)
    m = coco_metrics(gt, [], "bbox")
    assert m["AP"] == 0.0 and m["AR100"] == 0.0


def test_segm_needs_gt_masks():
    gt = records_to_coco([_record("7", [[0, 0, 10, 10]], [1], ["car"])])
    with pytest.raises(
        ValueError,
        match="segm evaluation needs a mask for every ground-truth instance: annotation 1 of image 7 has none",
    ):
        coco_metrics(gt, [], "segm")


def test_bdd_crowd_is_cocos_iscrowd():
    """Real BDD100K tracking frames: the one ``crowd`` label is a crowd region for COCOeval."""
    d = SHARED_DATA / "bdd100k_vis4d" / "track"
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d}")
    ds = read_bdd(d / "labels", d / "images", check_images="none", image_size=(1280, 720))
    gt = records_to_coco(ds.records, ds.categories)
    assert len(gt["categories"]) == 10 and len(gt["annotations"]) == 87
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 1
    # the ground truth itself as detections: AP 1 on the 3 classes present, the other 7 NaN
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a["iscrowd"]]  # fmt: skip
    m = coco_metrics(gt, results, "bbox")
    assert m["AP"] == pytest.approx(1.0)
    assert sorted(n for n, v in m["per_class"].items() if not math.isnan(v["AP"])) == [
        "car",
        "pedestrian",
        "truck",
    ]
