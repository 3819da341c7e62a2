"""``spt-train row``: one row of a paper table as a metrics JSON: a run's eval metrics (when the
row was trained) joined with its model's ``spt-train bench`` row (params, MACs, FPS of the real
architecture), cells the row does not have set to null, so ``spt-train table`` writes them empty.

    spt-train row --metrics runs/spt_t/metrics.json --bench bench.json --model spt_t \
        --columns AP=bbox.AP macs_g=bench.macs_g --out rows/spt_t.json

``--also NAME=METRICS`` nests another run's metrics under ``NAME`` (Table 6: the select ratios of
the same model trained without the selection loss, ``noloss.selection.stride16.select_ratio``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    from .cli import existing_file

    p = sub.add_parser("row", help="eval metrics + a bench row -> one table row (JSON)", formatter_class=fmt)
    p.add_argument(
        "--metrics", type=existing_file, help="eval metrics JSON of the row's run (none: not trained)"
    )
    p.add_argument("--bench", type=existing_file, help="spt-train bench JSON holding the row's model")
    p.add_argument("--model", help="the row's model in the bench JSON (default: the run's model)")
    p.add_argument(
        "--also",
        type=also_metrics,
        action="append",
        default=[],
        metavar="NAME=METRICS",
        help="another run's eval metrics JSON, nested under NAME (repeatable)",
    )
    p.add_argument("--columns", nargs="*", default=[], help="the table's columns: missing cells become null")
    p.add_argument("--out", type=Path, required=True, help="row JSON to write (atomically)")


def also_metrics(text: str) -> tuple[str, Path]:
    """``NAME=path`` -> (NAME, path); the path must exist."""
    from .cli import existing_file

    name, sep, path = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=METRICS with NAME a word, got {text!r}")
    return name, existing_file(path)


def bench_row(doc: dict[str, Any], model: str, source: Path) -> dict[str, Any]:
    """The bench row of ``model`` with the bench's size, repeats and environment."""
    for row in doc["rows"]:
        if row["model"] == model:
            return {**row, "size": doc["size"], "repeats": doc["repeats"], **doc["environment"]}
    models = [r["model"] for r in doc["rows"]]
    raise ValueError(f"{source}: no bench row for model {model!r} (has {models})")


def fill(row: dict[str, Any], columns: list[str]) -> None:
    """Set every column's dotted path that ``row`` lacks to None (in place)."""
    for column in columns:
        dotted = column.split("=", 1)[-1]
        node = row
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"column {column!r}: {part!r} is a value, not a mapping")
        node.setdefault(last, None)


def make_row(
    metrics: Path | None,
    bench: Path | None,
    model: str | None,
    columns: list[str],
    also: list[tuple[str, Path]] = (),
) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(metrics.read_text()) if metrics is not None else {}
    for name, path in also:
        if name in row or name == "bench":
            raise ValueError(f"--also {name}={path}: {name!r} is already a key of the row")
        row[name] = json.loads(path.read_text())
    model = model or row.get("config", {}).get("model", {}).get("name")
    if bench is not None:
        if model is None:
            raise ValueError("row --bench needs --model (or --metrics of a run naming its model)")
        row["bench"] = bench_row(json.loads(bench.read_text()), model, bench)
    if metrics is None:  # provenance of a bench-only row (spt_train.table.provenance reads these)
        row.update(model=model, size=row.get("bench", {}).get("size", ""))
        row["device"] = row.get("bench", {}).get("device", "")
        row["commit"] = row.get("bench", {}).get("commit")
    fill(row, columns)
    return row


def run(args: argparse.Namespace) -> int:
    from spt_data.io import atomic_write_text

    if args.metrics is None and args.bench is None:
        raise ValueError("row needs --metrics, --bench or both")
    row = make_row(args.metrics, args.bench, args.model, args.columns, args.also)
    atomic_write_text(args.out, json.dumps(row, indent=1))
    print(f"wrote {args.out}")
    return 0
