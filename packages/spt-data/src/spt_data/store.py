"""Records <-> Parquet (the output of ``spt-data convert``), one row per image.

Columns: ``image_id``, ``image_path`` string; ``width``, ``height`` int32; per instance (lists of
length K): ``boxes`` (flat, 4K float64 xyxy px), ``category_ids`` int64, ``category_names``,
``iscrowd``, ``ignore``, ``ann_ids``; ``polygons`` (rings of flat coordinates, null when the
instance has no polygon mask) and ``rle`` (COCO compressed counts, null when no RLE mask);
``source`` string, ``source_index`` int64, ``extra`` (JSON object of strings). File metadata:
``spt_data.kind = records``, ``spt_data.schema_version`` (:data:`SCHEMA_VERSION`),
``spt_data.format`` (coco, bdd, voc) and ``spt_data.categories`` (JSON ``{id: name}``). Reading
checks every RLE again (a file written by an older version or by hand never reaches the labels
with a mask that pycocotools cannot decode or that covers the wrong number of pixels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .io import atomic_path, read_versioned_parquet
from .maskcheck import rle_string_problem
from .records import Dataset, PolygonMask, Record, RleMask

__all__ = ["SCHEMA_VERSION", "read_records", "read_sources", "write_records"]

SCHEMA_VERSION = 1
KIND = "records"

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("boxes", pa.list_(pa.float64())),
        ("category_ids", pa.list_(pa.int64())),
        ("category_names", pa.list_(pa.string())),
        ("iscrowd", pa.list_(pa.bool_())),
        ("ignore", pa.list_(pa.bool_())),
        ("ann_ids", pa.list_(pa.string())),
        ("polygons", pa.list_(pa.list_(pa.list_(pa.float64())))),
        ("rle", pa.list_(pa.binary())),
        ("source", pa.string()),
        ("source_index", pa.int64()),
        ("extra", pa.string()),
    ]
)


def _row(r: Record) -> dict[str, Any]:
    return {
        "image_id": r.image_id,
        "image_path": r.image_path,
        "width": r.width,
        "height": r.height,
        "boxes": r.boxes.reshape(-1).tolist(),
        "category_ids": r.category_ids.tolist(),
        "category_names": list(r.category_names),
        "iscrowd": r.iscrowd.tolist(),
        "ignore": r.ignore.tolist(),
        "ann_ids": list(r.ann_ids),
        "polygons": [
            [ring.tolist() for ring in m.rings] if isinstance(m, PolygonMask) else None for m in r.masks
        ],
        "rle": [m.counts if isinstance(m, RleMask) else None for m in r.masks],
        "source": r.source,
        "source_index": r.source_index,
        "extra": json.dumps(r.extra, sort_keys=True),
    }


def write_records(path: str | Path, dataset: Dataset) -> None:
    """Write ``dataset.records`` (with format and categories in the metadata) to Parquet atomically."""
    rows = [_row(r) for r in dataset.records]
    cols = {name: [row[name] for row in rows] for name in SCHEMA.names}
    meta = {
        "spt_data.kind": KIND,
        "spt_data.schema_version": str(SCHEMA_VERSION),
        "spt_data.format": dataset.format,
        "spt_data.categories": json.dumps({str(k): v for k, v in dataset.categories.items()}),
        "spt_data.sources": json.dumps(dataset.sources),
    }
    table = pa.table(cols, schema=SCHEMA.with_metadata(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _record(row: dict[str, Any], path: Path, n: int) -> Record:
    k = len(row["category_names"])
    where = f"{path}: row {n} (image {row['image_id']!r})"
    lists = ("category_ids", "iscrowd", "ignore", "ann_ids", "polygons", "rle")
    if len(row["boxes"]) != 4 * k or any(len(row[c]) != k for c in lists):
        raise DataError(f"{where}: per-instance columns disagree on the instance count {k}")
    masks: list[PolygonMask | RleMask | None] = []
    for i, (poly, rle) in enumerate(zip(row["polygons"], row["rle"])):
        if poly is not None and rle is not None:
            raise DataError(f"{where}: an instance has both a polygon and an RLE mask")
        if poly is not None:
            masks.append(PolygonMask(tuple(np.asarray(ring, dtype=np.float64) for ring in poly)))
        elif rle is not None:
            problem = rle_string_problem(rle, row["height"], row["width"])
            if problem:
                raise DataError(f"{where}: instance {i} (annotation {row['ann_ids'][i]}): {problem}")
            masks.append(RleMask(rle, (row["height"], row["width"])))
        else:
            masks.append(None)
    return Record.build(
        image_id=row["image_id"],
        image_path=row["image_path"],
        width=row["width"],
        height=row["height"],
        boxes=np.asarray(row["boxes"], dtype=np.float64).reshape(k, 4),
        category_ids=row["category_ids"],
        category_names=row["category_names"],
        iscrowd=row["iscrowd"],
        ignore=row["ignore"],
        masks=masks,
        ann_ids=row["ann_ids"],
        source=row["source"],
        source_index=row["source_index"],
        extra=json.loads(row["extra"] or "{}"),
    )


def read_records(path: str | Path) -> Dataset:
    """Read a records Parquet file written by :func:`write_records` (kind and schema version checked)."""
    path = Path(path)
    table, meta = read_versioned_parquet(
        path, kind=KIND, version=SCHEMA_VERSION, columns=SCHEMA.names, what="records"
    )
    records = [_record(row, path, n) for n, row in enumerate(table.to_pylist())]
    cats = {int(k): v for k, v in json.loads(meta.get("spt_data.categories", "{}")).items()}
    sources = json.loads(meta.get("spt_data.sources", "[]"))
    return Dataset(meta.get("spt_data.format", "unknown"), records, cats, sources)


def read_sources(path: str | Path) -> list[str]:
    """The raw annotation files a records Parquet was converted from (its metadata only, no rows)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"spt_data.sources", b"[]"))
