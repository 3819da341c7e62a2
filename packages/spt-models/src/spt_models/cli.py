"""``spt-models`` command line: ``profile`` (params, MACs, FPS of backbones) and ``bench`` (the
efficiency study: every backbone's speed, memory and MACs side by side, in one process).

    spt-models profile --models swin_t spt_t --size 1280x800 --ratio 1.0 0.25
    spt-models bench                      # CPU: fp32 at 640x400; CUDA: bf16 at 1280x800

``profile`` builds each model (random init: costs do not depend on weights), counts parameters and
MACs of one forward on a ``--batch x 3 x H x W`` input, times it (``--repeats 0`` skips timing),
prints a table and writes JSON with the environment. SPT models run once per ``--ratio`` with
random ``keep`` masks of exactly that select ratio (seeded) instead of their gates.
``bench``: see :mod:`spt_models.bench`. Progress goes to stderr, tables to stdout, JSON to
``--out`` (written atomically). Exit status: 0 success, 2 bad arguments (one usage line).

torch is imported inside the commands, so ``--help`` and argument errors answer at once.
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

log = logging.getLogger("spt_models.cli")

HEADS = ("faster_rcnn", "mask_rcnn", "cascade_mask_rcnn")


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


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"should be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"should be an integer >= 0, got {text!r}")
    return value


def ratio_0_1(text: str) -> float:
    """A select ratio in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"should be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"should be a number in [0, 1], got {text!r}")
    return value


def bench_ratio(text: str) -> float | str:
    """A select ratio in [0, 1] or ``spread`` (BDD-S-like per-image ratios 0.05-0.6)."""
    return "spread" if text == "spread" else ratio_0_1(text)


def device_name(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (checked for presence after parsing)."""
    kind, _, index = text.partition(":")
    if (kind == "cpu" and not index) or (kind == "cuda" and (not index or index.isdigit())):
        return text
    raise argparse.ArgumentTypeError(f"should be cpu, cuda or cuda:N, got {text!r}")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"should be an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spt-models", description=__doc__.splitlines()[0], formatter_class=fmt
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="params, MACs and FPS of backbones; table + JSON", formatter_class=fmt)
    p.add_argument("--models", nargs="+", default=None, help="registered model names (default: all)")
    p.add_argument("--size", type=parse_size, default="1280x800", help="input WIDTHxHEIGHT")
    p.add_argument(
        "--ratio", type=ratio_0_1, nargs="+", default=[1.0, 0.25], help="select ratios for SPT models"
    )
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed forwards first")
    p.add_argument("--repeats", type=nonnegative_int, default=10, help="timed forwards; 0 skips timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the random keep masks")
    p.add_argument(
        "--head",
        choices=HEADS,
        default=None,
        help="profile the whole detector (91 classes) on each backbone instead of the backbone alone",
    )
    p.add_argument("--out", type=Path, default=Path("results/profile.json"), help="JSON file (atomic write)")

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
        type=parse_size,
        default=None,
        help="timed input WIDTHxHEIGHT (default: 1280x800 on CUDA, 640x400 on CPU)",
    )
    b.add_argument("--macs-size", type=parse_size, default="1280x800", help="input of the MAC count")
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
        "--device", type=device_name, default=None, help="cpu, cuda or cuda:N (default: cuda if present)"
    )
    b.add_argument("--warmup", type=nonnegative_int, default=1, help="untimed rounds first")
    b.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (medians)")
    b.add_argument("--seed", type=int, default=0, help="seed of the init, inputs and keep masks")
    b.add_argument("--out", type=Path, default=Path("results/bench.json"), help="JSON file (atomic write)")
    return parser


def check_output(path: Path) -> None:
    """Raise OSError unless a file can be written beside ``path`` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
        pass


def resolve_device(parser: argparse.ArgumentParser, text: str | None):
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(
                f"--device {text}: CUDA is not available on this machine (torch {torch.__version__})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            parser.error(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_models(parser: argparse.ArgumentParser, names: list[str]) -> None:
    from .registry import list_models

    unknown = [m for m in names if m not in list_models()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known models: {', '.join(list_models())}")


def profile(args: argparse.Namespace) -> dict:
    """Run the measurements; returns the JSON document."""
    import torch

    from .masks import random_stage_keep
    from .profiling import count_macs, count_params, measure_fps
    from .registry import create_model
    from .spt import SPTBackbone
    from .vit import VisionTransformer

    height, width = args.size
    device = args.device
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
                    args.batch, height, width, ratio, strides=model.spa_strides, generator=gen, device=device
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


def environment(device, args: argparse.Namespace) -> dict:
    import torch
    import torchvision

    height, width = args.size
    return {
        "environment": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "argv": sys.argv[1:],
        },
        "input": {"batch": getattr(args, "batch", None), "height": height, "width": width, "seed": args.seed},
        "timing": {"warmup": args.warmup, "repeats": args.repeats},
        "macs_counting": "FlopCounterMode // 2, eval forward, SDPBackend.MATH",
    }


def profile_detectors(args: argparse.Namespace, device) -> list[dict]:
    """Params and overall MACs (:func:`~spt_models.profiling.detector_macs`) of ``args.head`` on each
    backbone; SPT models select with their (random-init) gates, the ratio is reported."""
    import torch

    from .detection import create_detector
    from .profiling import count_params, detector_macs

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


def bench(args: argparse.Namespace) -> dict:
    """The efficiency study (:mod:`spt_models.bench`); returns the JSON document."""
    import torch

    from .bench import BASELINES, SPT_MODELS, Study, add_ratios, candidates, run_study

    device = args.device
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32
    )
    size = args.size or ((800, 1280) if device.type == "cuda" else (400, 640))
    rows = candidates(
        BASELINES if args.baselines is None else args.baselines,
        SPT_MODELS if args.spt is None else args.spt,
        args.ratios,
        args.mlp,
        args.backends,
    )
    study = Study(rows, device=device, size=size, dtype=dtype, seed=args.seed)
    results = run_study(
        study,
        batches=args.batches,
        train_batch=args.train_batch,
        macs_size=None if args.no_macs else args.macs_size,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    args.size = size
    document = environment(device, args)
    document["input"] = {
        "height": size[0],
        "width": size[1],
        "batches": args.batches,
        "train_batch": args.train_batch,
        "macs_size": None if args.no_macs else list(args.macs_size),
        "dtype": str(dtype).removeprefix("torch."),
        "seed": args.seed,
    }
    document["memory"] = (
        "peak CUDA memory allocated during one training step"
        if device.type == "cuda"
        else "bytes autograd saves for backward in one training step (CPU has no allocator statistics)"
    )
    document["rows"] = add_ratios(results)
    return document


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


def format_bench(document: dict) -> str:
    """Two tables: absolute values, then ratios against Swin-T (/S) and DynamicSwin-T (/D), and a legend."""
    rows = document["rows"]
    fps = [k for k in rows[0] if k.startswith("fps_b") and "/" not in k]
    width = max(len(r["label"]) for r in rows)

    def cell(r: dict, key: str, scale: float = 1.0, fmt: str = "{:8.2f}") -> str:
        return fmt.format(r[key] * scale) if r.get(key) is not None else f"{'-':>8}"

    head = f"{'candidate':<{width}} {'MACs G':>8} " + " ".join(f"{k.replace('fps_', 'FPS '):>8}" for k in fps)
    lines = [head + f" {'step ms':>8} {'mem MiB':>8}"]
    for r in rows:
        values = [cell(r, "macs", 1e-9)] + [cell(r, k) for k in fps]
        lines.append(
            f"{r['label']:<{width}} " + " ".join(values) + f" {cell(r, 'step_ms', fmt='{:8.0f}')} "
            f"{cell(r, 'memory_mib', fmt='{:8.0f}')}"
        )
    metrics = ["macs", *fps, "step_ms", "memory_mib"]
    short = {
        "macs": "MAC",
        "step_ms": "step",
        "memory_mib": "mem",
        **{k: k.replace("fps_", "FPS ") for k in fps},
    }
    names = [f"{short[m]}/{ref}" for m in metrics for ref in ("S", "D")]
    lines += ["", f"{'ratios':<{width}} " + " ".join(f"{n:>9}" for n in names)]
    for r in rows:
        values = [
            f"{r[f'{m}/{ref}']:9.3f}" if f"{m}/{ref}" in r else f"{'-':>9}"
            for m in metrics
            for ref in ("swin_t", "dynamicswin_t")
        ]
        lines.append(f"{r['label']:<{width}} " + " ".join(values))
    env, inp = document["environment"], document["input"]
    lines += [
        "",
        f"{env['device']}, torch {env['torch']}, {env['threads']} threads, {inp['dtype']}, timed input "
        f"{inp['width']}x{inp['height']}, MACs at "
        + ("-" if inp["macs_size"] is None else f"{inp['macs_size'][1]}x{inp['macs_size'][0]}"),
        "MACs G: multiply-accumulates of one eval forward of one image (FlopCounterMode / 2), in 1e9.",
        "FPS bN: images/s of eval forwards of batch N (median of interleaved repeats).",
        f"step ms: one training step (forward + backward), batch {inp['train_batch']}; mem MiB: {document['memory']}.",
        "X/S, X/D: the row's value / Swin-T's, / DynamicSwin-T's (FPS > 1 is faster; MAC, step, mem < 1 is cheaper).",
        "r=spread: per-image select ratios evenly spaced in 0.05-0.6 over the batch (batch 1: 0.325).",
    ]
    return "\n".join(lines)


def write_json_atomic(path: Path, document: dict) -> None:
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
    try:
        check_output(args.out)
    except OSError as e:
        parser.error(f"--out {args.out}: cannot write there ({e.strerror or e})")
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
    args.device = resolve_device(parser, args.device)
    if args.command == "profile":
        document = profile(args)
        env, inp = document["environment"], document["input"]
        print(
            f"{env['device']}, torch {env['torch']}, {env['threads']} threads, "
            f"input {inp['batch']}x3x{inp['height']}x{inp['width']}",
            flush=True,
        )
        print(format_table(document["rows"]), flush=True)
    else:
        document = bench(args)
        print(format_bench(document), flush=True)
    write_json_atomic(args.out, document)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
