"""``spt-models`` command line: ``profile`` (params, MACs, FPS of backbones) and ``bench`` (the
efficiency study: every backbone's speed, memory and MACs side by side, in one process).

    spt-models profile --models swin_t spt_t --size 1280x800 --ratio 1.0 0.25 --out profile.json
    spt-models bench --out bench.json     # CPU: fp32 at 640x400; CUDA: bf16 at 1280x800

``profile`` builds each model (random init: costs do not depend on weights), counts parameters and
MACs of one forward on a ``--batch x 3 x H x W`` input, times it (``--repeats 0`` skips timing),
prints a table and writes JSON with the environment. SPT models run once per ``--ratio`` with
random ``keep`` masks of exactly that select ratio (seeded) instead of their gates.
``bench``: see :mod:`spt_models.bench`. Progress goes to stderr, tables to stdout, JSON to
``--out`` (required; checked before any work, written atomically). ``--device``: auto (CUDA if
present), cpu, cuda, cuda:N or mps; one this machine lacks is a usage error. Exit status: 0 success,
2 bad arguments (one usage line).

This module parses and dispatches: the work is in :mod:`spt_models.profiling` and
:mod:`spt_models.bench`, the argument types in :mod:`spt_models.cliargs`. torch is imported inside
the commands, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from .cliargs import (
    DEVICE_HELP,
    bench_ratio,
    device_name,
    nonneg_int,
    output_file,
    positive_int,
    ratio_0_1,
    size,
)
from .detection.heads import HEADS

log = logging.getLogger("spt_models.cli")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spt-models", description=__doc__.splitlines()[0], formatter_class=fmt
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="params, MACs and FPS of backbones; table + JSON", formatter_class=fmt)
    p.add_argument("--models", nargs="+", default=None, help="registered model names (default: all)")
    p.add_argument("--size", type=size, default="1280x800", help="input WIDTHxHEIGHT")
    p.add_argument(
        "--ratio", type=ratio_0_1, nargs="+", default=[1.0, 0.25], help="select ratios for SPT models"
    )
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward")
    p.add_argument(
        "--device", type=device_name, default="auto", help=f"{DEVICE_HELP} (auto: CUDA if present)"
    )
    p.add_argument("--warmup", type=nonneg_int, default=2, help="untimed forwards first")
    p.add_argument("--repeats", type=nonneg_int, default=10, help="timed forwards; 0 skips timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the random keep masks")
    p.add_argument(
        "--head",
        choices=HEADS,
        default=None,
        help="profile the whole detector (91 classes) on each backbone instead of the backbone alone",
    )
    p.add_argument("--out", type=output_file, required=True, help="JSON file (atomic write)")

    b = sub.add_parser(
        "bench",
        help="every backbone's FPS, training step time, memory and MACs, interleaved; ratio tables + JSON",
        description="Swin-T, DynamicSwin-T, SparseViT-T, DAT-T and SPT-T/12, SPT-T/16 under both mlp "
        "readings at fixed select ratios, measured in one process with interleaved repeats; prints "
        "ratios against Swin-T and DynamicSwin-T. See spt_models.bench.",
        formatter_class=fmt,
    )
    b.add_argument(
        "--baselines", nargs="*", default=None, help="default: swin_t dynamicswin_t sparsevit_t dat_t"
    )
    b.add_argument("--spt", nargs="*", default=None, help="SPT models; default: spt_t12 spt_t")
    b.add_argument(
        "--ratios",
        type=bench_ratio,
        nargs="+",
        default=[1.0, 0.5, 0.25, "spread"],
        help="SPT select ratios; 'spread' = per-image 0.05-0.6 (BDD-S-like)",
    )
    b.add_argument(
        "--mlp", nargs="+", choices=["all", "selected"], default=["all", "selected"], help="SPA cost readings"
    )
    b.add_argument(
        "--backends",
        nargs="+",
        choices=["auto", "sdpa", "flex", "reference"],
        default=["auto"],
        help="SPA attention backends (auto: flex on CUDA, sdpa on CPU)",
    )
    b.add_argument(
        "--size",
        type=size,
        default=None,
        help="timed input WIDTHxHEIGHT (default: 1280x800 on CUDA, 640x400 on CPU)",
    )
    b.add_argument("--macs-size", type=size, default="1280x800", help="input WIDTHxHEIGHT of the MAC count")
    b.add_argument("--no-macs", action="store_true", help="skip the MAC count")
    b.add_argument("--batches", type=positive_int, nargs="+", default=[1, 8], help="inference batch sizes")
    b.add_argument("--train-batch", type=positive_int, default=2, help="training step batch size")
    b.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto: bfloat16 autocast on CUDA, float32 on CPU",
    )
    b.add_argument(
        "--device", type=device_name, default="auto", help=f"{DEVICE_HELP} (auto: CUDA if present)"
    )
    b.add_argument("--warmup", type=nonneg_int, default=1, help="untimed rounds first")
    b.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (medians)")
    b.add_argument("--seed", type=int, default=0, help="seed of the init, inputs and keep masks")
    b.add_argument("--out", type=output_file, required=True, help="JSON file (atomic write)")
    return parser


def check_models(parser: argparse.ArgumentParser, names: list[str]) -> None:
    from .registry import list_models

    unknown = [m for m in names if m not in list_models()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known models: {', '.join(list_models())}")


def write_json_atomic(path: Path, document: dict) -> None:
    """``document`` as JSON at ``path``, through a temporary file beside it and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "profile" and args.models is None:
        from .registry import list_models

        args.models = list_models()
    check_models(
        parser,
        [
            *(getattr(args, "models", None) or []),
            *(getattr(args, "baselines", None) or []),
            *(getattr(args, "spt", None) or []),
        ],
    )
    from .environment import pick_device

    try:
        device = pick_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.command == "profile":
        from .profiling import format_profile, profile

        width, height = args.size
        document = profile(
            args.models,
            height=height,
            width=width,
            ratios=args.ratio,
            batch=args.batch,
            device=device,
            warmup=args.warmup,
            repeats=args.repeats,
            seed=args.seed,
            head=args.head,
        )
        text = format_profile(document)
    else:
        from .bench import BASELINES, SPT_MODELS, bench_document, format_bench

        document = bench_document(
            device=device,
            baselines=BASELINES if args.baselines is None else args.baselines,
            spt_models=SPT_MODELS if args.spt is None else args.spt,
            ratios=args.ratios,
            mlps=args.mlp,
            backends=args.backends,
            size=args.size,
            macs_size=None if args.no_macs else args.macs_size,
            batches=args.batches,
            train_batch=args.train_batch,
            dtype=args.dtype,
            warmup=args.warmup,
            repeats=args.repeats,
            seed=args.seed,
        )
        text = format_bench(document)
    print(text, flush=True)
    write_json_atomic(args.out, document)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
