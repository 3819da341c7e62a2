"""Gate AUROC: does a gate rank object tokens above background tokens, whatever the threshold?

The AUROC of scores against binary labels is the Mann-Whitney U statistic over (positive, negative)
pairs: ``(#{s+ > s-} + 0.5 #{s+ == s-}) / (P N)``, i.e. rank-based with ties averaged. It is NaN
when there is no positive or no negative. :func:`auroc` computes it exactly.

:class:`AurocMeter` accumulates the scores of real tokens per key (an SPA block) over batches:

- **exact** (the default path): every score is kept as float32 with its label (5 bytes a token),
  and :meth:`AurocMeter.compute` ranks them: the exact U statistic of the float32 scores.
- **histogram fallback**, only past ``max_exact`` tokens in the meter (default 2**26, about 340 MB;
  a demo val split holds about 10**5, the paper's COCO val at 1333x800 with SPT-T/16 about 3 * 10**8):
  every key's scores become counts of positives and negatives in ``bins`` equal bins of the logit
  clipped to ``[-clip, clip]`` (default 65536 bins over [-32, 32]: width 1/1024); from then on
  each batch is binned. Tokens in one bin count as ties, so the AUROC is exact up to
  ``0.5 * sum_b p_b n_b / (P N)`` (p_b, n_b: positives and negatives in bin b), which
  :meth:`AurocMeter.compute` reports as ``error`` (0.0 on the exact path).

Keys may belong to a ``group`` (a stride): :meth:`AurocMeter.compute` also gives each group's AUROC
over the pooled tokens of its keys (each block's tokens counted once per block).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np

__all__ = ["AurocMeter", "auroc", "auroc_from_counts"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Positives and negatives per score group, groups in increasing score order (equal scores
    in one group) -> (AUROC with ties averaged, its tie share ``0.5 sum_b p_b n_b / (P N)``);
    (NaN, NaN) without positives or negatives."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    P, N = pos.sum(), neg.sum()
    if P == 0 or N == 0:
        return math.nan, math.nan
    below = np.cumsum(neg) - neg  # negatives in strictly lower groups
    u = float(np.sum(pos * (below + 0.5 * neg)))
    return u / (P * N), 0.5 * float(np.sum(pos * neg)) / (P * N)


def auroc(scores: Any, labels: Any) -> float:
    """Exact AUROC (Mann-Whitney U, ties averaged) of scores [...] against bool labels [...] of the
    same shape (numpy or torch); NaN without positives or without negatives."""
    s, y = _numpy(scores).ravel(), _numpy(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels should have the same size, got {s.size} and {y.size}")
    values, group = np.unique(s, return_inverse=True)  # sorted distinct scores, each token's group
    pos = np.bincount(group, weights=y, minlength=len(values))
    neg = np.bincount(group, weights=~y, minlength=len(values))
    return auroc_from_counts(pos, neg)[0]


class AurocMeter:
    """Scores and labels of real tokens per key over batches -> exact AUROC per key and per group
    (see the module docstring for the histogram fallback past ``max_exact`` tokens)."""

    def __init__(self, max_exact: int = 2**26, bins: int = 2**16, clip: float = 32.0) -> None:
        self.max_exact, self.bins, self.clip = max_exact, bins, clip
        self._scores: dict[Hashable, list[np.ndarray]] = {}
        self._labels: dict[Hashable, list[np.ndarray]] = {}
        self._hist: dict[Hashable, np.ndarray] = {}  # key -> [2, bins] int64 (negatives, positives)
        self._groups: dict[Hashable, Hashable | None] = {}
        self._stored = 0

    @property
    def keys(self) -> list[Hashable]:
        """The keys updated so far, in first-update order."""
        return list(self._groups)

    @property
    def exact(self) -> bool:
        """True while every score is kept (no histogram)."""
        return not self._hist

    def update(
        self, key: Hashable, scores: Any, labels: Any, valid: Any = None, group: Hashable = None
    ) -> None:
        """Add a batch of one key: scores [B, h, w] float (logits), labels and valid [B, h, w] bool
        (valid None: every token real); only real tokens count. ``group``: the key's group (a
        stride), fixed at the key's first update."""
        s, y = _numpy(scores), _numpy(labels).astype(bool)
        if s.shape != y.shape or (valid is not None and _numpy(valid).shape != s.shape):
            shapes = [tuple(s.shape), tuple(y.shape), None if valid is None else tuple(_numpy(valid).shape)]
            raise ValueError(f"{key}: scores, labels and valid should have one shape, got {shapes}")
        if valid is not None:
            real = _numpy(valid).astype(bool)
            s, y = s[real], y[real]
        s, y = s.astype(np.float32).ravel(), y.ravel()
        self._groups.setdefault(key, group)
        if self._hist:
            self._bin(key, s, y)
            return
        self._scores.setdefault(key, []).append(s)
        self._labels.setdefault(key, []).append(y)
        self._stored += s.size
        if self._stored > self.max_exact:  # switch every key to histograms
            for k in list(self._scores):
                self._bin(k, np.concatenate(self._scores.pop(k)), np.concatenate(self._labels.pop(k)))
            self._stored = 0

    def _bin(self, key: Hashable, s: np.ndarray, y: np.ndarray) -> None:
        hist = self._hist.setdefault(key, np.zeros((2, self.bins), np.int64))
        width = 2 * self.clip / self.bins
        index = np.clip(np.floor((np.clip(s, -self.clip, self.clip) + self.clip) / width), 0, self.bins - 1)
        index = index.astype(np.intp)
        hist[0] += np.bincount(index[~y], minlength=self.bins)
        hist[1] += np.bincount(index[y], minlength=self.bins)

    def _counts(self, keys: list[Hashable]) -> tuple[np.ndarray, np.ndarray]:
        """(positives, negatives) per score group of the pooled tokens of ``keys``."""
        if self._hist:
            hist = sum(self._hist[k] for k in keys)
            return hist[1], hist[0]
        s = np.concatenate([a for k in keys for a in self._scores[k]])
        y = np.concatenate([a for k in keys for a in self._labels[k]])
        values, group = np.unique(s, return_inverse=True)
        return np.bincount(group, weights=y, minlength=len(values)), np.bincount(
            group, weights=~y, minlength=len(values)
        )

    def compute(self) -> dict[str, Any]:
        """-> ``{"keys": {str(key): AUROC}, "groups": {str(group): AUROC over its keys' pooled
        tokens}, "exact": bool, "error": the largest tie share (0.0 when exact)}``, AUROCs NaN
        without positives or negatives; keys and groups in first-update order."""
        out: dict[str, Any] = {"keys": {}, "groups": {}, "exact": self.exact, "error": 0.0}
        errors = []
        members: dict[Hashable, list[Hashable]] = {}
        for key, group in self._groups.items():
            if group is not None:
                members.setdefault(group, []).append(key)
        for where, items in (("keys", {k: [k] for k in self._groups}), ("groups", members)):
            for name, keys in items.items():
                value, ties = auroc_from_counts(*self._counts(keys))
                out[where][str(name)] = value
                errors.append(ties)
        if not self.exact:
            out["error"] = max((e for e in errors if not math.isnan(e)), default=0.0)
        return out
