"""``spt-train``: ``fit`` | ``eval`` | ``bench`` | ``table``, and the pipeline's ``config`` | ``row`` |
``figure`` | ``backbone`` | ``curve``.

    spt-train fit run.yaml [--set train.epochs=1 ...]        train (resumes from out_dir/last.pt)
    torchrun --nproc-per-node 2 -m spt_train fit run.yaml      the same on 2 processes (DDP)
    spt-train eval run.yaml --checkpoint runs/x/last.pt --out metrics.json
    spt-train eval --gt records.parquet --predictions dets.json --metric coco --out metrics.json
    spt-train bench --models swin_t spt_t --head mask_rcnn --size 1280x800 --out bench.json
    spt-train bench --models spt_s spt_b --ratios-from runs/spt_t/metrics.json --out bench_sb.json
    spt-train bench --run run.yaml --checkpoint runs/x/last.pt --images 16 --out bench_x.json
    spt-train table --metrics runs/*/metrics.json --columns AP50=bbox.AP50 select_ratio --out t2.csv

Every command that writes a file takes a required ``--out``, checked before any work (argument
types: :mod:`spt_train.cliargs`); ``bench --device`` takes auto, cpu, cuda, cuda:N or mps (``fit``
and ``eval`` read the config's ``device``), a device this machine lacks being a usage error.
Exit codes: 0 success, 2 usage, config or data error (one line naming the file and the key or
record), 1 anything else. torch is imported inside the commands, so ``--help`` is instant. The
commands' modules import their argument types from :mod:`spt_train.cliargs`, never from here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from spt_models.detection import HEADS

from .cliargs import (
    DEVICE_HELP,
    device_name,
    existing_file,
    nonneg_int,
    output_file,
    parse_override,
    parse_ratios,
    positive_int,
    size,
)

log = logging.getLogger("spt_train")
BENCH_SIZE = "1280x800"  # bench --models: the input WIDTHxHEIGHT without --size


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spt-train", description=__doc__.splitlines()[0], formatter_class=fmt
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "fit",
        help="train a detector or a classifier (model.head) from a YAML run config",
        formatter_class=fmt,
    )
    p.add_argument("config", type=existing_file, help="run config (YAML)")
    p.add_argument(
        "--set", dest="overrides", type=parse_override, action="append", default=[], help="KEY=VALUE override"
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if out_dir/last.pt exists")
    p = sub.add_parser(
        "eval", help="score a checkpoint on a split, or a predictions file", formatter_class=fmt
    )
    p.add_argument("config", type=existing_file, nargs="?", help="run config (YAML) of the checkpoint")
    p.add_argument(
        "--checkpoint", type=existing_file, help="a spt-train checkpoint (default: out_dir/last.pt)"
    )
    p.add_argument("--split", choices=["val", "train"], default="val", help="split of the config to predict")
    p.add_argument("--gt", type=existing_file, help="ground-truth records Parquet (with --predictions)")
    p.add_argument("--predictions", type=existing_file, help="COCO results json or BDD/Scalabel frames json")
    p.add_argument(
        "--metric",
        choices=["coco", "voc"],
        default="coco",
        help="detectors: COCOeval or VOC AP (a classifier is scored by VOC multi-label mAP)",
    )
    p.add_argument(
        "--macs-images",
        type=nonneg_int,
        default=16,
        help="backbone MACs per image (mean, p10, p90) measured on the first N images of the split",
    )
    p.add_argument(
        "--set", dest="overrides", type=parse_override, action="append", default=[], help="KEY=VALUE override"
    )
    p.add_argument("--out", type=output_file, required=True, help="metrics JSON to write (atomically)")
    p = sub.add_parser(
        "bench",
        help="params, MACs and backbone FPS: untrained models (--models), or a trained checkpoint at "
        "its learned selection (--run)",
        formatter_class=fmt,
    )
    form = p.add_mutually_exclusive_group(required=True)
    form.add_argument("--models", nargs="+", help="registered backbones, untrained (the architecture's cost)")
    form.add_argument(
        "--run",
        type=existing_file,
        help="run config (YAML) of a trained checkpoint, benchmarked at its learned selection on the "
        "split's images, each at its own frame",
    )
    run_only = "with --run: "
    models_only = "with --models: "
    p.add_argument(
        "--head",
        choices=HEADS,
        default=argparse.SUPPRESS,
        help=models_only + "detector head (default: mask_rcnn)",
    )
    p.add_argument(
        "--size",
        type=size,
        default=argparse.SUPPRESS,
        help=models_only + f"input WIDTHxHEIGHT (default: {BENCH_SIZE})",
    )
    ratios = p.add_mutually_exclusive_group()
    ratios.add_argument(
        "--ratios",
        type=parse_ratios,
        default=argparse.SUPPRESS,
        metavar="STRIDE=RATIO[,...]",
        help=models_only + "SPT: every SPA block of a stride keeps the top-scored ceil(ratio * n) of "
        "an image's n tokens, e.g. 16=0.31,32=0.45",
    )
    ratios.add_argument(
        "--ratios-from",
        type=existing_file,
        default=argparse.SUPPRESS,
        metavar="METRICS",
        help=models_only + "SPT: the ratios a trained run measured, from its eval metrics JSON "
        "(selection.stride<S>.select_ratio)",
    )
    p.add_argument(
        "--mlp",
        choices=["all", "selected"],
        default=argparse.SUPPRESS,
        help=models_only + "SPT's cost reading: the MLP on all tokens or on the selected ones (default: "
        "the model's; with --ratios-from, the run's)",
    )
    p.add_argument(
        "--checkpoint",
        type=existing_file,
        default=argparse.SUPPRESS,
        help=run_only + "the checkpoint (default: the run's out_dir/last.pt)",
    )
    p.add_argument(
        "--split",
        choices=["val", "train"],
        default=argparse.SUPPRESS,
        help=run_only + "split whose images are measured (default: val)",
    )
    p.add_argument(
        "--images",
        type=positive_int,
        default=argparse.SUPPRESS,
        help=run_only + "measure the split's first N images (default: 16)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        type=parse_override,
        action="append",
        default=argparse.SUPPRESS,
        help=run_only + "KEY=VALUE inference setting, as eval --set (e.g. model.backbone.threshold=0.2)",
    )
    p.add_argument(
        "--repeats",
        type=nonneg_int,
        default=5,
        help="timed backbone forwards (per image with --run; 0: no FPS)",
    )
    p.add_argument(
        "--warmup",
        type=nonneg_int,
        default=1,
        help="untimed forwards before them (after the MAC counts)",
    )
    p.add_argument(
        "--device", type=device_name, default="auto", help=f"{DEVICE_HELP} (auto: CUDA if present)"
    )
    p.add_argument("--out", type=output_file, required=True, help="JSON to write (atomically)")
    p = sub.add_parser("table", help="metrics JSON files -> a CSV table with provenance", formatter_class=fmt)
    p.add_argument(
        "--metrics", type=existing_file, nargs="+", required=True, help="metrics JSON files, one row each"
    )
    p.add_argument(
        "--columns", nargs="+", required=True, help="dotted paths, e.g. bbox.AP50 or AP50=bbox.AP50"
    )
    p.add_argument("--names", nargs="+", help="row names (default: each file's folder name)")
    p.add_argument("--profile", default="demo", help="the run profile, written in every row")
    p.add_argument("--out", type=output_file, required=True, help="CSV to write (atomically)")
    p = sub.add_parser("config", help="compose, check and write a run config (YAML)", formatter_class=fmt)
    p.add_argument("base", type=existing_file, nargs="?", help="run config to start from (default: empty)")
    p.add_argument(
        "--set", dest="overrides", type=parse_override, action="append", default=[], help="KEY=VALUE override"
    )
    p.add_argument("--out", type=output_file, required=True, help="resolved run config to write (atomically)")
    from . import curve, export, figures, rows  # the pipeline's commands

    for module in (rows, figures, export, curve):
        module.add_parser(sub, fmt)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from spt_data import DataError

    from .config import ConfigError, RunError

    if args.command == "eval" and (args.predictions is None) == (args.config is None):
        parser.error("eval takes a run config (a checkpoint) or --gt and --predictions (a predictions file)")
    if args.command == "eval" and args.predictions is not None and args.gt is None:
        parser.error("eval --predictions needs --gt records.parquet")
    if getattr(args, "device", None) is not None:  # bench; fit and eval read the config's device
        from spt_models.environment import pick_device

        try:
            args.device = str(pick_device(args.device))
        except ValueError as e:
            parser.error(str(e))
    try:
        commands = {"fit": _fit, "eval": _eval, "bench": _bench, "table": _table, "config": _config}
        if args.command not in commands:  # row, figure, backbone, curve: their module's run(args)
            from . import curve, export, figures, rows

            commands.update(row=rows.run, figure=figures.run, backbone=export.run, curve=curve.run)
        return commands[args.command](args)
    except (ConfigError, DataError, RunError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) else e
        print(f"spt-train {args.command}: error: {message}", file=sys.stderr)
        return 2
    except ValueError as e:  # a predictions file, a checkpoint of another run: named in the message
        print(f"spt-train {args.command}: error: {e}", file=sys.stderr)
        return 2


def _fit(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import fit

    config = load_config(args.config, dict(args.overrides))
    last = fit(config, resume=not args.no_resume)
    print(f"wrote {last}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from spt_data.io import atomic_write_text

    from .evaluation import evaluate_predictions, format_summary

    if args.predictions is not None:
        metrics = evaluate_predictions(args.gt, args.predictions, args.metric)
        atomic_write_text(args.out, json.dumps(metrics, indent=1))
    else:
        from .config import load_config
        from .predict import evaluate_checkpoint

        config = load_config(args.config, dict(args.overrides))
        checkpoint = args.checkpoint or Path(config.out_dir) / "last.pt"
        if not checkpoint.exists():
            raise ValueError(f"{checkpoint}: no checkpoint (train first, or give --checkpoint)")
        metrics = evaluate_checkpoint(config, checkpoint, args.out, args.metric, args.split, args.macs_images)
    if "cls" in metrics:
        from .predict import format_classification

        print(format_classification(metrics))
    else:
        print(format_summary(metrics))
        if "macs" in metrics:
            from .predict import format_macs

            print(format_macs(metrics["macs"]))
    for stage, m in metrics.get("selection", {}).items():
        r, dense, sparse = (_fmt(m[k]) for k in ("retention", "density_before", "density_after"))
        auroc = f", gate AUROC {_fmt(m['auroc'])}" if "auroc" in m else ""
        print(
            f"{stage}: select ratio {_fmt(m['select_ratio'])}, retention {r}, density {dense} -> {sparse}{auroc}"
        )
    if metrics.get("gate_auroc"):
        exact = "exact" if metrics["gate_auroc_exact"] else f"within {metrics['gate_auroc_error']:.2g}"
        gates = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics["gate_auroc"].items())
        print(f"gate AUROC ({exact}): {gates}")
    print(f"wrote {args.out}")
    return 0


def _fmt(value: float | None) -> str:
    """A metric of a JSON-ready metrics dict (None: NaN) -> 3 decimals."""
    return "nan" if value is None else f"{value:.3f}"


BENCH_MODELS_ONLY = {
    "head": "--head",
    "size": "--size",
    "ratios": "--ratios",
    "ratios_from": "--ratios-from",
    "mlp": "--mlp",
}
BENCH_RUN_ONLY = {
    "checkpoint": "--checkpoint",
    "split": "--split",
    "images": "--images",
    "overrides": "--set",
}


def _bench(args: argparse.Namespace) -> int:
    import json

    from spt_data.io import atomic_write_text
    from spt_models import list_multiscale_models

    from .bench import bench, bench_run, check_ratios, format_bench, ratios_from_metrics

    form, other, wrong_for = (
        ("--run", "--models", BENCH_MODELS_ONLY) if args.run else ("--models", "--run", BENCH_RUN_ONLY)
    )
    wrong = [flag for dest, flag in wrong_for.items() if hasattr(args, dest)]
    if wrong:
        raise ValueError(
            f"{', '.join(wrong)} only go{'es' if len(wrong) == 1 else ''} with {other}, not with {form}"
        )
    if args.run:
        from .config import load_config

        config = load_config(args.run, dict(getattr(args, "overrides", [])))
        checkpoint = getattr(args, "checkpoint", None) or Path(config.out_dir) / "last.pt"
        if not checkpoint.exists():
            raise ValueError(f"{checkpoint}: no checkpoint (train first, or give --checkpoint)")
        doc = bench_run(
            config,
            checkpoint,
            run_config=args.run,
            split=getattr(args, "split", "val"),
            images=getattr(args, "images", 16),
            repeats=args.repeats,
            warmup=args.warmup,
            device=args.device,
        )
    else:
        known = list_multiscale_models()
        unknown = [m for m in args.models if m not in known]
        if unknown:
            raise ValueError(
                f"unknown or single-scale model(s) {unknown}; multi-scale models: {', '.join(known)}"
            )
        ratios, source, flag, mlp = getattr(args, "ratios", None), "given by --ratios", "--ratios", None
        if hasattr(args, "ratios_from"):
            flag = f"--ratios-from {args.ratios_from}"
            ratios, source, mlp = ratios_from_metrics(args.ratios_from)
        check_ratios(args.models, ratios, getattr(args, "mlp", None), flag)
        width, height = getattr(args, "size", size(BENCH_SIZE))
        doc = bench(
            args.models,
            getattr(args, "head", "mask_rcnn"),
            height,
            width,
            args.repeats,
            args.device,
            warmup=args.warmup,
            ratios=ratios,
            ratios_source=source,
            mlp=getattr(args, "mlp", mlp),
        )
    print(format_bench(doc))
    atomic_write_text(args.out, json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


def _config(args: argparse.Namespace) -> int:
    import yaml

    from spt_data.io import atomic_write_text

    from .config import compose_config, to_dict

    config = compose_config(args.base, dict(args.overrides), str(args.out))
    atomic_write_text(args.out, yaml.safe_dump(to_dict(config), sort_keys=False))
    print(f"wrote {args.out}")
    return 0


def _table(args: argparse.Namespace) -> int:
    from .table import make_table, write_table

    text = make_table(list(args.metrics), args.columns, args.names, args.profile)
    write_table(args.out, text)
    print(text, end="")
    return 0
