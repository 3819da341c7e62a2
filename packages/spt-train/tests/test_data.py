"""The training dataset: stored labels are the labels of the image the model sees (flips too);
bad images are a clear error or a counted skip."""

import dataclasses
import logging

import pytest
import torch

from spt_data import (
    DataError,
    Record,
    identity_frame,
    read_labels,
    read_records,
    records_fingerprint,
    resize_policy,
    selection_labels,
    write_labels,
    write_records,
)
from spt_data.cli import main as spt_data
from spt_data.labels import label_rows
from spt_train import data as data_module
from spt_train.data import ClassificationDataset, DetectionDataset, ImageError, collate, collate_padded


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


def changed_records(synthetic, tmp_path, scale: float = 1.0, keep: int | None = None):
    """The train records with the same image ids, at ``scale`` times the size, first ``keep`` instances."""
    data = read_records(synthetic / "train.parquet")
    for i, r in enumerate(data.records):
        data.records[i] = Record.build(
            image_id=r.image_id,
            image_path=r.image_path,
            width=round(r.width * scale),
            height=round(r.height * scale),
            boxes=r.boxes[:keep] * scale,
            category_ids=r.category_ids[:keep],
            category_names=r.category_names[:keep],
        )
    write_records(tmp_path / "other.parquet", data)
    return tmp_path / "other.parquet", data.records


@pytest.mark.parametrize(
    ("scale", "keep", "how"),
    [
        (2.0, None, "the same image ids at other sizes"),
        (1.0, 1, "the same images and sizes, other boxes, categories or masks"),
    ],
)
def test_labels_made_from_other_records_are_refused_naming_both_files(synthetic, tmp_path, scale, keep, how):
    """Same image names and frame (a 320x192 copy resizes to the same 160x96 frame): only the
    fingerprint of the records the labels were made from tells them apart."""
    other, records = changed_records(synthetic, tmp_path, scale, keep)
    labels = synthetic / "train_labels.parquet"
    made = read_labels(labels).records_fingerprint
    with pytest.raises(DataError) as err:
        DetectionDataset(other, labels, short=96, long=160)
    assert str(err.value) == (
        f"{labels}: labels were made from other records ({synthetic / 'train.parquet'}, fingerprint "
        f"{made[:12]}) than {other} (fingerprint {records_fingerprint(records)[:12]}: {how}); "
        f"remake them with spt-data labels --records {other}"
    )


def test_labels_without_a_records_fingerprint_still_work_with_one_warning(synthetic, tmp_path, caplog):
    records = synthetic / "train.parquet"
    old = tmp_path / "old_labels.parquet"
    policy = lambda w, h: resize_policy(w, h, short=96, long=160, pad_to=32)  # noqa: E731
    params = {"short": 96, "long": 160, "pad_to": 32, "strides": [8, 16, 32], "records": str(records)}
    write_labels(old, label_rows(read_records(records).records, policy=policy), params)
    with caplog.at_level(logging.WARNING, logger="spt_train.data"):
        for _ in range(2):
            assert set(DetectionDataset(records, old, short=96, long=160)[0][1]["select"]) == {8, 16, 32}
    assert [r.getMessage() for r in caplog.records] == [
        f"{old}: labels of an older spt-data keep no fingerprint of their records, so they are not "
        f"checked against {records}; remake them with spt-data labels --records {records} to check"
    ]
    data_module._warned_unbound.discard(str(old))


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


def all_broken(synthetic, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    data = read_records(synthetic / "train.parquet")
    data.records = [dataclasses.replace(r, image_path=str(bad)) for r in data.records]
    write_records(tmp_path / "all_broken.parquet", data)
    return tmp_path / "all_broken.parquet", bad, data.records[0]


@pytest.mark.parametrize(
    ("dataset", "collate_fn"), [(DetectionDataset, collate), (ClassificationDataset, collate_padded)]
)
def test_a_batch_of_only_skipped_images_stops_naming_the_records(synthetic, tmp_path, dataset, collate_fn):
    """on_error: skip with every image broken: a DataError before the model sees an empty batch."""
    records, bad, first = all_broken(synthetic, tmp_path)
    ds = dataset(records, short=96, long=160, on_error="skip")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_fn)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert str(err.value) == (
        f"{records}: all 3 images of a batch were skipped (on_error: skip), the batch is empty; the first: "
        f"{bad}: image {first.image_id!r} (record {first.source_index}): cannot identify image file {str(bad)!r}"
    )
    assert ds.skipped == 3


def test_a_batch_with_one_readable_image_keeps_it(synthetic, tmp_path):
    records, _, _ = corrupt_dataset(synthetic, tmp_path)  # image 1 broken
    ds = DetectionDataset(records, short=96, long=160, on_error="skip")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    assert [len(images) for images, _ in loader] == [1, 2, 2, 2] and ds.skipped == 1


def test_identity_frame_dataset_keeps_the_image(synthetic):
    ds = DetectionDataset(synthetic / "train.parquet", short=None, long=None, pad_to=1)
    image, target = ds[0]
    record = ds.records[0]
    assert image.shape == (3, record.height, record.width)
    assert target["scale"] == (1.0, 1.0) and identity_frame(record.width, record.height).out_w == record.width


def test_classification_dataset_multi_hot_and_padded_batches(synthetic):
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
