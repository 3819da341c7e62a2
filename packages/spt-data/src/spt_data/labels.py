"""Multi-scale selection labels (paper Sec. 3.2): per image and stride, a bool grid of object cells.

The union of the instances is rasterised in the training frame (:mod:`.frame`, rule in
:mod:`.raster`): an instance counts by its mask when it has one (and ``use_masks``), else by its box.
Masks go straight from their RLE runs to cells (:func:`instance_rects`, :func:`.raster.rect_cells`),
never through an ``h x w`` bitmap; :func:`selection_labels_reference` is the per-pixel reference.
Crowd and ignore instances count too (they cover object pixels). Strides 8/16/32 are the token
grids of Swin stages 2-4.

Parquet layout (one row per image and stride): ``image_id`` string, ``stride`` int16, ``grid_h``,
``grid_w``, ``frame_w``, ``frame_h`` int32 (resized image size in px, for flips), ``bits`` binary
(``np.packbits`` of the row-major grid, big bit order). File metadata: ``spt_data.kind =
selection_labels``, ``spt_data.schema_version`` (:data:`SCHEMA_VERSION`) and ``spt_data.params``
(the resize policy and options as JSON, and the records the labels were made from:
:func:`source_params`, checked by :func:`labels_source_problem`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError
from .frame import Frame, resize_policy
from .io import atomic_path, read_versioned_parquet
from .raster import box_cells, cells_reference, rect_cells
from .records import Record, records_fingerprint
from .rle import decode_counts, rle_problem, run_rects

__all__ = [
    "SCHEMA_VERSION",
    "STRIDES",
    "LabelTable",
    "hflip_grid",
    "instance_rects",
    "label_rows",
    "labels_source_problem",
    "read_labels",
    "selection_labels",
    "selection_labels_reference",
    "source_params",
    "union_mask",
    "write_labels",
]

SCHEMA_VERSION = 1
STRIDES: tuple[int, ...] = (8, 16, 32)
KIND = "selection_labels"

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("stride", pa.int16()),
        ("grid_h", pa.int32()),
        ("grid_w", pa.int32()),
        ("frame_w", pa.int32()),
        ("frame_h", pa.int32()),
        ("bits", pa.binary()),
    ]
)


def union_mask(record: Record, use_masks: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """-> (union of instance masks [H, W] bool or None, boxes [K', 4] of instances counted by box)."""
    has = np.array([use_masks and m is not None for m in record.masks], dtype=bool)  # [K]
    union = None
    for m in (m for m, h in zip(record.masks, has) if h):
        dec = m.decode(record.height, record.width)  # type: ignore[union-attr]
        union = dec if union is None else union | dec
    return union, record.boxes[~has]


def _record_where(record: Record) -> str:
    return f"{record.source}: record {record.source_index} (image {record.image_id!r})"


def instance_rects(record: Record, use_masks: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """-> (foreground rectangles [Q, 5] ``(c0, r0, c1, r1, k)`` source px of the instance masks,
    boxes [K', 4] of the instances counted by box). Raises DataError for an invalid RLE."""
    has = np.array([use_masks and m is not None for m in record.masks], dtype=bool)  # [K]
    idx = np.flatnonzero(has)
    h, w = record.height, record.width
    strings = [record.masks[k].rle_string(h, w) for k in idx]  # type: ignore[union-attr]
    try:
        runs, owner = decode_counts(strings)
    except ValueError as e:
        raise DataError(f"{_record_where(record)}: invalid RLE counts string: {e}") from e
    totals = np.bincount(owner, weights=runs, minlength=len(idx))  # [K''] pixels per mask
    for n in np.flatnonzero((totals != h * w) | (np.bincount(owner, runs < 0, len(idx)) > 0)):
        one = runs[owner == n]
        raise DataError(
            f"{_record_where(record)}: instance {record.ann_ids[idx[n]]}: {rle_problem(one, h, w)}"
        )
    rects = run_rects(runs, owner, h)
    rects[:, 4] = idx[rects[:, 4]]
    return rects, record.boxes[~has]


def _frame_boxes(boxes: np.ndarray, record: Record, frame: Frame) -> np.ndarray:
    sx, sy = frame.out_w / record.width, frame.out_h / record.height
    return boxes * np.array([sx, sy, sx, sy])  # [K, 4]


def selection_labels(
    record: Record, frame: Frame, strides: Sequence[int] = STRIDES, use_masks: bool = True
) -> dict[int, np.ndarray]:
    """-> {stride: [ceil(padded_h / s), ceil(padded_w / s)] bool}, True where the cell holds an object pixel."""
    rects, boxes = instance_rects(record, use_masks)
    fboxes = _frame_boxes(boxes, record, frame)
    out = {}
    for s in strides:
        grid = box_cells(fboxes, frame, s)
        if len(rects):
            grid |= rect_cells(rects, (record.width, record.height), frame, s)
        out[s] = grid
    return out


def selection_labels_reference(
    record: Record, frame: Frame, strides: Sequence[int] = STRIDES, use_masks: bool = True
) -> dict[int, np.ndarray]:
    """Slow per-pixel reference of :func:`selection_labels` (same signature, same result)."""
    union, boxes = union_mask(record, use_masks)
    fboxes = _frame_boxes(boxes, record, frame)
    return {s: cells_reference(fboxes, union, (record.width, record.height), frame, s) for s in strides}


def hflip_grid(grid: np.ndarray, frame_w: int, stride: int) -> np.ndarray:
    """Labels of the horizontally flipped image from the labels of the image. grid [gh, gw] bool.

    The image occupies columns ``[0, n)``, ``n = ceil(frame_w / stride)``; padding columns stay
    negative. Exact (equal to the labels of the flipped record) when ``frame_w % stride == 0``.
    Otherwise the last image column is partial and cell edges do not mirror onto cell edges: each
    flipped cell is then the OR of the two cells its mirror image overlaps, a superset of the exact
    labels (never loses an object cell, may add one cell at an object's edge).
    """
    n = -(-frame_w // stride)
    out = np.zeros_like(grid)
    flipped = grid[:, :n][:, ::-1]  # cell k' <- cell n-1-k'
    out[:, :n] = flipped
    if frame_w % stride:
        out[:, : n - 1] |= flipped[:, 1:]  # cell k' also <- cell n-2-k'
    return out


def label_rows(
    records: Iterable[Record],
    *,
    strides: Sequence[int] = STRIDES,
    policy: Callable[[int, int], Frame] = resize_policy,
    use_masks: bool = True,
) -> Iterator[dict[str, Any]]:
    """Records -> Parquet rows (one per image and stride), bits packed."""
    for rec in records:
        frame = policy(rec.width, rec.height)
        for s, grid in selection_labels(rec, frame, strides, use_masks).items():
            yield {
                "image_id": rec.image_id,
                "stride": s,
                "grid_h": grid.shape[0],
                "grid_w": grid.shape[1],
                "frame_w": frame.out_w,
                "frame_h": frame.out_h,
                "bits": np.packbits(grid).tobytes(),
            }


def write_labels(path: str | Path, rows: Iterable[dict[str, Any]], params: dict[str, Any]) -> int:
    """Write label rows to Parquet atomically; -> number of rows. ``params`` go to the metadata."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for row in rows:
        for name in SCHEMA.names:
            cols[name].append(row[name])
    meta = {
        "spt_data.kind": KIND,
        "spt_data.schema_version": str(SCHEMA_VERSION),
        "spt_data.params": json.dumps(params, sort_keys=True),
    }
    table = pa.table(cols, schema=SCHEMA.with_metadata(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


def source_params(records: Sequence[Record], path: str | Path) -> dict[str, str]:
    """The params a labels file keeps of the records it is made from: their path and fingerprints
    (:func:`.records_fingerprint` of the content, and of image ids and sizes only)."""
    return {
        "records": str(path),
        "records_fingerprint": records_fingerprint(records),
        "records_sizes": records_fingerprint(records, sizes_only=True),
    }


@dataclass
class LabelTable:
    """Selection labels read back from Parquet. ``grid(image_id, stride)`` -> [grid_h, grid_w] bool."""

    path: str
    params: dict[str, Any]
    table: pa.Table

    def __post_init__(self) -> None:
        ids, strides = self.table["image_id"].to_pylist(), self.table["stride"].to_pylist()
        self._index = {(i, s): n for n, (i, s) in enumerate(zip(ids, strides))}
        self._h = self.table["grid_h"].to_numpy()
        self._w = self.table["grid_w"].to_numpy()
        self._fw = self.table["frame_w"].to_numpy()
        self._fh = self.table["frame_h"].to_numpy()
        self._bits = self.table["bits"]

    def __len__(self) -> int:
        return self.table.num_rows

    def keys(self) -> list[tuple[str, int]]:
        """(image_id, stride) of every row, in file order."""
        return list(self._index)

    @property
    def records_fingerprint(self) -> str | None:
        """Fingerprint of the records the labels were made from (None: a file written before it was kept)."""
        return self.params.get("records_fingerprint")

    @property
    def image_ids(self) -> list[str]:
        return list(dict.fromkeys(i for i, _ in self._index))

    def frame_size(self, image_id: str, stride: int) -> tuple[int, int]:
        """(out_w, out_h): size of the resized image (px) in the frame the grid was made in."""
        n = self._row(image_id, stride)
        return int(self._fw[n]), int(self._fh[n])

    def _row(self, image_id: str, stride: int) -> int:
        try:
            return self._index[(image_id, stride)]
        except KeyError:
            raise KeyError(f"{self.path}: no labels for image {image_id!r} at stride {stride}") from None

    def grid(self, image_id: str, stride: int) -> np.ndarray:
        """-> [grid_h, grid_w] bool."""
        n = self._row(image_id, stride)
        h, w = int(self._h[n]), int(self._w[n])
        packed = np.frombuffer(self._bits[n].as_py(), dtype=np.uint8)
        return np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)


def labels_source_problem(labels: LabelTable, records: Sequence[Record], path: str | Path) -> str | None:
    """Why ``labels`` were not made from ``records`` (read from ``path``), or None: they were, or the
    labels file keeps no fingerprint (written before it was kept)."""
    made_from = labels.records_fingerprint
    if made_from is None:
        return None
    here = records_fingerprint(records)
    if here == made_from:
        return None
    if labels.image_ids != [r.image_id for r in records]:
        how = "other image ids"
    elif labels.params.get("records_sizes") != records_fingerprint(records, sizes_only=True):
        how = "the same image ids at other sizes"
    else:
        how = "the same images and sizes, other boxes, categories or masks"
    return (
        f"{labels.path}: labels were made from other records ({labels.params.get('records')}, fingerprint "
        f"{made_from[:12]}) than {path} (fingerprint {here[:12]}: {how}); "
        f"remake them with spt-data labels --records {path}"
    )


def read_labels(path: str | Path) -> LabelTable:
    """Read and validate a selection-label Parquet file (kind, schema version, columns, bit counts)."""
    path = Path(path)
    table, meta = read_versioned_parquet(
        path, kind=KIND, version=SCHEMA_VERSION, columns=SCHEMA.names, what="selection-label"
    )
    h, w = table["grid_h"].to_numpy(), table["grid_w"].to_numpy()
    nbytes = pc.binary_length(table["bits"]).to_numpy(zero_copy_only=False)
    bad = np.nonzero(nbytes != (h.astype(np.int64) * w + 7) // 8)[0]
    if bad.size:
        n = int(bad[0])
        raise DataError(
            f"{path}: row {n} (image {table['image_id'][n].as_py()!r}, stride {table['stride'][n].as_py()}): "
            f"{nbytes[n]} bytes of bits for a {h[n]}x{w[n]} grid"
        )
    return LabelTable(str(path), json.loads(meta.get("spt_data.params", "{}")), table)
