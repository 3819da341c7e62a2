"""Selection labels: fast path == per-pixel reference; exact cases by hand; flips; Parquet round trip."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from spt_data import (
    DataError,
    Dataset,
    Record,
    hflip_grid,
    hflip_record,
    labels_source_problem,
    read_coco,
    read_labels,
    read_records,
    records_fingerprint,
    resize_policy,
    selection_labels,
    selection_labels_reference,
    source_params,
    write_labels,
    write_records,
)
from spt_data.frame import identity_frame
from spt_data.labels import label_rows
from spt_data.records import PolygonMask, rle_from_bitmap


def _record(width, height, boxes, masks=None):
    k = len(boxes)
    return Record.build(
        image_id="r",
        image_path="",
        width=width,
        height=height,
        boxes=np.asarray(boxes, float).reshape(k, 4),
        category_ids=[1] * k,
        category_names=["car"] * k,
        masks=masks,
    )


def _random_record(rng, width, height, with_masks):
    k = int(rng.integers(0, 6))
    boxes, masks = [], []
    for _ in range(k):
        kind = rng.integers(4)
        if kind == 0:  # sub-pixel box
            x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            b = [x, y, x + rng.uniform(0.01, 0.9), y + rng.uniform(0.01, 0.9)]
        elif kind == 1:  # integer box: edges on pixel (and often cell) borders
            x1, x2 = sorted(rng.choice(width + 1, 2, replace=False))
            y1, y2 = sorted(rng.choice(height + 1, 2, replace=False))
            b = [x1, y1, x2, y2]
        elif kind == 2:  # edges exactly on multiples of 8 (cell borders at identity scale)
            x1 = 8 * rng.integers(0, max(1, width // 8))
            y1 = 8 * rng.integers(0, max(1, height // 8))
            b = [x1, y1, min(width, x1 + 8 * rng.integers(1, 3)), min(height, y1 + 8)]
        else:  # float box, may poke up to 1 px outside the image
            x1, x2 = sorted(rng.uniform(-1, width + 1, 2))
            y1, y2 = sorted(rng.uniform(-1, height + 1, 2))
            b = [x1, y1, x2 + 0.01, y2 + 0.01]
        boxes.append(b)
        m = None
        if with_masks and rng.random() < 0.5:
            m = rle_from_bitmap(rng.random((height, width)) < rng.choice([0.002, 0.02]))
        masks.append(m)
    return _record(width, height, boxes, masks)


@pytest.mark.parametrize("seed", range(40))
def test_fast_equals_reference_random(seed):
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(3, 70)), int(rng.integers(3, 70))  # mostly not divisible by the strides
    rec = _random_record(rng, width, height, with_masks=seed % 2 == 0)
    if seed % 3 == 0:
        frame = identity_frame(width, height)
    else:
        frame = resize_policy(
            width,
            height,
            short=int(rng.integers(8, 100)),
            long=int(rng.integers(30, 150)),
            pad_to=int(rng.choice([1, 8, 32])),
        )
    strides = (1, 3, 8, 16, 32)
    fast = selection_labels(rec, frame, strides)
    ref = selection_labels_reference(rec, frame, strides)
    for s in strides:
        assert fast[s].shape == (-(-frame.padded_h // s), -(-frame.padded_w // s))
        assert np.array_equal(fast[s], ref[s]), (seed, s, frame)


def test_cell_border_cases_by_hand():
    frame = identity_frame(20, 12)  # grid at stride 8: 2 x 3 (last column and row partial)
    lab = lambda *boxes: selection_labels(_record(20, 12, boxes), frame, (8,))[8]  # noqa: E731
    # [0, 8) fills exactly cell (0, 0); touching the border at x=8 does not reach cell (0, 1)
    assert lab([0, 0, 8, 8]).tolist() == [[1, 0, 0], [0, 0, 0]]
    assert lab([0, 0, 8.25, 8]).tolist() == [[1, 1, 0], [0, 0, 0]]  # 0.25 px into the next cell counts
    assert lab([7.9, 7.9, 8.1, 8.1]).tolist() == [[1, 1, 0], [1, 1, 0]]  # sub-pixel box on a corner
    assert lab([16.2, 11.5, 16.3, 11.6]).tolist() == [[0, 0, 0], [0, 0, 1]]  # sub-pixel box, partial cell
    assert lab([19.5, 0, 21, 2]).tolist() == [[0, 0, 1], [0, 0, 0]]  # within tolerance past the border


def test_padding_cells_are_negative():
    frame = resize_policy(50, 30, short=30, long=100, pad_to=32)  # 50x30 -> padded 64x32
    assert frame == (1.0, 50, 30, 64, 32)
    grid = selection_labels(_record(50, 30, [[0, 0, 50, 30]]), frame, (8,))[8]
    assert grid.shape == (4, 8)
    assert grid[:, :7].all() and not grid[:, 7:].any()  # columns 0-6 hold image pixels (50 = 6*8 + 2)


def test_resize_policy():
    assert resize_policy(1280, 720) == (1333 / 1280, 1333, 750, 1344, 768)
    assert resize_policy(640, 480) == (800 / 480, 1067, 800, 1088, 800)
    assert resize_policy(320, 192, short=None, long=None, pad_to=32) == (1.0, 320, 192, 320, 192)
    with pytest.raises(ValueError, match="positive"):
        resize_policy(0, 10)


@pytest.mark.parametrize("seed", range(12))
def test_hflip_grid_equals_labels_of_flipped_record(seed):
    rng = np.random.default_rng(100 + seed)
    height = int(rng.integers(10, 60))
    width = 32 * int(rng.integers(1, 3)) if seed % 2 else int(rng.integers(10, 70))
    rec = _random_record(rng, width, height, with_masks=True)
    frame = (
        identity_frame(width, height)
        if seed % 2
        else resize_policy(width, height, short=40, long=200, pad_to=32)
    )
    labels = selection_labels(rec, frame)
    flipped = selection_labels(hflip_record(rec), frame)
    for s, grid in labels.items():
        got = hflip_grid(grid, frame.out_w, s)
        if frame.out_w % s == 0:
            assert np.array_equal(got, flipped[s]), (seed, s)
        else:  # conservative: a superset that adds cells only next to true positives
            assert (got >= flipped[s]).all()
            extra = got & ~flipped[s]
            near = flipped[s] | np.roll(flipped[s], 1, axis=1) | np.roll(flipped[s], -1, axis=1)
            assert not (extra & ~near).any()


def test_masks_override_boxes_on_real_coco(shared_data):
    root = shared_data / "coco_tinycoco"
    ds = read_coco(
        root / "annotations" / "instances_train2017.json", root / "images" / "train2017", check_images="none"
    )
    rec = max(ds.records, key=lambda r: r.num_instances)
    frame = resize_policy(rec.width, rec.height)
    fast, ref = selection_labels(rec, frame), selection_labels_reference(rec, frame)
    boxes_only = selection_labels(rec, frame, use_masks=False)
    # a rasterised mask lies inside its float box grown by one source pixel
    grown = Record.build(**{**rec.__dict__, "boxes": rec.boxes + np.array([-1, -1, 1, 1])})
    grown_boxes = selection_labels(grown, frame, use_masks=False)
    for s in (8, 16, 32):
        assert np.array_equal(fast[s], ref[s])
        assert (grown_boxes[s] >= fast[s]).all()
    assert boxes_only[8].sum() > fast[8].sum()  # masks are tighter than boxes


def test_parquet_round_trip_and_schema(tmp_path):
    rng = np.random.default_rng(7)
    recs = [_random_record(rng, 100, 60, with_masks=True) for _ in range(5)]
    recs = [Record.build(**{**r.__dict__, "image_id": f"im{i}"}) for i, r in enumerate(recs)]
    path = tmp_path / "labels.parquet"
    policy = lambda w, h: resize_policy(w, h, short=60, long=200)  # noqa: E731
    n = write_labels(path, label_rows(recs, policy=policy), {"short": 60})
    assert n == 15
    table = read_labels(path)
    assert table.params == {"short": 60}
    assert table.image_ids == [f"im{i}" for i in range(5)]
    for r in recs:
        frame = policy(r.width, r.height)
        for s, grid in selection_labels(r, frame).items():
            got = table.grid(r.image_id, s)
            assert got.dtype == bool and np.array_equal(got, grid)
            assert table.frame_size(r.image_id, s) == (frame.out_w, frame.out_h)
    schema = pq.read_schema(path)
    assert schema.metadata[b"spt_data.schema_version"] == b"1"
    assert [f.name for f in schema][:4] == ["image_id", "stride", "grid_h", "grid_w"]
    with pytest.raises(KeyError, match="no labels for image 'nope'"):
        table.grid("nope", 8)


def test_truncated_bits_are_an_error(tmp_path):
    path = tmp_path / "l.parquet"
    write_labels(
        path,
        [
            {
                "image_id": "a",
                "stride": 8,
                "grid_h": 4,
                "grid_w": 5,
                "frame_w": 40,
                "frame_h": 32,
                "bits": b"\x00",
            }
        ],
        {},
    )
    with pytest.raises(DataError, match=r"row 0 \(image 'a', stride 8\): 1 bytes of bits for a 4x5 grid"):
        read_labels(path)


def _fingerprint_records() -> list[Record]:
    rle = rle_from_bitmap(np.pad(np.ones((4, 6), bool), ((2, 14), (3, 11))))  # [20, 20]
    poly = PolygonMask((np.array([1.0, 1, 8, 1, 8, 6]),))
    a = _record(20, 20, [[3, 2, 9, 6], [1, 1, 8, 6]], masks=[rle, poly])
    return [Record.build(**{**a.__dict__, "image_id": "a"}), Record.build(**{**a.__dict__, "image_id": "b"})]


def test_records_fingerprint_sees_every_input_of_the_labels_and_survives_parquet(tmp_path):
    recs = _fingerprint_records()
    base = records_fingerprint(recs)
    write_records(tmp_path / "r.parquet", Dataset("coco", recs, {1: "car"}, []))
    assert records_fingerprint(read_records(tmp_path / "r.parquet").records) == base
    a = recs[0].__dict__
    changed = {
        "image id": {"image_id": "c"},
        "width": {"width": 21},
        "height": {"height": 21},
        "box": {"boxes": recs[0].boxes + np.array([[0, 0, 1, 0], [0, 0, 0, 0]])},
        "category": {"category_ids": np.array([1, 2])},
        "mask": {"masks": (recs[0].masks[0], None)},
    }
    for what, change in changed.items():
        assert records_fingerprint([Record.build(**{**a, **change}), recs[1]]) != base, what
    assert records_fingerprint(recs[::-1]) != base  # order counts
    assert records_fingerprint(recs, sizes_only=True) == records_fingerprint(
        [Record.build(**{**r.__dict__, "boxes": r.boxes + 1}) for r in recs], sizes_only=True
    )


def _labels_of(recs, path, tmp_path):
    out = tmp_path / "labels.parquet"
    write_labels(out, label_rows(recs, policy=identity_frame), {"short": None, **source_params(recs, path)})
    return read_labels(out)


def test_labels_made_from_other_records_are_named_with_both_files(tmp_path):
    recs = _fingerprint_records()
    labels = _labels_of(recs, "made.parquet", tmp_path)
    made = records_fingerprint(recs)
    assert labels.params["records"] == "made.parquet" and labels.records_fingerprint == made
    assert labels_source_problem(labels, recs, "copy.parquet") is None
    where = f"{tmp_path / 'labels.parquet'}: labels were made from other records"
    others = {
        "other image ids": [recs[0]],
        "the same image ids at other sizes": [Record.build(**{**r.__dict__, "width": 40}) for r in recs],
        "the same images and sizes, other boxes, categories or masks": [
            Record.build(**{**r.__dict__, "category_ids": r.category_ids + 1}) for r in recs
        ],
    }
    for how, other in others.items():
        assert labels_source_problem(labels, other, "other.parquet") == (
            f"{where} (made.parquet, fingerprint {made[:12]}) than other.parquet (fingerprint "
            f"{records_fingerprint(other)[:12]}: {how}); remake them with spt-data labels --records other.parquet"
        )


def test_labels_without_a_fingerprint_are_not_checked(tmp_path):
    """Files written before labels kept their records' fingerprint still read (the reader warns)."""
    recs = _fingerprint_records()
    write_labels(tmp_path / "old.parquet", label_rows(recs, policy=identity_frame), {"records": "r.parquet"})
    old = read_labels(tmp_path / "old.parquet")
    assert old.records_fingerprint is None and labels_source_problem(old, recs[:1], "other.parquet") is None
