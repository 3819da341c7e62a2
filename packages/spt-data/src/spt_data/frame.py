"""The training frame: how an image is resized and padded before the backbone sees it.

Shared with training (spt-train resizes each image to exactly ``(out_h, out_w)`` and pads right and
bottom to ``(padded_h, padded_w)``), so that selection labels are made in the frame the tokens live in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Frame", "identity_frame", "resize_policy"]


class Frame(NamedTuple):
    """Resize + pad of one image: ``scale``, resized ``out_w x out_h``, padded ``padded_w x padded_h`` (px)."""

    scale: float
    out_w: int
    out_h: int
    padded_w: int
    padded_h: int


def resize_policy(
    width: int, height: int, short: int | None = 800, long: int | None = 1333, pad_to: int = 32
) -> Frame:
    """torchvision/detectron2 "shortest edge" policy: scale so the short side is ``short`` unless the
    long side would exceed ``long``; sizes round half up (``int(w * scale + 0.5)``); pad right/bottom
    to a multiple of ``pad_to``. ``short=long=None`` keeps the size (scale 1).

    Boxes map to the frame per axis by ``out_w / width`` and ``out_h / height`` (image edges land on
    frame edges exactly). Example: 1280x720 -> scale 1.0414, 1333x750, padded 1344x768.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if pad_to < 1:
        raise ValueError(f"pad_to must be >= 1, got {pad_to}")
    scale = 1.0
    if short is not None or long is not None:
        scales = []
        if short is not None:
            scales.append(short / min(width, height))
        if long is not None:
            scales.append(long / max(width, height))
        scale = min(scales)
    out_w = max(1, int(width * scale + 0.5))
    out_h = max(1, int(height * scale + 0.5))
    padded_w = math.ceil(out_w / pad_to) * pad_to
    padded_h = math.ceil(out_h / pad_to) * pad_to
    return Frame(scale, out_w, out_h, padded_w, padded_h)


def identity_frame(width: int, height: int) -> Frame:
    """The image's own pixel grid: no resize, no padding."""
    return resize_policy(width, height, short=None, long=None, pad_to=1)
