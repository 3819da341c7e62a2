"""BDD100K / Scalabel frame lists -> records (detection and tracking label files alike).

A file is a JSON array of frames (or a Scalabel dataset object ``{"frames": [...]}``). A frame has
``name``, optional ``videoName``/``frameIndex`` and ``labels``; a label has ``category``, ``box2d``
and optionally ``poly2d`` and ``rle``. Conventions (those of the Scalabel/BDD100K toolkit):

- ``box2d`` corners are inclusive pixel indices (the toolkit's COCO conversion uses width
  ``x2 - x1 + 1``), so the continuous box is ``[x1, y1, x2 + 1, y2 + 1]``.
- ``poly2d`` vertex types ``L`` (on the outline) and ``C`` (cubic Bezier control points, in pairs,
  ending at the next vertex, wrapping to the first one when closed), as matplotlib's CURVE4 reads
  them; curves are flattened to :data:`BEZIER_STEPS` segments. ``rle`` is COCO compressed RLE.
  When a label has both, the RLE (exact pixels) is the mask. Every mask is checked
  (:mod:`.maskcheck`): valid RLE of the image's size, polygon inside the image, not empty, extent
  agreeing with ``box2d`` (a label without ``box2d`` gets the mask's extent as its box).
- Categories: the 10 detection classes with BDD's name and ignore mappings (:mod:`.categories`);
  ``drivable area``/``lane`` labels are not objects: they are left out and their count is logged.
  Any other category is an error. ``attributes.crowd`` -> iscrowd.

Images are ``image_root/videoName/name`` when that file exists (BDD tracking layout), else
``image_root/name``. Frames carry no size: it is read from the image header, so ``check_images="none"``
needs ``image_size`` (width, height) for every frame (label files without their images, such as
evaluation ground truth); when images are checked too, each must have that size. Duplicate frame names make every frame with that name a bad record.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .categories import BDD_CLASSES, BDD_NON_OBJECT, bdd_category
from .errors import DataError, OnError, as_policy
from .images import check_image
from .jsonfile import load_json, type_name
from .maskcheck import extent_problem, mask_extent
from .records import Dataset, Mask, PolygonMask, Record, RleMask, box_problem

__all__ = ["BEZIER_STEPS", "flatten_poly2d", "read_bdd"]

_log = logging.getLogger(__name__)

BEZIER_STEPS = 10
Progress = Callable[[Iterable[Any]], Iterable[Any]]


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def flatten_poly2d(vertices: Sequence[Sequence[float]], types: str, closed: bool) -> np.ndarray:
    """Scalabel poly2d -> outline points [P, 2] with cubic Bezier pieces flattened. Raises ValueError."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)  # [V, 2]
    n = len(v)
    if len(types) != n:
        raise ValueError(f"poly2d has {n} vertices but {len(types)} types {types!r}")
    if n == 0 or types[0] != "L":
        raise ValueError(f"poly2d types must start with 'L', got {types!r}")
    t = np.linspace(0.0, 1.0, BEZIER_STEPS + 1)[1:, None]  # [S, 1]
    out = [v[:1]]
    i = 1
    while i < n:
        if types[i] == "L":
            out.append(v[i : i + 1])
            i += 1
        elif types[i] == "C":
            if i + 1 >= n or types[i + 1] != "C":
                raise ValueError(f"poly2d control points must come in pairs, got types {types!r}")
            if i + 2 < n:
                end = v[i + 2]
            elif closed:
                end = v[0]
            else:
                raise ValueError(f"open poly2d ends with control points, types {types!r}")
            p0, c1, c2 = out[-1][-1], v[i], v[i + 1]
            curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end
            out.append(curve)  # [S, 2]
            i += 3
        else:
            raise ValueError(f"poly2d vertex type {types[i]!r} is not 'L' or 'C'")
    return np.concatenate(out)


def _mask(label: dict[str, Any], height: int, width: int) -> tuple[Mask | None, str | None]:
    rle = label.get("rle")
    if rle is not None:
        if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
            return None, f"'rle' must be an object with string 'counts', got {type_name(rle)}"
        if rle.get("size") != [height, width]:
            return None, f"rle size {rle.get('size')} != image size [{height}, {width}]"
        if not rle["counts"].isascii():
            return None, "invalid RLE counts string: it has a non-ASCII character"
        return RleMask(rle["counts"].encode("ascii"), (height, width)), None
    polys = label.get("poly2d")
    if not polys:
        return None, None
    rings = []
    for j, p in enumerate(polys):
        try:
            if not isinstance(p, dict):
                raise ValueError(f"must be an object, got {type_name(p)}")
            pts = flatten_poly2d(
                p.get("vertices") or [], str(p.get("types", "")), bool(p.get("closed", True))
            )
        except (ValueError, TypeError) as e:
            return None, f"poly2d {j}: {e}"
        if len(pts) < 3 or not np.isfinite(pts).all():
            return None, f"poly2d {j}: needs >= 3 finite vertices, got {pts.tolist()}"
        rings.append(pts.reshape(-1))
    return PolygonMask(tuple(rings)), None


def _box(
    label: dict[str, Any], extent: tuple[float, ...] | None, height: int, width: int
) -> tuple[tuple[float, ...] | None, str | None]:
    """-> (continuous box: box2d, else the extent of the (already checked) mask, None) or (None, problem)."""
    b = label.get("box2d")
    if b is None:
        if extent is None:
            return None, "label has neither 'box2d' nor a mask"
        return extent, None
    if not isinstance(b, dict) or not all(_num(b.get(k)) for k in ("x1", "y1", "x2", "y2")):
        return None, f"'box2d' must have numeric x1, y1, x2, y2, got {b!r}"
    x1, y1, x2, y2 = (float(b[k]) for k in ("x1", "y1", "x2", "y2"))
    for k, val in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)):
        if not math.isfinite(val):
            return None, f"box2d has a non-finite coordinate {k}={val}"
    if x2 < x1 or y2 < y1:
        return None, box_problem(x1, y1, x2, y2, width, height)
    return (x1, y1, x2 + 1.0, y2 + 1.0), None  # inclusive corners -> continuous box


def _load_frames(path: Path) -> list[Any]:
    data = load_json(path)
    if isinstance(data, dict) and isinstance(data.get("frames"), list):
        return data["frames"]
    if not isinstance(data, list):
        raise DataError(f"{path}: top-level JSON is an {type_name(data)}, expected an array of frames")
    return data


def read_bdd(
    label_files: str | Path | Sequence[str | Path],
    image_root: str | Path,
    *,
    on_error: OnError | str = "raise",
    check_images: str = "header",
    image_size: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Read BDD100K/Scalabel frame lists (one file, a list of files, or a folder of ``*.json``)."""
    policy, root = as_policy(on_error), Path(image_root)
    skipped0 = policy.count
    if check_images == "none" and image_size is None:
        raise ValueError("check_images='none' needs image_size=(width, height): BDD frames carry no size")
    files = _label_files(label_files)
    frames: list[tuple[Path, int, dict[str, Any]]] = []
    for path in files:
        for i, fr in enumerate(_load_frames(path)):
            if not isinstance(fr, dict) or not isinstance(fr.get("name"), str) or not fr["name"]:
                policy(
                    DataError(
                        f"{path}: frame {i}: must be an object with a non-empty string 'name', got {fr!r:.80}"
                    ),
                    "frame",
                )
                continue
            frames.append((path, i, fr))
    names = Counter(fr["name"] for _, _, fr in frames)
    records, non_object = [], Counter()
    for path, i, fr in progress(frames) if progress else frames:
        where = f"{path}: frame {i} ('{fr['name']}')"
        try:
            if names[fr["name"]] > 1:
                raise DataError(f"{where}: duplicate frame name ({names[fr['name']]} frames in the input)")
            records.append(_build_record(path, i, fr, root, where, check_images, image_size, non_object))
        except DataError as err:
            policy(err, "frame")
    for path, n in non_object.items():
        _log.info("%s: left out %d non-object labels (%s)", path, n, ", ".join(sorted(BDD_NON_OBJECT)))
    n_skipped = policy.count - skipped0
    _log.info(
        "%d frames from %d file(s) -> %d records, %d skipped",
        len(frames),
        len(files),
        len(records),
        n_skipped,
    )
    cats = {i + 1: n for i, n in enumerate(BDD_CLASSES)}
    return Dataset("bdd", records, cats, [str(p) for p in files], n_skipped)


def _label_files(label_files: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [label_files] if isinstance(label_files, str | Path) else list(label_files)
    files: list[Path] = []
    for item in map(Path, items):
        found = sorted(item.glob("*.json")) if item.is_dir() else [item]
        if not found:
            raise DataError(f"{item}: no *.json label files in this folder")
        files.extend(found)
    if not files:
        raise DataError("no label files given")
    return files


def _image_path(root: Path, fr: dict[str, Any], check_images: str) -> Path:
    flat = root / fr["name"]
    video = fr.get("videoName")
    if isinstance(video, str) and video:
        nested = root / video / fr["name"]
        if check_images == "none" or nested.is_file() or not flat.is_file():
            return nested
    return flat


def _build_record(
    path: Path,
    index: int,
    fr: dict[str, Any],
    root: Path,
    where: str,
    check_images: str,
    image_size: tuple[int, int] | None,
    non_object: Counter,
) -> Record:
    image_path = _image_path(root, fr, check_images)
    size = check_image(image_path, where, mode=check_images)
    if size is not None and image_size is not None and tuple(size) != tuple(image_size):
        raise DataError(
            f"{where}: image {image_path} is {size[0]}x{size[1]} but image_size is {image_size[0]}x{image_size[1]}"
        )
    width, height = size if size is not None else image_size  # type: ignore[misc]
    labels = fr.get("labels") or []
    if not isinstance(labels, list):
        raise DataError(f"{where}: 'labels' must be an array, got {type_name(labels)}")
    rows = []
    for j, lab in enumerate(labels):
        lwhere = f"{where}: label {j}"
        if not isinstance(lab, dict):
            raise DataError(f"{lwhere}: must be an object, got {type_name(lab)}")
        cat = lab.get("category")
        if isinstance(cat, str) and cat.strip().lower() in BDD_NON_OBJECT:
            non_object[path] += 1
            continue
        rows.append(_parse_label(lab, j, f"{lwhere} (id {lab.get('id')})", width, height))
    extra = {k: str(fr[k]) for k in ("videoName", "frameIndex") if fr.get(k) is not None}
    return Record.from_instances(
        rows,
        image_id=fr["name"],
        image_path=str(image_path),
        width=width,
        height=height,
        source=str(path),
        source_index=index,
        extra=extra,
    )


def _parse_label(lab: dict[str, Any], j: int, where: str, width: int, height: int) -> tuple[Any, ...]:
    """One Scalabel label -> (box, category_id, name, iscrowd, ignore, mask, ann_id); DataError if bad."""
    cat = lab.get("category")
    mapped = bdd_category(cat) if isinstance(cat, str) else None
    if mapped is None:
        raise DataError(f"{where}: unknown category {cat!r}")
    mask, problem = _mask(lab, height, width)
    box, extent = None, None
    if problem is None and mask is not None:
        extent, problem = mask_extent(mask, height, width)
    if problem is None:
        box, problem = _box(lab, extent, height, width)
    if problem is None:
        problem = box_problem(*box, width, height)  # type: ignore[misc]
    if problem is None and extent is not None:
        problem = extent_problem(extent, box)  # type: ignore[arg-type]
    if problem:
        raise DataError(f"{where}: {problem}")
    attrs = lab.get("attributes") or {}
    crowd = bool(attrs.get("crowd", False)) if isinstance(attrs, dict) else False
    return box, mapped[0], mapped[1], crowd, mapped[2], mask, str(lab.get("id", j))
