"""argparse ``type=`` functions of the ``spt-data`` CLI: a bad value is one usage line (exit 2).

Output paths are checked here, before any work starts: not a directory, no ancestor that is a file,
a folder we can create a file in (probed with a real temporary file, so it also holds for root and
read-only file systems), and a suffix that matches what the command writes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from .errors import DataError
from .io import check_writable

__all__ = [
    "existing_file",
    "image_size",
    "nonneg_int",
    "output_dir",
    "output_file",
    "positive_int",
    "ratio",
    "split_name",
    "synth_size",
    "writable_file",
]

Error = argparse.ArgumentTypeError


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Error(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    v = _int(text)
    if v < 1:
        raise Error(f"must be a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    v = _int(text)
    if v < 0:
        raise Error(f"must be an integer >= 0, got {text!r}")
    return v


def ratio(text: str) -> float:
    """A finite number in (0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise Error(f"must be a number in (0, 1], got {text!r}") from None
    if not (math.isfinite(v) and 0 < v <= 1):
        raise Error(f"must be a number in (0, 1], got {text!r}")
    return v


def _size(text: str, minimum: int) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Error(f"must be WIDTHxHEIGHT, e.g. 320x192, got {text!r}") from None
    if w < minimum or h < minimum:
        raise Error(f"must be WIDTHxHEIGHT with both sides >= {minimum}, got {text!r}")
    return w, h


def synth_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, both >= 32 (the smallest scene the generator draws)."""
    return _size(text, 32)


def image_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, both >= 1."""
    return _size(text, 1)


def split_name(text: str) -> str:
    """A non-empty name without a path separator."""
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise Error(f"must be a plain name such as train or val, got {text!r}")
    return text


def existing_file(text: str) -> Path:
    """A file that exists."""
    path = Path(text)
    if path.is_dir():
        raise Error(f"{text} is a directory, expected a file")
    if not path.is_file():
        raise Error(f"file not found: {text}")
    return path


def _check_writable_folder(path: Path, text: str) -> None:
    """The folder ``path`` will live in can be created (or exists) and takes a new file."""
    try:
        check_writable(path, text)
    except DataError as e:
        raise Error(str(e)) from None


def writable_file(text: str) -> Path:
    """An output file of any suffix: not a folder, in a folder that exists or can be created and
    takes a new file (the check of every CLI's ``--out``; spt-train uses it too)."""
    path = Path(text)
    if path.is_dir():
        raise Error(f"{text} is a directory, expected a file name")
    _check_writable_folder(path, text)
    return path


def output_file(*suffixes: str, what: str) -> Callable[[str], Path]:
    """-> a type function for an output file (:func:`writable_file`) ending in one of ``suffixes``;
    ``what`` names the format."""

    def check(text: str) -> Path:
        if Path(text).suffix.lower() not in suffixes:
            raise Error(f"must end in {' or '.join(suffixes)} ({what}), got {text!r}")
        return writable_file(text)

    check.__name__ = "output file"
    return check


def output_dir(text: str) -> Path:
    """An output folder: not a file, creatable and writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise Error(f"{text} is a file, expected a folder")
    _check_writable_folder(path / "x", text)
    return path
