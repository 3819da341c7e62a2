"""VOC reader on real VOC2012 data (shared/data/voc_rodm, voc_labelme_instance) and a hand-made VOC folder."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from spt_data import DataError, read_voc
from spt_data.categories import VOC_CLASSES


def test_voc_rodm_counts(shared_data):
    root = shared_data / "voc_rodm" / "VOCdevkit" / "VOC2012"
    ds = read_voc(root, split="trainval", check_images="decode")
    assert len(ds.records) == 50
    assert sum(r.num_instances for r in ds.records) == 119
    counts = Counter(n for r in ds.records for n in r.category_names)
    assert set(counts) == set(VOC_CLASSES)
    assert counts["person"] == 34 and counts["car"] == 13 and counts["cat"] == 1
    assert sum(int(r.ignore.sum()) for r in ds.records) == 20  # difficult=1
    assert all(m is None for r in ds.records for m in r.masks)  # this copy ships no PNGs


def test_voc_rodm_boxes_match_xml(shared_data):
    root = shared_data / "voc_rodm" / "VOCdevkit" / "VOC2012"
    for rec in read_voc(root).records:
        xml = ET.parse(root / "Annotations" / f"{rec.image_id}.xml").getroot()
        objs = xml.findall("object")
        assert rec.num_instances == len(objs)
        for k, o in enumerate(objs):
            bb = [float(o.find(f"bndbox/{t}").text) for t in ("xmin", "ymin", "xmax", "ymax")]
            np.testing.assert_allclose(
                rec.boxes[k], [bb[0] - 1, bb[1] - 1, bb[2], bb[3]]
            )  # 1-based inclusive
            assert rec.category_names[k] == o.find("name").text
            assert bool(rec.ignore[k]) == (o.find("difficult").text == "1")


def test_labelme_instances_match_png(shared_data):
    root = shared_data / "voc_labelme_instance" / "VOC2012"
    ds = read_voc(root, split=None, instances="segmentation")
    total = 0
    for rec in ds.records:
        png = np.array(Image.open(root / "SegmentationObject" / f"{rec.image_id}.png"))
        values = [v for v in np.unique(png) if v not in (0, 255)]
        assert rec.num_instances == len(values)
        total += len(values)
        for k, v in enumerate(values):
            assert np.array_equal(rec.masks[k].decode(rec.height, rec.width), png == v)
            ys, xs = np.nonzero(png == v)
            assert rec.boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert total == 12
    names = Counter(n for r in ds.records for n in r.category_names)
    assert names == {"person": 6, "bottle": 1, "chair": 1, "sofa": 1, "bus": 2, "car": 1}


def test_labelme_xml_order_mismatch_is_an_error(shared_data):
    """labelme's XML (9 boxes) does not follow its masks (12 instances): VOC's xml<->mask rule must refuse it."""
    root = shared_data / "voc_labelme_instance" / "VOC2012"
    with pytest.raises(
        DataError,
        match=r"2011_000003.xml: image '2011_000003': SegmentationObject has instance 3 but the XML has 2 objects",
    ):
        read_voc(root, split=None)
    xml_only = read_voc(root, split=None, on_error="skip")
    assert xml_only.num_skipped == 2  # 2011_000003 and 2011_000006 disagree; 2011_000025 (3 = 3) is read
    (rec,) = xml_only.records
    assert rec.image_id == "2011_000025" and rec.category_names == ("bus", "bus", "car")


def _voc_folder(tmp_path, write_jpeg, objects, inst=None, cls=None):
    root = tmp_path / "VOC"
    write_jpeg(root / "JPEGImages" / "x.jpg", 40, 30)
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "x.xml").write_text(
        f"<annotation><filename>x.jpg</filename><size><width>40</width><height>30</height></size>{objs}</annotation>"
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("x\n")
    for folder, arr in (("SegmentationObject", inst), ("SegmentationClass", cls)):
        if arr is not None:
            (root / folder).mkdir()
            Image.fromarray(arr.astype(np.uint8), mode="L").convert("P").save(root / folder / "x.png")
    return root


def test_xml_masks_follow_object_order(tmp_path, write_jpeg):
    inst = np.zeros((30, 40), np.uint8)
    inst[2:8, 3:9] = 1
    inst[10:20, 20:30] = 2
    inst[9, :] = 255  # void border: part of no instance
    cls = np.where(inst == 1, 15, np.where(inst == 2, 12, 0))  # person, dog
    root = _voc_folder(tmp_path, write_jpeg, [("person", (4, 3, 9, 8)), ("dog", (21, 11, 30, 20))], inst, cls)
    (rec,) = read_voc(root).records
    assert np.array_equal(rec.masks[0].decode(30, 40), inst == 1)
    assert np.array_equal(rec.masks[1].decode(30, 40), inst == 2)
    np.testing.assert_allclose(rec.boxes[0], [3, 2, 9, 8])
    swapped = _voc_folder(
        tmp_path / "b", write_jpeg, [("dog", (21, 11, 30, 20)), ("person", (4, 3, 9, 8))], inst, cls
    )
    with pytest.raises(
        DataError, match="instance 1 is class 'person' in SegmentationClass but object 0 is 'dog'"
    ):
        read_voc(swapped)
