"""``spt-train table``: metrics JSON files -> one CSV, the paper's columns plus provenance.

A column is a dotted path into a metrics file (``bbox.AP50``, ``selection.stride16.select_ratio``,
``macs_g``), optionally renamed (``AP50=bbox.AP50``). Provenance columns say what was actually run
(profile, dataset, input size, model and its overrides, schedule, device, commit), so a demo number
can never be mistaken for a paper number.

Seeds: a row made by ``spt-train row`` from several seeds of a run holds the means, and a ``seeds``
block (n, and the sample std of each number; see :mod:`spt_train.rows`). When any row of the table
has one, the CSV says n per row (column ``n`` after ``name``; ``n_<NAME>`` too for an ``--also``
run NAME that has seeds) and each column with a std in some row is followed by ``<column>_std``
(empty where the row has one seed). A run's row without seeds has n = 1; a row without a run
(bench only) has n empty. Without seeds anywhere the CSV is as it was: no n, no std.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from spt_data.io import atomic_write_text
from spt_data.store import read_sources

from .rows import SEEDS

PROVENANCE = (
    "profile",
    "dataset",
    "input_size",
    "model",
    "backbone_overrides",
    "schedule",
    "device",
    "commit",
)


def lookup(metrics: dict[str, Any], path: str, source: Path) -> Any:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{source}: no {path!r} (at {part!r})")
        node = node[part]
    return node


def git_commit() -> str:
    """The commit of the code that runs (this package's git checkout, ``+dirty`` with uncommitted
    changes), whatever the working directory; ``unknown`` outside a checkout (a wheel install)."""
    here = str(Path(__file__).resolve().parent)

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = commit and git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit or "unknown"


def dataset_sources(records: str) -> str:
    """A records file with the raw annotation files it was converted from (``spt_data.sources`` in
    its Parquet metadata): ``data/p/bdd/train.parquet (from A.json)``, so a table names the real
    dataset; the path alone when the file cannot be read here (a table made elsewhere)."""
    try:
        sources = read_sources(records)
    except (OSError, ValueError):  # not here, or not Parquet (pyarrow's ArrowInvalid)
        return records
    return f"{records} (from {', '.join(sources)})" if sources else records


def provenance(metrics: dict[str, Any], profile: str) -> dict[str, Any]:
    config = metrics.get("config", {})
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    steps = f", max {train['max_steps']} steps" if train.get("max_steps") else ""
    records = data.get("train", {}).get("records")
    return {
        "profile": profile,
        "dataset": dataset_sources(records) if records else metrics.get("gt", ""),
        "input_size": f"short {data.get('short')}, long {data.get('long')}"
        if data
        else metrics.get("size", ""),
        "model": f"{model.get('name', metrics.get('model', ''))} {model.get('head', '')}".strip(),
        "backbone_overrides": json.dumps(model.get("backbone", {}), sort_keys=True),
        "schedule": f"{train.get('epochs')} epochs x batch {train.get('batch_size')}{steps}" if train else "",
        "device": metrics.get("device", config.get("device", "")),
        "commit": metrics.get("commit") or git_commit(),
    }


def make_table(files: list[Path], columns: list[str], names: list[str] | None, profile: str) -> str:
    """-> CSV text: one row per metrics file (``name`` first), the columns, then provenance; with
    seeds in any row, the n of each run after ``name`` and a ``_std`` after each column that has one."""
    if names is not None and len(names) != len(files):
        raise ValueError(f"--names gives {len(names)} names for {len(files)} metrics files")
    specs = [c.split("=", 1) if "=" in c else [c.rsplit(".", 1)[-1], c] for c in columns]
    docs = [json.loads(path.read_text()) for path in files]
    # the runs a column reads: "" the row's own, NAME an --also run nested under NAME
    sources = ["", *dict.fromkeys(d.split(".", 1)[0] for _, d in specs if "." in d)]
    seeded = [s for s in sources if any(isinstance(_run(doc, s).get(SEEDS), dict) for doc in docs)]
    if seeded:
        seeded = ["", *(s for s in seeded if s)]
    counts = [("n_" + s if s else "n", s) for s in seeded]
    stds = {d for _, d in specs if any(seed_std(doc, d) is not _NONE for doc in docs)} if seeded else set()
    header = ["name", *(c for c, _ in counts)]
    for column, dotted in specs:
        header += [column, column + "_std"] if dotted in stds else [column]
    header += PROVENANCE
    clash = sorted({h for h in header if header.count(h) > 1})
    if clash:
        raise ValueError(
            f"table column(s) {clash} named twice (n, n_<NAME> and <column>_std are seed columns)"
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, (path, metrics) in enumerate(zip(files, docs, strict=True)):
        row = [names[i] if names else path.parent.name]
        row += [seed_count(_run(metrics, source)) for _, source in counts]
        for _, dotted in specs:
            value = lookup(metrics, dotted, path)
            row.append("" if value is None else value)
            if dotted in stds:
                std = seed_std(metrics, dotted)
                row.append("" if std is None or std is _NONE else std)
        prov = provenance(metrics, profile)
        writer.writerow([*row, *(prov[k] for k in PROVENANCE)])
    return out.getvalue()


_NONE = object()  # no std at a path


def _run(row: dict[str, Any], source: str) -> dict[str, Any]:
    """The metrics of a row's run: the row (``""``) or its --also run ``source``."""
    node = row.get(source, {}) if source else row
    return node if isinstance(node, dict) else {}


def seed_count(run: dict[str, Any]) -> int | str:
    """n of a run's seeds: its ``seeds.n``, 1 for a run without seeds, empty without a run (a
    bench-only row, or an --also run the row lacks)."""
    if isinstance(run.get(SEEDS), dict):
        return run[SEEDS]["n"]
    return 1 if "metric" in run or "config" in run else ""


def seed_std(row: dict[str, Any], dotted: str) -> Any:
    """The sample std over seeds of the number at ``dotted``: from the innermost ``seeds`` block on
    the path (the row's, or its --also run's); ``_NONE`` where there is none."""
    node: Any = row
    block, rest = None, []
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            break
        if isinstance(node.get(SEEDS), dict):
            block, rest = node[SEEDS], parts[i:]
        node = node.get(part)
    if block is None:
        return _NONE
    std: Any = block.get("std", {})
    for part in rest:
        if not isinstance(std, dict) or part not in std:
            return _NONE
        std = std[part]
    return _NONE if isinstance(std, dict | list) else std


def write_table(path: Path, text: str) -> None:
    atomic_write_text(path, text)
