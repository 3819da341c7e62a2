"""``spt-train table``: metrics JSON files -> one CSV, the paper's columns plus provenance.

A column is a dotted path into a metrics file (``bbox.AP50``, ``selection.stride16.select_ratio``,
``macs_g``), optionally renamed (``AP50=bbox.AP50``). Provenance columns say what was actually run
(profile, dataset, input size, model and its overrides, schedule, device, commit), so a demo number
can never be mistaken for a paper number.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from spt_data.io import atomic_write_text

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


def provenance(metrics: dict[str, Any], profile: str) -> dict[str, Any]:
    config = metrics.get("config", {})
    model, data, train = config.get("model", {}), config.get("data", {}), config.get("train", {})
    steps = f", max {train['max_steps']} steps" if train.get("max_steps") else ""
    return {
        "profile": profile,
        "dataset": data.get("train", {}).get("records", metrics.get("gt", "")),
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
    """-> CSV text: one row per metrics file (``name`` first), the columns, then provenance."""
    if names is not None and len(names) != len(files):
        raise ValueError(f"--names gives {len(names)} names for {len(files)} metrics files")
    specs = [c.split("=", 1) if "=" in c else [c.rsplit(".", 1)[-1], c] for c in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", *(s[0] for s in specs), *PROVENANCE])
    for i, path in enumerate(files):
        metrics = json.loads(path.read_text())
        row = [names[i] if names else path.parent.name]
        for _, dotted in specs:
            value = lookup(metrics, dotted, path)
            row.append("" if value is None else value)
        prov = provenance(metrics, profile)
        writer.writerow([*row, *(prov[k] for k in PROVENANCE)])
    return out.getvalue()


def write_table(path: Path, text: str) -> None:
    atomic_write_text(path, text)
