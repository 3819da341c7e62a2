"""One process or many (``torchrun``): the same code. gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the process group ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this process's GPU) if present, else CPU; or ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but this machine has no CUDA device")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for, but this machine has no MPS device")
        return torch.device("mps")
    if name != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return torch.device("cpu")


def cleanup(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
