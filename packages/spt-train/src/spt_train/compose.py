"""``spt-train config``: compose a run config from ``--set`` overrides (and an optional base file),
check it against the schema and write the resolved YAML, as the pipeline's fit and eval read it.

    spt-train config --set model.name=spt_t --set data.train.records=train.parquet \
        --set out_dir=runs/spt_t --out runs/spt_t/run.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, RunConfig, build, check_model, check_paths, to_dict


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    from .cli import existing_file, parse_override

    p = sub.add_parser("config", help="compose, check and write a run config (YAML)", formatter_class=fmt)
    p.add_argument("base", type=existing_file, nargs="?", help="run config to start from (default: empty)")
    p.add_argument(
        "--set", dest="overrides", type=parse_override, action="append", default=[], help="KEY=VALUE override"
    )
    p.add_argument("--out", type=Path, required=True, help="resolved run config to write (atomically)")


def compose(base: Path | None, overrides: dict[str, Any], name: str) -> RunConfig:
    """The base's mapping (or ``{}``) with dotted ``overrides`` applied, checked as ``load_config``
    checks a file (errors name ``name`` and the key)."""
    data = yaml.safe_load(base.read_text()) if base is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{base}: a config is a mapping of sections, got {type(data).__name__}")
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {key}: {p} is not a mapping")
        node[last] = value
    config = build(RunConfig, data, name, "")
    check_paths(config, Path(name))
    check_model(config, Path(name))
    return config


def run(args: argparse.Namespace) -> int:
    from spt_data.io import atomic_write_text

    config = compose(args.base, dict(args.overrides), str(args.out))
    atomic_write_text(args.out, yaml.safe_dump(to_dict(config), sort_keys=False))
    print(f"wrote {args.out}")
    return 0
