"""Selection metrics (paper App. B.3): select ratio, object-token retention and density, per stage.

Per image and stage, from the hard selection ``keep``, the selection labels ``label`` (tokens of
objects) and ``valid`` (real, non-padding tokens), all ``[B, h, w]`` bool on the stage's grid:

- real = |valid|, selected = |keep & valid|, positive = |label & valid|,
  selected positive = |keep & label & valid| (padding never counts, selected or not);
- select ratio = selected / real;
- object-token retention = selected positive / positive (share of object tokens that were kept);
- density before = positive / real; density after = selected positive / selected.

:class:`SelectionMeter` sums the counts over batches. Its stage totals pool tokens over all
images (``select_ratio`` = sum selected / sum real, likewise retention and densities);
``select_ratio_image_mean`` is the mean of the per-image ratios, and ``per_image_select_ratio``
lists them in update order. A ratio with a zero denominator is NaN (e.g. retention of an image
without objects).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np

__all__ = ["COUNT_NAMES", "SelectionMeter", "selection_counts", "selection_ratios"]

COUNT_NAMES = ("real", "selected", "positive", "selected_positive")


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach")


def _check(name: str, x: Any, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    dtype = str(x.dtype)
    if dtype not in ("bool", "torch.bool") or x.ndim != 3:
        raise ValueError(f"{name} must be a [B, h, w] bool mask, got {tuple(x.shape)} {dtype}")
    if shape is not None and tuple(x.shape) != shape:
        raise ValueError(f"{name} should have the shape of keep {list(shape)}, got {list(x.shape)}")
    return tuple(x.shape)


def _per_image(mask: Any) -> np.ndarray:
    """[B, h, w] bool -> [B] int64 counts (summed on the mask's device)."""
    if _is_torch(mask):
        return mask.flatten(1).sum(1).cpu().numpy().astype(np.int64)
    return mask.reshape(mask.shape[0], -1).sum(1).astype(np.int64)


def selection_counts(keep: Any, label: Any, valid: Any = None) -> dict[str, np.ndarray]:
    """keep, label, valid [B, h, w] bool (numpy or torch; valid None = every token real) ->
    ``{"real", "selected", "positive", "selected_positive"}``, each [B] int64."""
    shape = _check("keep", keep, None)
    _check("label", label, shape)
    if valid is None:
        valid = keep.new_ones(shape) if _is_torch(keep) else np.ones(shape, bool)
    _check("valid", valid, shape)
    sel = keep & valid
    return {
        "real": _per_image(valid),
        "selected": _per_image(sel),
        "positive": _per_image(label & valid),
        "selected_positive": _per_image(sel & label),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def selection_ratios(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Counts ([B] or scalars, :func:`selection_counts`) -> ``select_ratio``, ``retention``,
    ``density_before``, ``density_after`` of the same shape (NaN where the denominator is 0)."""
    c = {k: np.asarray(counts[k], np.float64) for k in COUNT_NAMES}
    return {
        "select_ratio": _ratio(c["selected"], c["real"]),
        "retention": _ratio(c["selected_positive"], c["positive"]),
        "density_before": _ratio(c["positive"], c["real"]),
        "density_after": _ratio(c["selected_positive"], c["selected"]),
    }


class SelectionMeter:
    """Sums selection counts per stage over batches; :meth:`compute` gives the stage metrics.

    Stages are any hashable keys (a stride such as 16, a block name); :meth:`compute` keys them by
    ``str(stage)`` in first-update order.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._totals: dict[Hashable, dict[str, int]] = {}
        self._image_ratios: dict[Hashable, list[float]] = {}

    def update(self, stage: Hashable, keep: Any, label: Any, valid: Any = None) -> None:
        """Add one batch of a stage: keep, label, valid [B, h, w] bool (see :func:`selection_counts`)."""
        counts = selection_counts(keep, label, valid)
        totals = self._totals.setdefault(stage, dict.fromkeys(COUNT_NAMES, 0))
        for k in COUNT_NAMES:
            totals[k] += int(counts[k].sum())
        ratios = selection_ratios(counts)["select_ratio"]
        self._image_ratios.setdefault(stage, []).extend(float(v) for v in ratios)

    def compute(self) -> dict[str, dict[str, Any]]:
        """-> ``{str(stage): {"select_ratio", "select_ratio_image_mean", "retention",
        "density_before", "density_after", "num_images", "per_image_select_ratio", *COUNT_NAMES}}``."""
        out = {}
        for stage, totals in self._totals.items():
            ratios = {k: float(v) for k, v in selection_ratios(totals).items()}
            per_image = self._image_ratios[stage]
            finite = [v for v in per_image if not math.isnan(v)]
            out[str(stage)] = {
                **ratios,
                "select_ratio_image_mean": float(np.mean(finite)) if finite else math.nan,
                "num_images": len(per_image),
                "per_image_select_ratio": list(per_image),
                **totals,
            }
        return out
