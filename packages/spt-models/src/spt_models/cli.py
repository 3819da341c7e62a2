"""``spt-models`` command line: ``spt-models profile --models swin_t spt_t --size 1280x800 --ratio 1.0 0.25``.

``profile`` builds each model (random init: costs do not depend on weights), counts parameters and
MACs of one forward on a ``--batch x 3 x H x W`` input, times it (``--repeats 0`` skips timing),
prints a table and writes JSON with the environment. SPT models run once per ``--ratio`` with
random ``keep`` masks of exactly that select ratio (seeded) instead of their gates.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
import torchvision

from .masks import random_stage_keep
from .profiling import count_macs, count_params, measure_fps
from .registry import create_model, list_models
from .spt import SPTBackbone
from .vit import VisionTransformer

log = logging.getLogger("spt_models.cli")


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` (WIDTHxHEIGHT, as the paper writes it) -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size should be WIDTHxHEIGHT, e.g. 1280x800, got {text!r}"
        ) from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"size should be at least 32x32, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spt-models", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="params, MACs and FPS of backbones; table + JSON")
    p.add_argument("--models", nargs="+", default=list_models(), help=f"any of {', '.join(list_models())}")
    p.add_argument(
        "--size", type=parse_size, default=(800, 1280), help="input WIDTHxHEIGHT (default 1280x800)"
    )
    p.add_argument("--ratio", type=float, nargs="+", default=[1.0, 0.25], help="select ratios for SPT models")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="timed forwards; 0 skips timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the random keep masks")
    p.add_argument(
        "--head",
        choices=["faster_rcnn", "mask_rcnn", "cascade_mask_rcnn"],
        default=None,
        help="profile the whole detector (91 classes) on each backbone instead of the backbone alone",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (atomically)")
    return parser


def profile(args: argparse.Namespace) -> dict:
    """Run the measurements; returns the JSON document."""
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known models: {', '.join(list_models())}")
    height, width = args.size
    device = torch.device(args.device)
    rows = []
    if args.head is not None:
        return {**environment(device, args), "rows": profile_detectors(args, device)}
    for name in args.models:
        torch.manual_seed(args.seed)
        model = create_model(name).to(device).eval()
        is_spt = isinstance(model, SPTBackbone)
        if is_spt:
            model.selection = "given"  # fixed select ratios through keep masks instead of the gates
        params = count_params(model)
        x = torch.randn(args.batch, 3, height, width, device=device)
        for ratio in args.ratio if is_spt else [None]:
            kwargs = {}
            if is_spt:
                gen = torch.Generator().manual_seed(args.seed)
                kwargs["keep"] = random_stage_keep(
                    args.batch, height, width, ratio, generator=gen, device=device
                )
            log.info("profiling %s (ratio %s) at %dx%d", name, ratio, width, height)
            macs = count_macs(model, x, **kwargs)
            with torch.no_grad():
                out = model(x, **kwargs)
            shapes = (
                {"cls": list(out[0].shape), "tokens": list(out[1].shape)}  # vit_s16: (cls, tokens)
                if isinstance(model, VisionTransformer)
                else {k: list(v.shape) for k, v in out[0].items()}  # (maps, aux)
            )
            timing = measure_fps(model, x, args.warmup, args.repeats, **kwargs) if args.repeats else None
            rows.append(
                {
                    "model": name,
                    "ratio": ratio,
                    "params": params,
                    "macs": macs,
                    "fps": timing.fps if timing else None,
                    "median_s": timing.median_s if timing else None,
                    "shapes": shapes,
                }
            )
    return {**environment(device, args), "rows": rows}


def environment(device: torch.device, args: argparse.Namespace) -> dict:
    height, width = args.size
    return {
        "environment": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "input": {"batch": args.batch, "height": height, "width": width, "seed": args.seed},
        "timing": {"warmup": args.warmup, "repeats": args.repeats},
        "macs_counting": "FlopCounterMode // 2, eval forward, SDPBackend.MATH",
    }


def profile_detectors(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Params and overall MACs (:func:`~spt_models.profiling.detector_macs`) of ``args.head`` on each
    backbone; SPT models select with their (random-init) gates, the ratio is reported."""
    from .detection import create_detector
    from .profiling import detector_macs

    height, width = args.size
    rows = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = create_detector(name, args.head, num_classes=91).to(device).eval()
        log.info("profiling %s + %s at %dx%d", args.head, name, width, height)
        rows.append(
            {
                "model": f"{args.head}+{name}",
                "ratio": None,
                "params": count_params(model),
                "backbone_params": count_params(model.backbone.body),
                "macs": detector_macs(model, height, width),
                "fps": None,
                "median_s": None,
                "shapes": {},
            }
        )
    return rows


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``, else "cpu"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<26} {'ratio':>6} {'params (M)':>11} {'MACs (G)':>10} {'FPS':>8}"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        fps = "-" if r["fps"] is None else f"{r['fps']:.2f}"
        lines.append(
            f"{r['model']:<26} {ratio:>6} {r['params'] / 1e6:>11.2f} {r['macs'] / 1e9:>10.2f} {fps:>8}"
        )
    return "\n".join(lines)


def write_json_atomic(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "profile":
        document = profile(args)
        env, inp = document["environment"], document["input"]
        print(
            f"{env['device']}, torch {env['torch']}, {env['threads']} threads, input {inp['batch']}x3x{inp['height']}x{inp['width']}"
        )
        print(format_table(document["rows"]))
        if args.out is not None:
            write_json_atomic(args.out, document)
            log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
