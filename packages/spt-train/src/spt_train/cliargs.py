"""argparse ``type=`` functions of the ``spt-train`` CLI: a bad value is one usage line (exit 2).

The numbers, sizes and devices are spt-models' (:mod:`spt_models.cliargs`: one wording, ``WIDTHxHEIGHT``
parsed to ``(width, height)``, one device check); an output file is checked as spt-data checks its
own (:func:`spt_data.cliargs.writable_file`, imported when an ``--out`` is parsed: ``--help`` stays
fast), and so is an input file. Neither imports torch. spt-models keeps its own copy of the number
and size types because it does not depend on spt-data (DESIGN §1); ``test_cliargs.py`` holds the
two copies to the same messages.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spt_models.cliargs import DEVICE_HELP, device_name, nonneg_int, positive_int, size

__all__ = [
    "DEVICE_HELP",
    "device_name",
    "existing_file",
    "nonneg_int",
    "output_file",
    "parse_override",
    "parse_ratios",
    "positive_int",
    "size",
]


def existing_file(text: str) -> Path:
    """A file that exists (:func:`spt_data.cliargs.existing_file`)."""
    from spt_data.cliargs import existing_file

    return existing_file(text)


def output_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists or can be created and takes a file."""
    from spt_data.cliargs import writable_file

    return writable_file(text)


def parse_override(text: str) -> tuple[str, Any]:
    """``train.epochs=3`` -> ("train.epochs", 3): the value is read as YAML (numbers, lists, null)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, e.g. train.epochs=3, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def parse_ratios(text: str) -> dict[int, float]:
    """``16=0.31,32=0.45`` -> {16: 0.31, 32: 0.45}: select ratios in [0, 1] by stride."""
    ratios: dict[int, float] = {}
    for part in text.split(","):
        stride, sep, value = part.partition("=")
        try:
            s, r = int(stride), float(value)
        except ValueError:
            s = r = None
        if not sep or s is None or r is None or s < 1:
            raise argparse.ArgumentTypeError(
                f"must be STRIDE=RATIO[,STRIDE=RATIO...], e.g. 16=0.31,32=0.45, got {text!r}"
            )
        if not 0.0 <= r <= 1.0:
            raise argparse.ArgumentTypeError(f"stride {s}: ratio must be a number in [0, 1], got {value!r}")
        if s in ratios:
            raise argparse.ArgumentTypeError(f"stride {s} is given twice in {text!r}")
        ratios[s] = r
    return ratios
