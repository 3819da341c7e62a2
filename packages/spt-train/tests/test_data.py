"""The training dataset: stored labels are the labels of the image the model sees (flips too);
bad images are a clear error or a counted skip."""

import dataclasses
import logging

import pytest
import torch

from spt_data import Record, identity_frame, read_records, resize_policy, selection_labels, write_records
from spt_data.cli import main as spt_data
from spt_train.data import DetectionDataset, ImageError, collate


def boxes_only_labels(synthetic, tmp_path):
    out = tmp_path / "boxes_labels.parquet"
    args = ["labels", "--records", str(synthetic / "train.parquet"), "--out", str(out), "--boxes-only"]
    assert spt_data([*args, "--short", "96", "--long", "160"]) == 0
    return out


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_labels_recomputed_from_the_transformed_boxes_equal_the_stored_ones(synthetic, tmp_path, flip):
    labels = boxes_only_labels(synthetic, tmp_path)
    ds = DetectionDataset(synthetic / "train.parquet", labels, short=96, long=160, flip=flip)
    assert all(not (r.iscrowd | r.ignore).any() for r in ds.records)  # every instance is a target
    for i in range(len(ds)):
        image, target = ds[i]
        h, w = image.shape[1:]
        frame_record = Record.build(
            image_id="t",
            image_path="t.jpg",
            width=w,
            height=h,
            boxes=target["boxes"].double().numpy(),
            category_ids=target["labels"].numpy(),
            category_names=["x"] * len(target["labels"]),
        )
        want = selection_labels(frame_record, resize_policy(w, h, short=None, long=None, pad_to=32))
        for stride, grid in target["select"].items():
            assert torch.equal(grid, torch.from_numpy(want[stride])), (i, stride, flip)


def test_flip_mirrors_image_and_boxes_and_is_seeded_per_epoch(synthetic):
    plain = DetectionDataset(synthetic / "train.parquet", short=96, long=160)
    flipped = DetectionDataset(synthetic / "train.parquet", short=96, long=160, flip=1.0)
    (a, ta), (b, tb) = plain[0], flipped[0]
    assert torch.equal(b, a.flip(-1))
    assert torch.allclose(tb["boxes"][:, [0, 2]], a.shape[2] - ta["boxes"][:, [2, 0]])
    half = DetectionDataset(synthetic / "train.parquet", short=96, long=160, flip=0.5, seed=3)
    draws = [[bool(torch.equal(half[i][0], plain[i][0])) for i in range(8)] for _ in range(2)]
    assert draws[0] == draws[1]  # same epoch: same flips
    half.set_epoch(1)
    assert [bool(torch.equal(half[i][0], plain[i][0])) for i in range(8)] != draws[0]


def test_labels_made_for_another_frame_are_refused(synthetic):
    with pytest.raises(
        ValueError, match=r"labels were made for frame \{'short': 96, 'long': 160, 'pad_to': 32\}"
    ):
        DetectionDataset(
            synthetic / "train.parquet", synthetic / "train_labels.parquet", short=800, long=1333
        )


def corrupt_dataset(synthetic, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    data = read_records(synthetic / "train.parquet")
    data.records[1] = dataclasses.replace(data.records[1], image_path=str(bad))
    write_records(tmp_path / "broken.parquet", data)
    return tmp_path / "broken.parquet", bad, data.records[1]


def test_a_corrupt_image_is_an_error_naming_the_file_and_record(synthetic, tmp_path):
    records, bad, record = corrupt_dataset(synthetic, tmp_path)
    ds = DetectionDataset(records, short=96, long=160)
    with pytest.raises(ImageError) as err:
        ds[1]
    assert str(err.value) == (
        f"{bad}: image {record.image_id!r} (record {record.source_index}): cannot identify image file {str(bad)!r}"
    )


def test_a_corrupt_image_is_skipped_counted_and_logged_on_request(synthetic, tmp_path, caplog):
    records, bad, _ = corrupt_dataset(synthetic, tmp_path)
    ds = DetectionDataset(records, short=96, long=160, on_error="skip")
    with caplog.at_level(logging.WARNING):
        images, targets = collate([ds[0], ds[1], ds[2]])
    assert len(images) == len(targets) == 2 and ds.skipped == 1
    assert any(
        str(bad) in r.getMessage() and r.getMessage().startswith("skipped image") for r in caplog.records
    )


def test_identity_frame_dataset_keeps_the_image(synthetic):
    ds = DetectionDataset(synthetic / "train.parquet", short=None, long=None, pad_to=1)
    image, target = ds[0]
    record = ds.records[0]
    assert image.shape == (3, record.height, record.width)
    assert target["scale"] == (1.0, 1.0) and identity_frame(record.width, record.height).out_w == record.width


def test_classification_dataset_multi_hot_and_padded_batches(synthetic):
    from spt_train.data import ClassificationDataset, collate_padded

    ds = ClassificationDataset(
        synthetic / "train.parquet", synthetic / "train_labels.parquet", short=96, long=160
    )
    _, target = ds[0]
    record = ds.records[0]
    present = {ds.label_of[int(c)] - 1 for c in record.category_ids}
    assert set(target["labels"].nonzero().flatten().tolist()) == present and not target["difficult"].any()
    images, valid, targets = collate_padded([ds[0], None, ds[1]])
    assert images.shape == (2, 3, 96, 160) and valid.tolist() == [[96, 160], [96, 160]] and len(targets) == 2
    assert set(targets[0]["select"]) == {8, 16, 32}
