"""``spt-train backbone``: a trained run's backbone as a plain state dict, the file ``weights:``
takes (torchvision's Swin key layout, ``features.N...``, tensors only).

    spt-train backbone runs/pretrain/run.yaml --checkpoint runs/pretrain/final.pt --out backbone.pth

The demo pipeline pretrains a Swin-T classifier on separate synthetic scenes (its stand-in for
ImageNet) and starts every T run from this file, through the same ``weights:`` path a user's
ImageNet checkpoint takes in the paper profile.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .cliargs import existing_file, output_file

if TYPE_CHECKING:
    import torch


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "backbone",
        help="write a trained run's backbone weights (the file weights: takes)",
        formatter_class=fmt,
    )
    p.add_argument("config", type=existing_file, help="run config (YAML) of the checkpoint")
    p.add_argument(
        "--checkpoint", type=existing_file, required=True, help="a spt-train checkpoint of that run"
    )
    p.add_argument("--out", type=output_file, required=True, help="state dict to write (atomically, .pth)")


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's state dict of a detector (``model.backbone.body``) or a classifier."""
    body = model.backbone.body if hasattr(model.backbone, "body") else model.backbone
    return {k: v.detach().clone() for k, v in body.state_dict().items()}


def run(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import save_checkpoint
    from .config import load_config
    from .engine import make_dataset
    from .predict import load_model

    config = load_config(args.config)
    num_classes = make_dataset(config, "train").num_classes
    state = backbone_state(load_model(config, args.checkpoint, num_classes, torch.device("cpu")))
    save_checkpoint(state, args.out)
    print(f"wrote {args.out}: {len(state)} tensors of {config.model.name}'s backbone")
    return 0
