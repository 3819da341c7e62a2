"""Summary statistics of records, selection labels and subset manifests (``spt-data stats``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .labels import LabelTable
from .records import Record

__all__ = ["format_stats", "label_stats", "manifest_stats", "record_stats"]


def record_stats(records: Sequence[Record]) -> dict[str, Any]:
    """Counts: images, instances (per category, crowd, ignore, with mask), image sizes."""
    cats: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    crowd = ignore = masked = empty = 0
    for r in records:
        cats.update(r.category_names)
        sizes[f"{r.width}x{r.height}"] += 1
        crowd += int(r.iscrowd.sum())
        ignore += int(r.ignore.sum())
        masked += sum(m is not None for m in r.masks)
        empty += r.num_instances == 0
    return {
        "images": len(records),
        "images_without_instances": empty,
        "instances": sum(cats.values()),
        "crowd": crowd,
        "ignore": ignore,
        "with_mask": masked,
        "categories": dict(sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))),
        "image_sizes": dict(sizes.most_common(5)),
    }


def label_stats(labels: LabelTable) -> dict[str, Any]:
    """Per stride: number of grids and the mean fraction of positive cells inside the image (padding excluded)."""
    per: dict[int, list[float]] = {}
    for image_id, stride in labels.keys():
        grid = labels.grid(image_id, stride)
        fw, fh = labels.frame_size(image_id, stride)
        valid = grid[: -(-fh // stride), : -(-fw // stride)]  # image cells, padding excluded
        per.setdefault(stride, []).append(float(valid.mean()) if valid.size else 0.0)
    return {
        f"stride_{s}": {"grids": len(v), "mean_positive_fraction": float(np.mean(v)) if v else 0.0}
        for s, v in sorted(per.items())
    }


def manifest_stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Ratio quantiles and the subset size of a manifest."""
    ratios = np.array([r["ratio"] for r in rows], dtype=np.float64)
    q = np.quantile(ratios, [0.1, 0.25, 0.5, 0.75, 0.9]).round(4).tolist() if len(ratios) else []
    return {
        "images": len(rows),
        "in_subset": int(sum(bool(r["in_subset"]) for r in rows)),
        "ratio_quantiles_10_25_50_75_90": q,
        "ratio_mean": float(ratios.mean()) if len(ratios) else 0.0,
    }


def format_stats(stats: dict[str, Any], indent: int = 0) -> str:
    """Nested dict -> aligned ``key: value`` lines."""
    lines = []
    width = max((len(str(k)) for k in stats), default=0)
    for k, v in stats.items():
        if isinstance(v, dict):
            lines.append(" " * indent + f"{k}:")
            lines.append(format_stats(v, indent + 2))
        else:
            val = f"{v:.4f}" if isinstance(v, float) else str(v)
            lines.append(" " * indent + f"{str(k) + ':':<{width + 1}} {val}")
    return "\n".join(line for line in lines if line)
