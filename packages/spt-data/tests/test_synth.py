"""Synthetic street scenes: deterministic bytes, readable by the real readers, a ratio spread around 0.25."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spt_data import object_ratio, read_bdd, read_coco
from spt_data.categories import BDD_CLASSES
from spt_data.synth import generate, layout_records


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a = _files(generate(tmp_path / "a", 6, seed=3)["images"].parents[1])
    b = _files(generate(tmp_path / "b", 6, seed=3)["images"].parents[1])
    c = _files(generate(tmp_path / "c", 6, seed=4)["images"].parents[1])
    assert len(a) == 6 + 3 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))
    assert a["labels/train.json"] != c["labels/train.json"]


def test_image_depends_on_seed_split_index_only(tmp_path):
    short = _files(generate(tmp_path / "s", 2, seed=1)["images"])
    long = _files(generate(tmp_path / "l", 4, seed=1)["images"])
    assert all(long[k] == v for k, v in short.items())  # image i does not depend on the count
    val = _files(generate(tmp_path / "v", 2, seed=1, split="val")["images"])
    assert list(val.values()) != list(short.values())  # a split with the same seed differs


@pytest.fixture(scope="module")
def synth200(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    t0 = time.perf_counter()
    paths = generate(out, 200, seed=0)
    return paths, time.perf_counter() - t0


def test_generates_200_images_quickly(synth200):
    paths, seconds = synth200
    assert seconds < 30, f"200 images took {seconds:.1f} s"
    assert len(list(paths["images"].glob("*.jpg"))) == 200
    with Image.open(paths["images"] / "synth_000000.jpg") as im:
        assert im.format == "JPEG" and im.size == (320, 192)


def test_readers_agree_and_masks_match_boxes(synth200):
    paths, _ = synth200
    bdd = read_bdd(paths["bdd"], paths["images"], check_images="decode").records
    coco = read_coco(paths["coco"], paths["images"]).records
    assert len(bdd) == len(coco) == 200
    for b, c in zip(bdd, coco):
        assert b.image_path == c.image_path
        assert b.category_names == c.category_names
        np.testing.assert_array_equal(b.boxes, c.boxes)
        for k, (mb, mc) in enumerate(zip(b.masks, c.masks)):
            m = mb.decode(b.height, b.width)
            assert np.array_equal(m, mc.decode(c.height, c.width))
            ys, xs = np.nonzero(m)  # the box is the visible mask's extent
            assert b.boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    names = {n for r in bdd for n in r.category_names}
    assert names == set(BDD_CLASSES)


def test_many_small_objects_and_ratio_spread(synth200):
    paths, _ = synth200
    recs = read_bdd(paths["bdd"], paths["images"]).records
    ratios = np.array([object_ratio(r) for r in recs])
    below = (ratios < 0.25).mean()
    assert 0.5 < below < 0.95, below  # both sides of 0.25, most images small-object ones (BDD-S like)
    assert ratios.min() < 0.05 and ratios.max() > 0.4
    sides = np.sqrt(
        np.concatenate([(r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]) for r in recs])
    )
    assert np.median(sides) < 32 and (sides < 16).mean() > 0.3  # most objects small, many tiny
    assert sides.max() > 100  # and some large near ones
    assert np.median([r.num_instances for r in recs]) >= 8


def test_layout_records_for_benchmarks():
    a, b = layout_records(20, seed=5), layout_records(20, seed=5)
    assert all(np.array_equal(x.boxes, y.boxes) for x, y in zip(a, b))
    assert all((r.width, r.height) == (1280, 720) for r in a)
    assert sum(r.num_instances for r in a) > 100


def test_min_size_labels_small_objects_crowd_in_both_label_files(tmp_path):
    from spt_data import read_bdd, read_coco
    from spt_data.synth import generate, is_crowd

    paths = generate(tmp_path, num_images=3, seed=0, size=(320, 192), min_size=8)
    bdd = read_bdd(paths["bdd"], paths["images"])
    coco = read_coco(paths["coco"], paths["images"])
    for b, c in zip(bdd.records, coco.records):
        small = [is_crowd(tuple(box), 8) for box in c.boxes]
        assert c.iscrowd.tolist() == small and b.iscrowd.tolist() == small
    assert any(r.iscrowd.any() for r in coco.records) and any((~r.iscrowd).any() for r in coco.records)
