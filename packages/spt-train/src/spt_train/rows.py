"""``spt-train row``: one row of a paper table as a metrics JSON: a run's eval metrics (when the
row was trained) joined with its model's ``spt-train bench`` row (params, MACs, FPS of the real
architecture), cells the row does not have set to null, so ``spt-train table`` writes them empty.

    spt-train row --metrics runs/spt_t/metrics.json --bench bench.json --model spt_t \
        --columns AP=bbox.AP macs_g=bench.macs_g --out rows/spt_t.json

``--also NAME=METRICS`` nests another run's metrics under ``NAME`` (Table 6: the select ratios of
the same model trained without the selection loss, ``noloss.selection.stride16.select_ratio``).

Seeds: ``--metrics A.json B.json C.json`` (and ``--also NAME=A.json,B.json,C.json``) are the eval
metrics of one run trained with several seeds. The row then holds, where one file's metrics would
be, their mean over the files (:func:`merge_seeds`), and beside them a ``seeds`` block:
``{"n": 3, "seed": [0, 1, 2], "metrics": [paths], "std": {same paths: sample std, ddof=1}}``
(under ``NAME`` for an ``--also`` run). One file gives the row exactly as before: no ``seeds``
block, n = 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from .cliargs import existing_file, output_file

SEEDS = "seeds"  # the key of a row's (or an --also run's) seed block
# keys that differ between the seeds of one run; in the row they become one value per file
PER_SEED = ("checkpoint", "predictions", "config.out_dir", "config.train.seed")
# numbers that say how the run was evaluated, not what it scored: equal in every seed, no std
SETTINGS = ("evaluated_at", "select_threshold", "num_images", "macs.num_images", "macs.of_images")


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("row", help="eval metrics + a bench row -> one table row (JSON)", formatter_class=fmt)
    p.add_argument(
        "--metrics",
        type=existing_file,
        nargs="+",
        help="eval metrics JSON of the row's run (none: not trained); several: one per seed of the "
        "run, averaged (mean, sample std and n in the row)",
    )
    p.add_argument("--bench", type=existing_file, help="spt-train bench JSON holding the row's model")
    p.add_argument("--model", help="the row's model in the bench JSON (default: the run's model)")
    p.add_argument(
        "--also",
        type=also_metrics,
        action="append",
        default=[],
        metavar="NAME=METRICS[,METRICS...]",
        help="another run's eval metrics JSON, nested under NAME (repeatable, one NAME each); "
        "comma-separated files: one per seed of that run, averaged as --metrics",
    )
    p.add_argument("--columns", nargs="*", default=[], help="the table's columns: missing cells become null")
    p.add_argument("--out", type=output_file, required=True, help="row JSON to write (atomically)")


def also_metrics(text: str) -> tuple[str, list[Path]]:
    """``NAME=path[,path...]`` -> (NAME, paths); every path must exist."""
    name, sep, paths = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=METRICS with NAME a word, got {text!r}")
    return name, [existing_file(path) for path in paths.split(",")]


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


def _paths(metrics: Path | list[Path] | tuple[Path, ...]) -> list[Path]:
    return [metrics] if isinstance(metrics, Path) else list(metrics)


def read_seeds(metrics: Path | list[Path], flag: str) -> dict[str, Any]:
    """One run's eval metrics file(s) -> its metrics; several files: :func:`merge_seeds`."""
    paths = _paths(metrics)
    docs = [json.loads(path.read_text()) for path in paths]
    return docs[0] if len(docs) == 1 else merge_seeds(docs, paths, flag)


def make_row(
    metrics: Path | list[Path] | None,
    bench: Path | None,
    model: str | None,
    columns: list[str],
    also: list[tuple[str, Path | list[Path]]] = (),
) -> dict[str, Any]:
    row: dict[str, Any] = read_seeds(metrics, "--metrics") if metrics else {}
    for name, paths in also:
        if name in row or name in ("bench", SEEDS):
            raise ValueError(
                f"--also {name}={','.join(map(str, _paths(paths)))}: {name!r} is already a key of the row"
            )
        row[name] = read_seeds(paths, f"--also {name}")
    model = model or row.get("config", {}).get("model", {}).get("name")
    if bench is not None:
        if model is None:
            raise ValueError("row --bench needs --model (or --metrics of a run naming its model)")
        row["bench"] = bench_row(json.loads(bench.read_text()), model, bench)
    if not metrics:  # provenance of a bench-only row (spt_train.table.provenance reads these)
        row.update(model=model, size=row.get("bench", {}).get("size", ""))
        row["device"] = row.get("bench", {}).get("device", "")
        row["commit"] = row.get("bench", {}).get("commit")
    fill(row, columns)
    return row


class _NoStd:
    """A merged value without a std (text, flags, lists and mappings of those)."""


NO_STD = _NoStd()


def merge_seeds(docs: list[dict[str, Any]], paths: list[Path], flag: str) -> dict[str, Any]:
    """The eval metrics of one run's seeds (``docs``, read from ``paths``) -> one metrics dict.

    Every number is the mean over the files (kept as it is where all files agree, so an integer
    count stays an integer), with its sample std (ddof=1) in ``seeds.std`` at the same dotted
    path; a number null in some file is null in the mean and the std (no mean over fewer files
    than n). Everything else (provenance such as ``commit``, ``gt``, flags) and the numbers of
    :data:`SETTINGS` (how the run was evaluated: ``evaluated_at``, ``select_threshold``, image
    counts) must be equal in every file, except the keys of :data:`PER_SEED` and COCOeval's
    printed ``summary`` (``bbox.summary``), which become a list of one value per file, and
    ``notes``, which become the notes of all files (each once).
    The files must be seeds of one run: ``config.train.seed`` differs between any two of them,
    and the rest of ``config`` (``out_dir`` aside) is equal. A break of either stops with a
    ``ValueError`` naming the flag, the two files and the key.
    """
    check_seeds(docs, paths, flag)
    per_seed = {key: [_get(doc, key) for doc in docs] for key in PER_SEED}
    stripped = [_without(doc, PER_SEED) for doc in docs]
    config = [doc.pop("config", None) for doc in stripped]
    mean, std = _merge(stripped, "", paths, flag)
    if config[0] is not None:
        mean["config"] = config[0]
    for key, values in per_seed.items():
        if any(v is not _MISSING for v in values):
            _set(mean, key, [None if v is _MISSING else v for v in values])
    mean[SEEDS] = {
        "n": len(docs),
        "seed": per_seed["config.train.seed"],
        "metrics": [str(path) for path in paths],
        "std": {} if std is NO_STD else std,
    }
    return mean


def check_seeds(docs: list[dict[str, Any]], paths: list[Path], flag: str) -> None:
    """Each file a different seed (``config.train.seed``) of the same config (else ValueError)."""
    seen: dict[Any, Path] = {}
    for doc, path in zip(docs, paths, strict=True):
        seed = _get(doc, "config.train.seed")
        if seed is _MISSING:
            raise ValueError(
                f"{flag}: {path} has no config.train.seed (seeds are averaged over eval metrics of a run config)"
            )
        if seed in seen:
            raise ValueError(
                f"{flag}: {seen[seed]} and {path} have the same seed (config.train.seed = {seed!r}); "
                "give each seed's metrics once"
            )
        seen[seed] = path
    first = _flat(docs[0]["config"], "config")
    for doc, path in zip(docs[1:], paths[1:], strict=True):
        other = _flat(doc["config"], "config")
        for key in sorted(first.keys() | other.keys()):
            if key in PER_SEED:
                continue
            a, b = first.get(key, _MISSING), other.get(key, _MISSING)
            if a != b or type(a) is not type(b):
                raise ValueError(
                    f"{flag}: {paths[0]} and {path} are not seeds of one run: {key} differs "
                    f"({_show(a)} vs {_show(b)})"
                )


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()


def _get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def _without(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``doc`` (mappings copied) less the dotted ``keys``."""
    out = {k: _without(v, ()) if isinstance(v, dict) else v for k, v in doc.items()}
    for dotted in keys:
        *parents, last = dotted.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _flat(node: Any, where: str) -> dict[str, Any]:
    """Nested mappings -> ``{dotted key: leaf}`` (lists are leaves)."""
    if not isinstance(node, dict) or not node:
        return {where: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{where}.{key}"))
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _merge(values: list[Any], where: str, paths: list[Path], flag: str) -> tuple[Any, Any]:
    """The values at ``where`` in every file -> (merged value, its std or NO_STD)."""
    first = values[0]
    setting = any(where == key or where[: len(key) + 1] in (key + ".", key + "[") for key in SETTINGS)
    if not setting and all(_number(v) for v in values):
        if all(v == first and type(v) is type(first) for v in values):
            return first, 0.0
        return statistics.fmean(values), statistics.stdev(values)
    if not setting and all(v is None or _number(v) for v in values) and any(_number(v) for v in values):
        return None, None  # null in some seed: no mean over fewer seeds than n
    leaf = where.rsplit(".", 1)[-1]
    if leaf == "notes" and all(isinstance(v, list) for v in values):
        return list(dict.fromkeys(note for v in values for note in v)), NO_STD
    if leaf == "summary" and all(isinstance(v, str) for v in values):
        return list(values), NO_STD  # COCOeval's printed summary: its numbers are each seed's
    if all(isinstance(v, dict) for v in values):
        for i, v in enumerate(values[1:], 1):
            if v.keys() != first.keys():
                key = sorted(first.keys() ^ v.keys())[0]
                has, lacks = (paths[0], paths[i]) if key in first else (paths[i], paths[0])
                raise ValueError(
                    f"{flag}: {paths[0]} and {paths[i]} disagree on {_key(where, key)!r}: "
                    f"in {has}, not in {lacks}"
                )
        mean, std = {}, {}
        for key in first:
            m, s = _merge([v[key] for v in values], _key(where, key), paths, flag)
            mean[key] = m
            if s is not NO_STD:
                std[key] = s
        return mean, std or NO_STD
    if all(isinstance(v, list) for v in values):
        for i, v in enumerate(values[1:], 1):
            if len(v) != len(first):
                raise ValueError(
                    f"{flag}: {paths[0]} and {paths[i]} disagree on {where!r}: {len(first)} items vs {len(v)}"
                )
        merged = [_merge([v[j] for v in values], f"{where}[{j}]", paths, flag) for j in range(len(first))]
        stds = [s for _, s in merged]
        if all(s is NO_STD for s in stds):
            return [m for m, _ in merged], NO_STD
        return [m for m, _ in merged], [None if s is NO_STD else s for s in stds]
    for i, v in enumerate(values[1:], 1):
        if v != first or type(v) is not type(first):
            raise ValueError(
                f"{flag}: {paths[0]} and {paths[i]} disagree on {where!r} ({_show(first)} vs {_show(v)}); "
                "the seeds of one row differ only in their numbers"
            )
    return first, NO_STD


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def run(args: argparse.Namespace) -> int:
    from spt_data.io import atomic_write_text

    if args.metrics is None and args.bench is None:
        raise ValueError("row needs --metrics, --bench or both")
    row = make_row(args.metrics, args.bench, args.model, args.columns, args.also)
    atomic_write_text(args.out, json.dumps(row, indent=1))
    print(f"wrote {args.out}")
    return 0
