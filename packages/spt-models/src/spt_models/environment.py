"""Where a measurement ran: the device a name resolves to, and the environment record the
benchmarks write beside their numbers (device, torch, torchvision, python, threads, CPUs, argv)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision

from .cliargs import DEVICE_HELP, is_device_name


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this process's GPU, ``local_rank``) if present, else CPU; or ``cpu`` /
    ``cuda`` (= ``cuda:local_rank``) / ``cuda:N`` / ``mps``. A device this machine lacks raises
    ValueError naming it."""
    if not is_device_name(name):
        raise ValueError(f"device must be {DEVICE_HELP}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this machine has no CUDA device (torch {torch.__version__})")
        device = torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps': this machine has no MPS device")
        return torch.device("mps")
    return torch.device("cpu")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``, else "cpu"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def environment(device: torch.device) -> dict[str, Any]:
    """The device's name (GPU or CPU model), torch, torchvision and python versions, torch's
    threads, the CPU count and the command line's arguments."""
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv[1:],
    }
