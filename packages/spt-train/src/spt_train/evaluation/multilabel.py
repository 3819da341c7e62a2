"""VOC multi-label classification mAP, the devkit's ``VOCevalcls.m`` logic.

Per class: images sorted by decreasing score (stable); a positive is a TP, a negative an FP, a
``difficult`` image (ground truth 0 in the devkit) neither; recall over the positives; AP by
:func:`~.voc.voc_ap` (all-point, VOC2010+, default; or 11-point, VOC2007). Classes without a
positive image get NaN and are left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .voc import voc_ap

__all__ = ["multilabel_map"]


def _numpy(x: Any) -> np.ndarray:
    """numpy array or torch tensor (any device) -> numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def multilabel_map(
    scores: Any,
    labels: Any,
    *,
    difficult: Any = None,
    class_names: Sequence[str] | None = None,
    eleven_point: bool = False,
) -> dict[str, Any]:
    """scores [N, K] float, labels [N, K] bool (or 0/1), difficult [N, K] bool (optional, ignored
    pairs) -> ``{"mAP": float, "per_class": {name: AP}, "num_positive": {name: int}}``.

    numpy arrays or torch tensors. class_names: K names (default ``"0".."K-1"``).
    """
    s = _numpy(scores).astype(np.float64)
    y = _numpy(labels).astype(bool)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and labels should both be [N, K], got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores have a non-finite value")
    d = np.zeros_like(y) if difficult is None else _numpy(difficult).astype(bool)
    if d.shape != y.shape:
        raise ValueError(f"difficult must be [N, K] like labels {y.shape}, got {d.shape}")
    names = [str(k) for k in range(s.shape[1])] if class_names is None else list(class_names)
    if len(names) != s.shape[1]:
        raise ValueError(f"class_names has {len(names)} names for K={s.shape[1]} classes")
    per_class, num_pos = {}, {}
    for k, name in enumerate(names):
        per_class[name] = _class_ap(s[:, k], y[:, k], d[:, k], eleven_point)
        num_pos[name] = int((y[:, k] & ~d[:, k]).sum())
    aps = [v for v in per_class.values() if not math.isnan(v)]
    return {"mAP": float(np.mean(aps)) if aps else math.nan, "per_class": per_class, "num_positive": num_pos}


def _class_ap(score: np.ndarray, pos: np.ndarray, difficult: np.ndarray, eleven_point: bool) -> float:
    """score, pos, difficult [N] -> AP; NaN without a (non-difficult) positive."""
    keep = ~difficult
    score, pos = score[keep], pos[keep]
    npos = int(pos.sum())
    if npos == 0:
        return math.nan
    order = np.argsort(-score, kind="stable")  # [N']
    tp = np.cumsum(pos[order])
    fp = np.cumsum(~pos[order])
    return voc_ap(tp / npos, tp / (tp + fp), eleven_point=eleven_point)
