"""Labels from masks: the run-length fast path == the previous bitmap path == the per-pixel reference,
and today's labels on the shared real data and the synthetic scenes are unchanged (golden digests
made with the bitmap implementation before the fast path replaced it: tests/data/labels_golden.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from spt_data import DataError, Record, RleMask, object_ratio, read_bdd, read_coco, read_voc, resize_policy
from spt_data.labels import _frame_boxes, selection_labels, selection_labels_reference, union_mask
from spt_data.raster import box_cells, mask_cells
from spt_data.synth import generate, scene_records

GOLDEN = Path(__file__).parent / "data" / "labels_golden.json"
FRAMES = (
    (lambda w, h: resize_policy(w, h), (8, 16, 32)),
    (lambda w, h: resize_policy(w, h, short=300, long=500, pad_to=1), (3, 8, 16)),
)


def labels_bitmap(record, frame, strides):
    """The previous implementation: union bitmap of the decoded masks, separable cumulative sums."""
    union, boxes = union_mask(record)
    fboxes = _frame_boxes(boxes, record, frame)
    out = {s: box_cells(fboxes, frame, s) for s in strides}
    return {s: g | mask_cells(union, frame, s) if union is not None else g for s, g in out.items()}


def _digest(grids, strides):
    h = hashlib.sha256()
    for s in strides:
        h.update(np.packbits(grids[s]).tobytes() + str(grids[s].shape).encode())
    return h.hexdigest()[:16]


def _real(d: Path):
    coco = dict(check_images="none")
    yield (
        "coco_tinycoco",
        read_coco(
            d / "coco_tinycoco/annotations/instances_train2017.json",
            d / "coco_tinycoco/images/train2017",
            **coco,
        ),
    )
    yield (
        "bdd_detect",
        read_bdd(d / "bdd100k_vis4d/detect/labels/annotation.json", d / "bdd100k_vis4d/detect/images"),
    )
    yield "bdd_track", read_bdd(d / "bdd100k_vis4d/track/labels", d / "bdd100k_vis4d/track/images")
    yield (
        "bdd_detect_coco",
        read_coco(d / "bdd100k_vis4d/detect/annotation_coco.json", d / "bdd100k_vis4d/detect/images", **coco),
    )
    yield (
        "coco_val2014_100",
        read_coco(d / "coco_eval_val2014_100/annotations/instances_val2014_100.json", d, **coco),
    )
    yield "voc_labelme", read_voc(d / "voc_labelme_instance/VOC2012", split=None, instances="segmentation")


def _synthetic(tmp: Path):
    a = generate(tmp / "s", 12, seed=0, size=(320, 192))
    b = generate(tmp / "t", 4, seed=1, size=(1280, 720))
    yield "synth_320x192_seed0", read_bdd([a["bdd"]], a["images"])
    yield "synth_1280x720_seed1", read_coco(b["coco"], b["images"])


def _check_golden(datasets, golden):
    for name, ds in datasets:
        assert set(golden[name]) == {r.image_id for r in ds.records}, name
        for r in ds.records:
            got = [_digest(selection_labels(r, p(r.width, r.height), s), s) for p, s in FRAMES]
            assert [*got, repr(object_ratio(r))] == golden[name][r.image_id], (name, r.image_id)


def test_labels_unchanged_on_shared_real_data(shared_data):
    _check_golden(_real(shared_data), json.loads(GOLDEN.read_text()))


def test_labels_unchanged_on_synthetic_scenes(tmp_path):
    _check_golden(_synthetic(tmp_path), json.loads(GOLDEN.read_text()))


def test_fast_equals_bitmap_path_on_real_data(shared_data):
    for _, ds in _real(shared_data):
        for r in ds.records[:8]:
            for p, strides in FRAMES:
                frame = p(r.width, r.height)
                fast, slow = selection_labels(r, frame, strides), labels_bitmap(r, frame, strides)
                assert all(np.array_equal(fast[s], slow[s]) for s in strides), r.image_id


@pytest.mark.parametrize("seed", range(3))
def test_fast_equals_bitmap_and_reference_on_scenes(seed):
    for r in scene_records(2, seed=seed, size=(160, 96)):
        frame = resize_policy(r.width, r.height, short=int(70 + 30 * seed), long=400, pad_to=8)
        strides = (1, 4, 8, 16)
        fast, slow = selection_labels(r, frame, strides), labels_bitmap(r, frame, strides)
        ref = selection_labels_reference(r, frame, strides)
        assert all(np.array_equal(fast[s], slow[s]) and np.array_equal(fast[s], ref[s]) for s in strides)


def test_invalid_rle_in_a_record_names_it():
    rec = Record.build(
        image_id="a.jpg",
        image_path="",
        width=4,
        height=3,
        boxes=[[0, 0, 2, 2]],
        category_ids=[1],
        category_names=["car"],
        masks=[RleMask(b"0P1", (3, 4))],
        ann_ids=["17"],
        source="records.parquet",
        source_index=5,
    )
    frame = resize_policy(4, 3)
    msg = "records.parquet: record 5 (image 'a.jpg'): instance 17: RLE run lengths sum to 32, not height*width = 3*4 = 12"
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        selection_labels(rec, frame)
