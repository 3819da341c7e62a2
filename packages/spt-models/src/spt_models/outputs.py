"""The backbones' output contract: ``maps`` or ``(maps, info)``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor


def split_output(
    out: OrderedDict[str, Tensor] | tuple[OrderedDict[str, Tensor], Any],
) -> tuple[OrderedDict[str, Tensor], Any]:
    """A backbone's forward output -> ``(maps, info)``; ``info`` is None for dense backbones.

    maps: ordered dict ``stage1..stage4`` of NHWC maps [B, h, w, c]. info: the model's selection
    record (SPT :class:`~spt_models.spt.SelectionInfo`, DynamicSwin
    :class:`~spt_models.dynamicswin.PruningInfo`, SparseViT
    :class:`~spt_models.sparsevit.WindowSelection`).
    """
    if isinstance(out, tuple):
        maps, info = out
        return maps, info
    return out, None
