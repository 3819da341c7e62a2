"""Object-to-pixel ratio and the small-object subsets built on it (BDD-S, VOC-S).

ratio = |union of object pixels| / (width * height), at the image's own resolution, with the pixel
rule of :mod:`.raster` (an instance counts by its mask when it has one, else by its box; every
instance counts, crowd and ignore included). BDD-S (Zhang et al. 2024, as used in the SPT paper)
and VOC-S keep the images with ratio < 0.25; an image without objects has ratio 0 and is kept.

A manifest lists every image with its ratio and ``in_subset``; ``.csv`` or ``.parquet`` by suffix.
"""

from __future__ import annotations

import csv
import io as _io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .frame import identity_frame
from .io import atomic_path, atomic_write_text
from .labels import selection_labels
from .records import Record

__all__ = ["SMALL_OBJECT_RATIO", "object_ratio", "read_manifest", "subset_manifest", "write_manifest"]

SMALL_OBJECT_RATIO = 0.25
KIND = "subset_manifest"
COLUMNS = ("image_id", "image_path", "width", "height", "num_instances", "ratio", "in_subset")


def object_ratio(record: Record, use_masks: bool = True) -> float:
    """Fraction of the image's pixels covered by the union of its objects, in [0, 1]."""
    pix = selection_labels(record, identity_frame(record.width, record.height), (1,), use_masks)[1]
    return float(pix.mean())


def subset_manifest(
    records: Sequence[Record],
    *,
    max_ratio: float = SMALL_OBJECT_RATIO,
    use_masks: bool = True,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> list[dict[str, Any]]:
    """-> one row per record: image_id, image_path, width, height, num_instances, ratio, in_subset."""
    rows = []
    for r in progress(records) if progress else records:
        ratio = object_ratio(r, use_masks)
        rows.append(
            {
                "image_id": r.image_id,
                "image_path": r.image_path,
                "width": r.width,
                "height": r.height,
                "num_instances": r.num_instances,
                "ratio": ratio,
                "in_subset": ratio < max_ratio,
            }
        )
    return rows


def write_manifest(path: str | Path, rows: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """Write manifest rows atomically as CSV (``.csv``) or Parquet (``.parquet``); params in Parquet metadata."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"manifest path must end in .csv or .parquet, got {str(path)!r}")
    if path.suffix.lower() == ".csv":
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "ratio": repr(row["ratio"]), "in_subset": int(row["in_subset"])})
        atomic_write_text(path, buf.getvalue())
        return
    table = pa.Table.from_pylist(
        [{c: row[c] for c in COLUMNS} for row in rows],
        schema=pa.schema(
            [
                ("image_id", pa.string()),
                ("image_path", pa.string()),
                ("width", pa.int32()),
                ("height", pa.int32()),
                ("num_instances", pa.int32()),
                ("ratio", pa.float64()),
                ("in_subset", pa.bool_()),
            ],
            metadata={
                "spt_data.kind": KIND,
                "spt_data.params": json.dumps(params, sort_keys=True),
            },
        ),
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest written by :func:`write_manifest` back into rows."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise DataError(f"{path}: cannot read manifest: {e}") from e
        if rows and set(COLUMNS) - set(rows[0]):
            raise DataError(f"{path}: manifest lacks columns {sorted(set(COLUMNS) - set(rows[0]))}")
        out = []
        for n, row in enumerate(rows):
            try:
                out.append(
                    {
                        **row,
                        "width": int(row["width"]),
                        "height": int(row["height"]),
                        "num_instances": int(row["num_instances"]),
                        "ratio": float(row["ratio"]),
                        "in_subset": row["in_subset"] == "1",
                    }
                )
            except ValueError as e:
                raise DataError(f"{path}: row {n} (image {row.get('image_id')!r}): {e}") from e
        return out
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: cannot read manifest: {e}") from e
    kind = (table.schema.metadata or {}).get(b"spt_data.kind", b"").decode() or None
    if kind != KIND:
        raise DataError(f"{path}: not a subset manifest (spt_data.kind={kind!r}, expected {KIND!r})")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: manifest lacks columns {missing}")
    return table.to_pylist()
