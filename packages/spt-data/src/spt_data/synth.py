"""The embedded default dataset: synthetic street scenes written as real files.

``generate(out, num_images, seed, split)`` writes, for split ``train`` say::

    out/images/train/synth_000000.jpg ...            real JPEGs (quality 90)
    out/labels/train.json                            BDD100K/Scalabel frame list (box2d + rle)
    out/annotations/instances_train.json             COCO instances (bbox + compressed RLE)
    out/synth_train.json                             generation parameters

A split is written into a temporary folder inside ``out`` (``.synth-<split>.<pid>.<random>``) and
moved into place when complete: old label files first removed, then the old images, then the new
images moved in, the label files last. An interrupted run leaves the old split, or images without
label files, never label files beside images they do not describe; a killed run's temporary folder
is removed by the next run of that split (logged, :func:`remove_leftovers`), unless its process
still runs. A split that exists is replaced only with ``overwrite=True``.

Image ``i`` of a split is a function of ``(seed, split, i)`` only (``SeedSequence([seed, crc32(split),
i])``), so the same seed gives byte-identical files, a different seed different ones, and train/val
splits made with one seed differ. Boxes are the extents of the visible masks; in the BDD file they
use Scalabel's inclusive corners, in the COCO file ``[x, y, w, h]``; both readers give the same boxes.
"""

from __future__ import annotations

import glob
import io as _io
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .categories import BDD_CLASSES
from .io import atomic_write_json
from .records import Record, rle_from_bitmap
from .scene import render_scene, sample_layout

__all__ = [
    "DEFAULT_SIZE",
    "existing_split",
    "generate",
    "layout_records",
    "remove_leftovers",
    "render_image",
    "scene_records",
]

_log = logging.getLogger(__name__)

DEFAULT_SIZE = (320, 192)
JPEG_QUALITY = 90
Progress = Callable[[Iterable[Any]], Iterable[Any]]


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]))


def render_image(
    seed: int, split: str, index: int, width: int, height: int
) -> tuple[bytes, list[dict[str, Any]]]:
    """-> (JPEG bytes, instances: category, box (x1, y1, x2, y2 continuous px), area, rle, occluded, truncated)."""
    img, objs = render_scene(_rng(seed, split, index), width, height)
    buf = _io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    instances = []
    for cat, mask, occluded, truncated in objs:
        ys, xs = np.nonzero(mask)
        rle = rle_from_bitmap(mask)
        instances.append(
            {
                "category": cat,
                "box": (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                "area": int(mask.sum()),
                "rle": rle.counts.decode("ascii"),
                "occluded": occluded,
                "truncated": truncated,
            }
        )
    return buf.getvalue(), instances


def is_crowd(box: tuple[float, float, float, float], min_size: float) -> bool:
    """An object whose box is less than ``min_size`` px on its shorter side is written as crowd: it
    stays in the selection labels and is ignored by COCOeval, but is no training target."""
    x1, y1, x2, y2 = box
    return min(x2 - x1, y2 - y1) < min_size


def _bdd_frame(
    index: int, name: str, instances: list[dict[str, Any]], width: int, height: int, min_size: float = 0
) -> dict[str, Any]:
    labels = []
    for j, inst in enumerate(instances):
        x1, y1, x2, y2 = inst["box"]
        crowd = is_crowd(inst["box"], min_size)
        labels.append(
            {
                "id": f"{index}-{j}",
                "category": inst["category"],
                "attributes": {"occluded": inst["occluded"], "truncated": inst["truncated"], "crowd": crowd},
                "box2d": {"x1": x1, "y1": y1, "x2": x2 - 1, "y2": y2 - 1},  # Scalabel: inclusive corners
                "rle": {"counts": inst["rle"], "size": [height, width]},
            }
        )
    return {"name": name, "attributes": {"weather": "clear", "scene": "city street"}, "labels": labels}


def _coco_annotations(
    image_id: int,
    instances: list[dict[str, Any]],
    width: int,
    height: int,
    first_id: int,
    min_size: float = 0,
) -> list[dict[str, Any]]:
    out = []
    for j, inst in enumerate(instances):
        x1, y1, x2, y2 = inst["box"]
        out.append(
            {
                "id": first_id + j,
                "image_id": image_id,
                "category_id": BDD_CLASSES.index(inst["category"]) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": inst["area"],
                "iscrowd": int(is_crowd(inst["box"], min_size)),
                "segmentation": {"size": [height, width], "counts": inst["rle"]},
            }
        )
    return out


def _split_paths(out: Path, split: str) -> dict[str, Path]:
    return {
        "images": out / "images" / split,
        "bdd": out / "labels" / f"{split}.json",
        "coco": out / "annotations" / f"instances_{split}.json",
        "meta": out / f"synth_{split}.json",
    }


def existing_split(out: str | Path, split: str) -> list[Path]:
    """-> the paths of split ``split`` that already exist under ``out`` (empty: free to write)."""
    return [p for p in _split_paths(Path(out), split).values() if p.exists()]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(out: Path, split: str) -> list[Path]:
    """Remove the temporary folders of split ``split`` that killed runs left in ``out`` (each logged);
    a folder whose process still runs is named and left. -> the removed folders."""
    prefix, removed = f".synth-{split}.", []
    for path in sorted(out.glob(f"{glob.escape(prefix)}*")):
        m = re.fullmatch(r"(?:(\d+)\.)?[a-z0-9_]+", path.name[len(prefix) :])
        if m is None or not path.is_dir():
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid is not None and pid != os.getpid() and _running(pid):
            _log.warning("%s: temporary folder of synth process %d, still running; left in place", path, pid)
            continue
        shutil.rmtree(path)
        _log.warning("removed %s: temporary folder of an interrupted synth run", path)
        removed.append(path)
    return removed


def _move_into_place(new: dict[str, Path], dest: dict[str, Path]) -> None:
    """Replace the split at ``dest`` by the complete one at ``new`` (order: module doc)."""
    for key in ("meta", "coco", "bdd"):
        dest[key].unlink(missing_ok=True)
    if dest["images"].exists():
        shutil.rmtree(dest["images"])
    for key in ("images", "bdd", "coco", "meta"):
        dest[key].parent.mkdir(parents=True, exist_ok=True)
        os.replace(new[key], dest[key])


def generate(
    out: str | Path,
    num_images: int = 200,
    seed: int = 0,
    split: str = "train",
    size: tuple[int, int] = DEFAULT_SIZE,
    progress: Progress | None = None,
    overwrite: bool = False,
    min_size: float = 0,
) -> dict[str, Path]:
    """Write ``num_images`` scenes of ``size`` (width, height) under ``out``; -> paths of what was written.

    min_size: objects smaller than this (px, shorter box side) are labelled crowd (:func:`is_crowd`).

    Raises FileExistsError when ``out`` already holds the split and ``overwrite`` is False.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"image size must be at least 32x32, got {width}x{height}")
    out = Path(out)
    held = existing_split(out, split)
    if held and not overwrite:
        raise FileExistsError(f"{out} already holds split {split!r} ({held[0]}); pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out, split)
    tmp = Path(tempfile.mkdtemp(prefix=f".synth-{split}.{os.getpid()}.", dir=out))
    try:
        n_inst = _write_split(
            _split_paths(tmp, split), num_images, seed, split, (width, height), progress, min_size
        )
        paths = _split_paths(out, split)
        _move_into_place(_split_paths(tmp, split), paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _log.info("wrote %d synthetic images with %d instances to %s", num_images, n_inst, out)
    return paths


def _write_split(
    paths: dict[str, Path],
    num_images: int,
    seed: int,
    split: str,
    size: tuple[int, int],
    progress: Progress | None,
    min_size: float = 0,
) -> int:
    """Write one split (images, then the label files) to ``paths``; -> number of instances."""
    width, height = size
    paths["images"].mkdir(parents=True)
    frames, images, annotations = [], [], []
    indices = range(num_images)
    for i in progress(indices) if progress else indices:
        name = f"synth_{i:06d}.jpg"
        jpeg, instances = render_image(seed, split, i, width, height)
        (paths["images"] / name).write_bytes(jpeg)
        frames.append(_bdd_frame(i, name, instances, width, height, min_size))
        first = len(annotations) + 1
        annotations += _coco_annotations(i + 1, instances, width, height, first_id=first, min_size=min_size)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
    coco = {
        "info": {"description": f"spt-data synthetic street scenes, seed {seed}, split {split}"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(BDD_CLASSES)
        ],
    }
    atomic_write_json(paths["bdd"], frames)
    atomic_write_json(paths["coco"], coco)
    meta = {"seed": seed, "split": split, "num_images": num_images, "width": width, "height": height}
    meta["min_size"] = min_size
    atomic_write_json(paths["meta"], {**meta, "num_instances": len(annotations)}, indent=2)
    return len(annotations)


def layout_records(num_images: int, seed: int = 0, size: tuple[int, int] = (1280, 720)) -> list[Record]:
    """In-memory records of synthetic scene layouts (boxes only, no pixels): for benchmarks and tests.

    Boxes are the objects' extents clipped to the image (no occlusion filtering: nothing is rendered).
    """
    width, height = size
    records = []
    for i in range(num_images):
        _, objs = sample_layout(_rng(seed, "layout", i), width, height)
        boxes, names = [], []
        for o in objs:
            x1, y1, x2, y2 = o.extent()
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                boxes.append((x1, y1, x2, y2))
                names.append(o.category)
        records.append(
            Record.build(
                image_id=f"layout_{i:06d}",
                image_path="",
                width=width,
                height=height,
                boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                category_ids=[BDD_CLASSES.index(n) + 1 for n in names],
                category_names=names,
                source="synth.layout_records",
                source_index=i,
            )
        )
    return records


def scene_records(num_images: int, seed: int = 0, size: tuple[int, int] = (1280, 720)) -> list[Record]:
    """In-memory records of rendered synthetic scenes with their visible masks as RLE (the labels
    ``generate`` writes, without the files): for benchmarks and tests. Box = the mask's extent."""
    width, height = size
    records = []
    for i in range(num_images):
        _, objs = render_scene(_rng(seed, "scene", i), width, height)
        boxes = []
        for _, mask, _, _ in objs:
            ys, xs = np.nonzero(mask)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        records.append(
            Record.build(
                image_id=f"scene_{i:06d}",
                image_path="",
                width=width,
                height=height,
                boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                category_ids=[BDD_CLASSES.index(o[0]) + 1 for o in objs],
                category_names=[o[0] for o in objs],
                masks=[rle_from_bitmap(o[1]) for o in objs],
                source="synth.scene_records",
                source_index=i,
            )
        )
    return records
