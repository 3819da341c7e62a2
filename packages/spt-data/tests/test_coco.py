"""COCO reader: against pycocotools on real COCO 2017 data (shared/data/coco_tinycoco), and edge cases."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO

from spt_data import DataError, PolygonMask, RleMask, read_coco
from spt_data.records import BOX_TOLERANCE

# pycocotools under numpy 2 warns on every decode; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def tinycoco(shared_data):
    ann = shared_data / "coco_tinycoco" / "annotations" / "instances_train2017.json"
    images = shared_data / "coco_tinycoco" / "images" / "train2017"
    return ann, images, read_coco(ann, images, check_images="decode")


def test_tinycoco_counts(tinycoco):
    _, _, ds = tinycoco
    recs = ds.records
    assert len(recs) == 32
    assert sum(r.num_instances for r in recs) == 288
    assert sum(int(r.iscrowd.sum()) for r in recs) == 4
    assert ds.num_skipped == 0
    assert len(ds.categories) == 80
    assert len({n for r in recs for n in r.category_names}) == 41


def test_tinycoco_agrees_with_pycocotools(tinycoco):
    ann, images, ds = tinycoco
    coco = COCO(str(ann))
    assert sorted(int(r.image_id) for r in ds.records) == sorted(coco.getImgIds())
    assert len(coco.getAnnIds(iscrowd=True)) == 4
    per_cat = Counter(coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"])
    assert Counter(n for r in ds.records for n in r.category_names) == per_cat
    for rec in ds.records:
        img = coco.imgs[int(rec.image_id)]
        assert (rec.width, rec.height) == (img["width"], img["height"])
        assert rec.image_path == str(images / img["file_name"])
        anns = {a["id"]: a for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"], iscrowd=None))}
        assert sorted(map(int, rec.ann_ids)) == sorted(anns)
        for k, aid in enumerate(rec.ann_ids):
            a = anns[int(aid)]
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose(rec.boxes[k], [x, y, x + w, y + h])
            assert rec.category_ids[k] == a["category_id"]
            assert bool(rec.iscrowd[k]) == bool(a["iscrowd"])
            expected = coco.annToMask(a).astype(bool)
            got = rec.masks[k].decode(rec.height, rec.width)
            assert np.array_equal(got, expected), (rec.image_id, aid)
            assert isinstance(rec.masks[k], RleMask if a["iscrowd"] else PolygonMask)


def test_vis4d_coco_reads_bdd_categories(shared_data):
    root = shared_data / "bdd100k_vis4d" / "detect"
    ds = read_coco(root / "annotation_coco.json", root / "images")
    (rec,) = ds.records
    assert rec.num_instances == 4 and set(rec.category_names) == {"car"}
    assert (rec.width, rec.height) == (1280, 720)


def _one_image(write_jpeg, write_json, tmp_path, bbox, seg=None):
    write_jpeg(tmp_path / "img" / "a.jpg", 64, 48)
    ann = {"id": 7, "image_id": 1, "category_id": 3, "bbox": bbox, "iscrowd": 0}
    if seg is not None:
        ann["segmentation"] = seg
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [ann],
        "categories": [{"id": 3, "name": "car"}],
    }
    return write_json(tmp_path / "ann.json", data)


def test_box_within_tolerance_is_kept_unclipped(tmp_path, write_jpeg, write_json):
    x2 = 64 + BOX_TOLERANCE / 2  # 0.5 px past the right border: kept exactly as given
    ann = _one_image(write_jpeg, write_json, tmp_path, [60.0, -0.5, x2 - 60.0, 10.0])
    (rec,) = read_coco(ann, tmp_path / "img").records
    np.testing.assert_allclose(rec.boxes[0], [60.0, -0.5, x2, 9.5])


def test_box_past_tolerance_is_an_error(tmp_path, write_jpeg, write_json):
    ann = _one_image(write_jpeg, write_json, tmp_path, [60.0, 0.0, 5.5, 10.0])  # x2 = 65.5 > 64 + 1
    with pytest.raises(DataError, match=r"annotation 0 \(id 7\) of image 'a.jpg': box x2=65.5 > width 64"):
        read_coco(ann, tmp_path / "img")


def test_uncompressed_rle_and_polygon_masks(tmp_path, write_jpeg, write_json):
    # a 2x3 block at rows 1-2, cols 2-4 in column-major uncompressed RLE of a 48x64 image
    mask = np.zeros((48, 64), bool)
    mask[1:3, 2:5] = True
    flat = mask.flatten(order="F").astype(int)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    ann = _one_image(write_jpeg, write_json, tmp_path, [2, 1, 3, 2], {"size": [48, 64], "counts": counts})
    (rec,) = read_coco(ann, tmp_path / "img").records
    assert np.array_equal(rec.masks[0].decode(48, 64), mask)
    ann = _one_image(write_jpeg, write_json, tmp_path, [2, 1, 3, 2], [[1, 2, 3, 4]])
    with pytest.raises(DataError, match="segmentation polygon 0 has 4 coordinates"):
        read_coco(ann, tmp_path / "img")


def test_coco_area_is_kept_through_parquet(tinycoco, tmp_path):
    """COCO's own ``area`` (what COCOeval's area ranges read) survives convert and the Parquet file."""
    import json

    from spt_data import write_records
    from spt_data.store import read_records

    ann, _, ds = tinycoco
    areas = {a["id"]: a["area"] for a in json.loads(ann.read_text())["annotations"]}
    write_records(tmp_path / "r.parquet", ds)
    for rec in read_records(tmp_path / "r.parquet").records:
        got = json.loads(rec.extra.get("area", "[]"))  # no key when the image has no annotation
        assert got == [areas[int(a)] for a in rec.ann_ids]  # exact floats
