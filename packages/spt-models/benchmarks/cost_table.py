"""MACs of every T/S/B backbone at 1280x800 under both readings of SPA's cost, beside the paper.

Swin-T/S/B and DynamicSwin-T/S/B are counted (``count_macs``: FlopCounterMode // 2, one eval
forward of one image). SPT is Swin's count with every stage-3/4 Swin block replaced by spa-core's
closed form (:func:`spa_core.spa_block_macs`, containers of a random mask of exactly the ratio),
plus the extra SPA blocks and the stage-2 gate: the identity ``test_spt_macs_follow_the_closed_forms``
holds to the MAC. The last column solves for the select ratio at which ``mlp="selected"`` reaches
the paper's figure.

    python packages/spt-models/benchmarks/cost_table.py [--out results/cost_table.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from spa_core import spa_block_macs, swin_block_macs
from spt_models import SPT_B, SPT_S, SPT_T12, SPT_T16, count_macs, create_model, token_grid

HEIGHT, WIDTH, M = 800, 1280, 7
SPT = {
    "spt_t12": (SPT_T12, "swin_t"),
    "spt_t": (SPT_T16, "swin_t"),
    "spt_s": (SPT_S, "swin_s"),
    "spt_b": (SPT_B, "swin_b"),
}
# paper backbone "FLOPs" (MACs, G) at 1280x800: Table 1 (COCO), 2 (BDD100K), 3 (BDD-S)
PAPER = {
    "swin_t": {"coco": 96},
    "swin_s": {"coco": 188},
    "swin_b": {"coco": 332},
    "dynamicswin_t": {"coco": 101},
    "dynamicswin_s": {"coco": 192},
    "dynamicswin_b": {"coco": 341},
    "spt_t": {"coco": 90, "bdd": 84, "bdd_s": 80},
    "spt_s": {"coco": 171, "bdd": 155, "bdd_s": 149},
    "spt_b": {"coco": 294, "bdd": 256},
}


def spt_macs(name: str, swin: int, ratio: float, mlp: str) -> int:
    """SPT ``name``'s MACs (one image) with every SPA block keeping exactly ``ratio`` of its tokens."""
    config, _ = SPT[name]
    total = swin
    for stage, stride in ((2, 16), (3, 32)):
        h, w = token_grid(HEIGHT, WIDTH, stride)
        C = config.embed_dim * 2**stage
        kept = round(ratio * h * w)
        spa = spa_block_macs(1, h, w, C, M, -(-kept // (M * M)), mlp=mlp, num_selected=kept)
        swin_blocks = config.depths[stage]
        extra = config.extra_blocks if stage == 2 else 0
        total += swin_blocks * (spa - swin_block_macs(1, h, w, C, M)) + extra * spa
    h8, w8 = token_grid(HEIGHT, WIDTH, 8)
    return total + h8 * w8 * config.embed_dim * 2  # the stage-2 gate, Linear(2C, 1)


def ratio_for(name: str, swin: int, target: float, mlp: str) -> float | None:
    """The select ratio at which ``spt_macs`` meets ``target`` (MACs), or None if out of [0, 1]."""
    low, high = 0.0, 1.0
    if not spt_macs(name, swin, low, mlp) <= target <= spt_macs(name, swin, high, mlp):
        return None
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if spt_macs(name, swin, mid, mlp) < target else (low, mid)
    return (low + high) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/cost_table.json"), help="JSON file")
    args = parser.parse_args(argv)
    x = torch.randn(1, 3, HEIGHT, WIDTH)
    counted = {}
    for name in ("swin_t", "swin_s", "swin_b", "dynamicswin_t", "dynamicswin_s", "dynamicswin_b"):
        print(f"counting {name} ...", file=sys.stderr, flush=True)
        counted[name] = count_macs(create_model(name), x)
    rows = [
        {"model": n, "reading": "-", "ratio": None, "macs": m, "paper": PAPER[n]} for n, m in counted.items()
    ]
    for name, (_, base) in SPT.items():
        for mlp in ("all", "selected"):
            for ratio in (1.0, 0.5, 0.25, 0.0):
                macs = spt_macs(name, counted[base], ratio, mlp)
                rows.append(
                    {
                        "model": name,
                        "reading": mlp,
                        "ratio": ratio,
                        "macs": macs,
                        "paper": PAPER.get(name, {}),
                    }
                )
            for dataset, figure in PAPER.get(name, {}).items():
                r = ratio_for(name, counted[base], figure * 1e9, mlp)
                rows.append(
                    {"model": name, "reading": mlp, "ratio_for": dataset, "ratio": r, "macs": figure * 1e9}
                )
    print(f"{'model':<14} {'mlp':<9} {'ratio':>6} {'MACs (G)':>9}  paper (G)")
    for r in rows:
        if "ratio_for" in r:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            print(
                f"{r['model']:<14} {r['reading']:<9} {ratio:>6} {'':>9}  ratio that reaches the {r['ratio_for']} figure"
            )
            continue
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        paper = ", ".join(f"{k} {v}" for k, v in r["paper"].items())
        print(f"{r['model']:<14} {r['reading']:<9} {ratio:>6} {r['macs'] / 1e9:9.1f}  {paper}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"input": [HEIGHT, WIDTH], "torch": torch.__version__, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
