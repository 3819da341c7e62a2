"""Benchmark: SPA block vs Swin block (dense W-MSA) vs padding to the batch max.

Shapes are SPT-T's stages 3 and 4 at a 1280x800 input (B=2): 50x80 tokens, C=384, 12 heads and
25x40 tokens, C=768, 24 heads; M=7, L=49. Select ratios 1.0/0.5/0.25/0.1 are fixed with random
masks (seeded), so the gate's choices do not blur the cost. Candidates of one setting are timed
round-robin (warm-up, then the median of repeats) so drift on a shared machine hits them alike;
each time ratio is printed beside the MAC ratio of the closed forms (``spa_core.cost``).
SPA runs under both readings of its cost: ``spa`` (``mlp="all"``, the MLP on every token) and
``spa-sel`` (``mlp="selected"``, unselected tokens untouched). A heterogeneous batch (B=8, per-image ratios spread 0.05-0.6) compares packed and padded
containers on the attention half of the block (the MLP runs on all tokens in both).

    python packages/spa-core/benchmarks/bench_spa.py [--out results/bench_spa.json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from spa_core import SPABlock, spa_attention_macs, spa_block_macs, swin_block_macs

SHAPES = {  # name: (B, H, W, C, heads)
    "stage3": (2, 50, 80, 384, 12),
    "stage4": (2, 25, 40, 768, 24),
}
RATIOS = (1.0, 0.5, 0.25, 0.1)
M = 7


def swin_block(dim: int, heads: int, shift: bool) -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformerBlock

    return SwinTransformerBlock(dim, heads, window_size=[M, M], shift_size=[M // 2 * shift] * 2)


def fixed_ratio_keep(shape: tuple[int, int, int], ratios: list[float], seed: int = 0) -> torch.Tensor:
    """[B, H, W] bool with exactly round(ratio_b * H * W) tokens of image b kept, at random places."""
    g = torch.Generator().manual_seed(seed)
    B, H, W = shape
    keep = torch.zeros(B, H * W, dtype=torch.bool)
    for b, r in enumerate(ratios):
        keep[b, torch.randperm(H * W, generator=g)[: round(r * H * W)]] = True
    return keep.view(B, H, W)


def run(fn: Callable[[], torch.Tensor], backward: bool) -> None:
    if backward:
        fn().sum().backward()
    else:
        with torch.no_grad():
            fn()


def time_round_robin(fns: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds of each callable, timed in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def homogeneous(
    shape_name: str, backward: bool, warmup: int, repeats: int, device: torch.device
) -> list[dict]:
    B, H, W, C, heads = SHAPES[shape_name]
    torch.manual_seed(0)
    swin = swin_block(C, heads, shift=True).to(device)
    blocks = {
        "spa": SPABlock(C, heads, M, shift=True).to(device),
        "spa-sel": SPABlock(C, heads, M, shift=True, mlp="selected").to(device),
        "padded": SPABlock(C, heads, M, shift=True, layout="padded").to(device),
    }
    x = torch.randn(B, H, W, C, device=device)
    keeps = {r: fixed_ratio_keep((B, H, W), [r] * B).to(device) for r in RATIOS}
    fns = {"swin": lambda: run(lambda: swin(x), backward)}
    for r in RATIOS:
        for name, block in blocks.items():
            fns[f"{name}@{r}"] = lambda r=r, block=block: run(lambda: block(x, keep=keeps[r])[0], backward)
    times = time_round_robin(fns, warmup, repeats)
    swin_macs = swin_block_macs(B, H, W, C, M)
    rows = []
    for name, seconds in times.items():
        if name == "swin":
            macs, ratio = swin_macs, 1.0
        else:
            layout, ratio = name.split("@")[0], float(name.split("@")[1])
            keep = keeps[ratio]
            per_image = keep.flatten(1).sum(1)
            containers = (
                -(-int(per_image.sum()) // (M * M))
                if layout != "padded"
                else B * -(-int(per_image.max()) // (M * M))
            )
            mlp = "selected" if layout == "spa-sel" else "all"
            macs = spa_block_macs(B, H, W, C, M, containers, mlp=mlp, num_selected=int(per_image.sum()))
        rows.append(
            {
                "shape": shape_name,
                "pass": "fwd+bwd" if backward else "fwd",
                "model": name.split("@")[0],
                "ratio": ratio,
                "ms": seconds * 1e3,
                "time_ratio": seconds / times["swin"],
                "mac_ratio": macs / swin_macs,
            }
        )
    return rows


def heterogeneous(backward: bool, warmup: int, repeats: int, device: torch.device) -> dict:
    _, H, W, C, heads = SHAPES["stage3"]
    B = 8
    ratios = [0.05 + 0.55 * i / (B - 1) for i in range(B)]
    torch.manual_seed(0)
    packed = SPABlock(C, heads, M, shift=True).to(device)
    padded = SPABlock(C, heads, M, shift=True, layout="padded").to(device)
    x = torch.randn(B, H, W, C, device=device)
    keep = fixed_ratio_keep((B, H, W), ratios).to(device)
    times = time_round_robin(
        {
            "packed": lambda: run(lambda: packed.attend(x, keep=keep)[0], backward),
            "padded": lambda: run(lambda: padded.attend(x, keep=keep)[0], backward),
        },
        warmup,
        repeats,
    )
    n = keep.flatten(1).sum(1)
    L = M * M
    packed_c, padded_c = -(-int(n.sum()) // L), B * -(-int(n.max()) // L)
    return {
        "pass": "fwd+bwd" if backward else "fwd",
        "ratios": ratios,
        "packed_ms": times["packed"] * 1e3,
        "padded_ms": times["padded"] * 1e3,
        "time_ratio": times["packed"] / times["padded"],
        "token_ratio": float(n.sum() / (B * n.max())),
        "mac_ratio": spa_attention_macs(B * H * W, C, L, packed_c)
        / spa_attention_macs(B * H * W, C, L, padded_c),
        "containers": {"packed": packed_c, "padded": padded_c},
    }


def at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"should be an integer >= {low}, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=fmt)
    parser.add_argument("--out", type=Path, default=Path("results/bench_spa.json"), help="JSON file")
    parser.add_argument("--repeats", type=at_least(1), default=5, help="timed rounds")
    parser.add_argument("--warmup", type=at_least(0), default=1, help="untimed rounds")
    parser.add_argument(
        "--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="block shapes"
    )
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()

    rows = []
    for shape in args.shapes:
        for backward in (False, True):
            print(f"timing {shape} {'fwd+bwd' if backward else 'fwd'} ...", file=sys.stderr, flush=True)
            rows += homogeneous(shape, backward, args.warmup, args.repeats, device)
    print(
        f"{'shape':7} {'pass':8} {'model':7} {'ratio':>5} {'ms':>9} {'time/swin':>9} {'MAC/swin':>9} {'time/MAC':>8}"
    )
    for r in rows:
        print(
            f"{r['shape']:7} {r['pass']:8} {r['model']:7} {r['ratio']:5.2f} {r['ms']:9.1f} "
            f"{r['time_ratio']:9.3f} {r['mac_ratio']:9.3f} {r['time_ratio'] / r['mac_ratio']:8.3f}"
        )
    print(
        "time/swin: median block time / the Swin block's; MAC/swin: closed-form MACs / the Swin block's;\n"
        "time/MAC: time/swin over MAC/swin (1.0: time falls exactly with MACs; target <= 1.10).\n"
        "spa: mlp='all' (MLP on every token); spa-sel: mlp='selected'; padded: mlp='all', each image\n"
        "padded to the batch max of containers.",
        flush=True,
    )
    print("timing the heterogeneous batch ...", file=sys.stderr, flush=True)
    hetero = [heterogeneous(backward, args.warmup, args.repeats, device) for backward in (False, True)]
    print("\nheterogeneous batch, B=8, stage3 shape, attention half (select+pack+MSA+scatter):")
    print(
        f"{'pass':8} {'packed ms':>10} {'padded ms':>10} {'time ratio':>10} {'sum n/(B max n)':>16} {'MAC ratio':>9}"
    )
    for h in hetero:
        print(
            f"{h['pass']:8} {h['packed_ms']:10.1f} {h['padded_ms']:10.1f} {h['time_ratio']:10.3f} "
            f"{h['token_ratio']:16.3f} {h['mac_ratio']:9.3f}"
        )
    print(
        "time ratio: packed / padded time; sum n/(B max n): selected tokens over the tokens padding to the\n"
        "batch max holds (the ideal time ratio); MAC ratio: closed-form attention MACs, packed / padded.",
        flush=True,
    )

    result = {
        "environment": {
            "device": torch.cuda.get_device_name()
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "settings": {"shapes": {k: SHAPES[k] for k in args.shapes}, "window": M, "repeats": args.repeats},
        "homogeneous": rows,
        "heterogeneous": hetero,
        "seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"\nwrote {args.out} in {result['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
