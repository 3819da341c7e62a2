"""argparse ``type=`` functions of the ``spt-models`` CLI (and, re-exported, of ``spt-train``'s): a
bad value is one usage line (exit 2). No torch here: ``--help`` and argument errors answer at once.

One wording for every CLI of the monorepo ("must be ..., got 'x'", as ``spt_data.cliargs``); a size
is ``WIDTHxHEIGHT`` as the paper writes it and parses to ``(width, height)`` in that order (callers
that need ``(height, width)`` swap it where they call torch); a device is one of :data:`DEVICE_HELP`.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

__all__ = [
    "DEVICE_HELP",
    "bench_ratio",
    "check_writable",
    "device_name",
    "is_device_name",
    "nonneg_int",
    "output_file",
    "positive_int",
    "ratio_0_1",
    "size",
]

Error = argparse.ArgumentTypeError
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
MIN_SIDE = 32  # the coarsest stride of every backbone: one token at stage 4


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Error(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise Error(f"must be a positive integer, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise Error(f"must be an integer >= 0, got {text!r}")
    return value


def ratio_0_1(text: str) -> float:
    """A select ratio in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise Error(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise Error(f"must be a number in [0, 1], got {text!r}")
    return value


def bench_ratio(text: str) -> float | str:
    """A select ratio in [0, 1] or ``spread`` (BDD-S-like per-image ratios 0.05-0.6)."""
    return "spread" if text == "spread" else ratio_0_1(text)


def size(text: str) -> tuple[int, int]:
    """``"1280x800"`` (WIDTHxHEIGHT, as the paper writes it) -> (width, height), both >= 32."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Error(f"must be WIDTHxHEIGHT, e.g. 1280x800, got {text!r}") from None
    if width < MIN_SIDE or height < MIN_SIDE:
        raise Error(f"must be WIDTHxHEIGHT with both sides >= {MIN_SIDE}, got {text!r}")
    return width, height


def is_device_name(text: str) -> bool:
    """``text`` names a device kind :func:`spt_models.environment.pick_device` resolves."""
    return bool(_DEVICE.fullmatch(text))


def device_name(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps (whether this machine has it is checked after parsing)."""
    if not is_device_name(text):
        raise Error(f"must be {DEVICE_HELP}, got {text!r}")
    return text


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`argparse.ArgumentTypeError` unless a new file can be created at ``path`` (its
    folder existing or creatable, and taking a file), by writing a probe file: the check of
    ``spt_data.io.check_writable``, here because spt-models does not depend on spt-data."""
    parent = Path(path).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Error(f"cannot write {what}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".spt-probe.", dir=parent)
    except OSError as e:
        raise Error(f"cannot write {what}: folder {parent} is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(text: str) -> Path:
    """An output file: not a folder, in a folder that exists or can be created and takes a file."""
    path = Path(text)
    if path.is_dir():
        raise Error(f"{text} is a directory, expected a file name")
    check_writable(path, text)
    return path
