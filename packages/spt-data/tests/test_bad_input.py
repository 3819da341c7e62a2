"""Bad input, table-driven: every case raises a DataError naming the file and the record, or with
``on_error="skip"`` is counted and logged while the good records are kept. File-level cases (the file
itself is unreadable: no record to skip) raise in both modes."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from spt_data import DataError, read_bdd, read_coco, read_labels, read_records, read_voc
from spt_data.labels import write_labels


def _jpeg(path: Path, w: int = 128, h: int = 96) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, format="JPEG")


COCO_OK = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 128, "height": 96},
        {"id": 2, "file_name": "b.jpg", "width": 128, "height": 96},
    ],
    "annotations": [
        {"id": 4711, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "iscrowd": 0},
        {"id": 4712, "image_id": 2, "category_id": 3, "bbox": [30, 10, 20, 20], "iscrowd": 0},
    ],
    "categories": [{"id": 3, "name": "car"}],
}


@dataclass
class Case:
    read: Callable[[str], Any]  # on_error -> Dataset
    message: list[str]  # substrings the error must contain: the file, the record, the bad value
    skipped: int | None  # records skipped with on_error="skip"; None: file-level, raises in both modes
    kept: int = 1


def _coco(
    tmp: Path, edit: Callable[[dict], Any] | None = None, text: str | None = None, **kw: Any
) -> Callable[[str], Any]:
    _jpeg(tmp / "img" / "a.jpg")
    _jpeg(tmp / "img" / "b.jpg")
    data = copy.deepcopy(COCO_OK)
    if edit:
        edit(data)
    (tmp / "instances.json").write_text(text if text is not None else json.dumps(data))
    return lambda on_error: read_coco(tmp / "instances.json", tmp / "img", on_error=on_error, **kw)


def _bdd(tmp: Path, label_a: dict | None = None, frames: Any = None) -> Callable[[str], Any]:
    _jpeg(tmp / "img" / "a.jpg")
    _jpeg(tmp / "img" / "b.jpg")
    ok = {"id": "8", "category": "car", "box2d": {"x1": 5, "y1": 5, "x2": 20, "y2": 20}}
    if frames is None:
        frames = [{"name": "a.jpg", "labels": [label_a or ok]}, {"name": "b.jpg", "labels": [ok]}]
    (tmp / "det.json").write_text(json.dumps(frames))
    return lambda on_error: read_bdd(tmp / "det.json", tmp / "img", on_error=on_error)


def _voc(
    tmp: Path, xml_a: str | None = None, image_size: tuple[int, int] = (128, 96)
) -> Callable[[str], Any]:
    root = tmp / "VOC2012"
    good = (
        "<annotation><filename>{id}.jpg</filename><size><width>128</width><height>96</height></size>"
        "<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>5</ymin>"
        "<xmax>{x2}</xmax><ymax>40</ymax></bndbox></object></annotation>"
    )
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n")
    _jpeg(root / "JPEGImages" / "a.jpg", *image_size)
    _jpeg(root / "JPEGImages" / "b.jpg")
    (root / "Annotations" / "a.xml").write_text(xml_a or good.format(id="a", cls="dog", x2=40))
    (root / "Annotations" / "b.xml").write_text(good.format(id="b", cls="cat", x2=40))
    return lambda on_error: read_voc(root, on_error=on_error)


def _label_parquet(tmp: Path) -> Callable[[str], Any]:
    path = tmp / "labels.parquet"
    write_labels(
        path,
        [
            {
                "image_id": "a",
                "stride": 8,
                "grid_h": 1,
                "grid_w": 1,
                "frame_w": 8,
                "frame_h": 8,
                "bits": b"\x80",
            }
        ],
        {},
    )
    table = pq.read_table(path)
    pq.write_table(
        table.replace_schema_metadata({**table.schema.metadata, b"spt_data.schema_version": b"0"}), path
    )
    return lambda on_error: read_labels(path)


def _records_parquet(tmp: Path) -> Callable[[str], Any]:
    path = tmp / "records.parquet"
    pq.write_table(
        pq.read_table(_coco_to_records(tmp)).replace_schema_metadata({b"spt_data.kind": b"records"}), path
    )
    return lambda on_error: read_records(path)


def _coco_to_records(tmp: Path) -> Path:
    from spt_data import write_records

    write_records(tmp / "ok.parquet", _coco(tmp)("raise"))
    return tmp / "ok.parquet"


def _after(read: Callable[[str], Any], damage: Callable[[], Any]) -> Callable[[str], Any]:
    damage()
    return read


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _set(path: list[Any], value: Any) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


A0 = "annotation 0 (id 4711) of image 'a.jpg'"
CASES: dict[str, Callable[[Path], Case]] = {
    "truncated json": lambda t: Case(
        _coco(t, text=json.dumps(COCO_OK)[:70]), ["instances.json", "invalid JSON at line 1 column"], None
    ),
    "wrong top-level type": lambda t: Case(
        _coco(t, text="[1, 2]"), ["instances.json", "top-level JSON is an array"], None
    ),
    "missing image file": lambda t: Case(
        _coco(t, _set(["images", 0, "file_name"], "gone.jpg")),
        ["instances.json: image 0 (id 1, 'gone.jpg')", "image file not found"],
        1,
    ),
    "corrupt jpeg": lambda t: Case(
        _after(_coco(t), lambda: (t / "img" / "a.jpg").write_bytes(b"\xff\xd8garbage")),
        ["instances.json: image 0 (id 1, 'a.jpg')", "not a recognised image file"],
        1,
    ),
    "truncated jpeg (decode check)": lambda t: Case(
        _after(_coco(t, check_images="decode"), lambda: _truncate(t / "img" / "a.jpg")),
        ["instances.json: image 0 (id 1, 'a.jpg')", "cannot decode image", "Truncated"],
        1,
    ),
    "truncated jpeg (default header check)": lambda t: Case(
        _after(_coco(t), lambda: _truncate(t / "img" / "a.jpg", keep=0.8)),  # header intact, pixels cut
        [
            "instances.json: image 0 (id 1, 'a.jpg'): image ",
            "a.jpg is truncated: no JPEG end-of-image marker in its last 4096 bytes",
        ],
        1,
    ),
    "image size disagrees with json": lambda t: Case(
        _coco(t, _set(["images", 0, "width"], 100)),
        ["image 0 (id 1, 'a.jpg')", "is 128x96 but the annotation says 100x96"],
        1,
    ),
    "box outside image": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [100, 10, 40, 10])),
        [f"instances.json: {A0}: box x2=140 > width 128 (tolerance 1 px)"],
        1,
    ),
    "box left of image": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [-5, 10, 40, 10])), [A0, "box x1=-5 < 0"], 1
    ),
    "x2 < x1 (bdd)": lambda t: Case(
        _bdd(t, {"id": "7", "category": "car", "box2d": {"x1": 20, "y1": 5, "x2": 10, "y2": 9}}),
        ["det.json: frame 0 ('a.jpg'): label 0 (id 7): box x2=10 < x1=20"],
        1,
    ),
    "negative width (coco)": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [10, 10, -3, 5])), [A0, "bbox has negative size w=-3"], 1
    ),
    "zero area": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [10, 10, 0, 5])), [A0, "bbox has zero area (w=0 h=5)"], 1
    ),
    "unknown category (coco)": lambda t: Case(
        _coco(t, _set(["annotations", 0, "category_id"], 99)), [A0, "unknown category_id 99"], 1
    ),
    "unknown category (bdd)": lambda t: Case(
        _bdd(t, {"id": "7", "category": "spaceship", "box2d": {"x1": 1, "y1": 1, "x2": 5, "y2": 5}}),
        ["det.json: frame 0 ('a.jpg'): label 0 (id 7): unknown category 'spaceship'"],
        1,
    ),
    "duplicate image id": lambda t: Case(
        _coco(t, lambda d: (d["images"][1].update(id=1), d["annotations"][1].update(image_id=1))),
        ["instances.json: image 0 (id 1, 'a.jpg'): duplicate image id (also image 1)"],
        2,
        0,
    ),
    "duplicate annotation id": lambda t: Case(
        _coco(t, _set(["annotations", 1, "id"], 4711)),
        [f"instances.json: {A0}: duplicate annotation id (2 annotations have it)"],
        2,
        0,
    ),
    "annotation of a missing image": lambda t: Case(
        _coco(t, _set(["annotations", 1, "image_id"], 42)),
        ["instances.json: annotation 1 (id 4712): image_id 42 is not in 'images'"],
        1,
        2,
    ),
    "nan coordinate (coco)": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [float("nan"), 1, 2, 3])), [A0, "non-finite value [nan"], 1
    ),
    "nan coordinate (bdd)": lambda t: Case(
        _bdd(t, {"id": "7", "category": "car", "box2d": {"x1": float("nan"), "y1": 1, "x2": 5, "y2": 5}}),
        ["det.json: frame 0 ('a.jpg'): label 0 (id 7): box2d has a non-finite coordinate x1=nan"],
        1,
    ),
    "bbox not 4 numbers": lambda t: Case(
        _coco(t, _set(["annotations", 0, "bbox"], [1, 2, 3])), [A0, "'bbox' must be 4 numbers"], 1
    ),
    "rle size mismatch": lambda t: Case(
        _coco(t, _set(["annotations", 0, "segmentation"], {"size": [10, 10], "counts": "abc"})),
        [A0, "RLE size [10, 10] != image size [96, 128]"],
        1,
    ),
    "duplicate frame name (bdd)": lambda t: Case(
        _bdd(t, frames=[{"name": "a.jpg", "labels": []}, {"name": "a.jpg", "labels": []}, {"name": "b.jpg"}]),
        ["det.json: frame 0 ('a.jpg'): duplicate frame name"],
        2,
    ),
    "bdd frames not an array": lambda t: Case(
        _bdd(t, frames={"name": "a.jpg"}), ["det.json", "expected an array of frames"], None
    ),
    "unreadable xml": lambda t: Case(_voc(t, "<annotation><size>"), ["a.xml: image 'a': unreadable XML"], 1),
    "unknown voc class": lambda t: Case(
        _voc(
            t,
            "<annotation><size><width>128</width><height>96</height></size><object><name>dragon</name></object></annotation>",
        ),
        ["a.xml: image 'a': object 0 ('dragon'): unknown class 'dragon'"],
        1,
    ),
    "voc box outside image": lambda t: Case(
        _voc(
            t,
            "<annotation><size><width>128</width><height>96</height></size><object><name>dog</name><bndbox><xmin>5</xmin>"
            "<ymin>5</ymin><xmax>600</xmax><ymax>40</ymax></bndbox></object></annotation>",
        ),
        ["a.xml: image 'a': object 0 ('dog'): box x2=600 > width 128"],
        1,
    ),
    "voc image size mismatch": lambda t: Case(
        _voc(t, image_size=(64, 96)), ["a.xml: image 'a'", "is 64x96 but the annotation says 128x96"], 1
    ),
    "coco without categories": lambda t: Case(
        _coco(t, lambda d: d.pop("categories")),
        ["instances.json: 'categories' must be an array, got null"],
        None,
    ),
    "voc split file missing": lambda t: Case(
        _after(_voc(t), lambda: (t / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").unlink()),
        ["trainval.txt: split file not found"],
        None,
    ),
    "voc xml listed but absent": lambda t: Case(
        _after(_voc(t), lambda: (t / "VOC2012" / "Annotations" / "a.xml").unlink()),
        ["a.xml: image 'a': annotation file not found (listed as record 0 in", "trainval.txt"],
        1,
    ),
    "labels parquet wrong schema version": lambda t: Case(
        _label_parquet(t), ["labels.parquet: selection-label schema version '0', this reader needs 1"], None
    ),
    "records parquet without version": lambda t: Case(
        _records_parquet(t), ["records.parquet: records schema version None"], None
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_raise_names_file_and_record(name, tmp_path):
    case = CASES[name](tmp_path)
    with pytest.raises(DataError) as info:
        case.read("raise")
    for part in case.message:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("name", list(CASES))
def test_skip_counts_and_logs(name, tmp_path, caplog):
    case = CASES[name](tmp_path)
    if case.skipped is None:  # file-level: nothing can be counted, so skip mode raises too
        with pytest.raises(DataError):
            case.read("skip")
        return
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        ds = case.read("skip")
    assert ds.num_skipped == case.skipped
    assert len(ds.records) == case.kept
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("skipped ")
    ]
    assert len(logged) == case.skipped
    for part in case.message:
        assert any(part in m for m in logged), (part, logged)
