"""The selection loss (paper eq. 10): supervised token scores, summed over the scored blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def selection_loss(
    logits: Sequence[Tensor],
    labels: Sequence[Tensor],
    valid: Sequence[Tensor | None] | None = None,
) -> Tensor:
    """Eq. 10: ``sum_i mean_{real tokens of block i} BCE(logits_i, labels_i)``.

    logits: per scored block i (s0 at stride 8, then every SPA block), [B, h_i, w_i] score logits.
    labels: per block, [B, h_i, w_i] selection labels (bool or {0, 1} float; 1 = object token).
    valid: per block, [B, h_i, w_i] bool real tokens (batch padding excluded) or None (all real).

    Reduction: binary cross-entropy with logits, averaged over the real tokens of all images of a
    block (each token weighs the same, so a large image counts more than a small one), then
    **summed** over blocks. Multiply by alpha (paper: 0.01) to add it to the task loss. A block
    without any real token contributes 0. Computed in fp32 -> scalar.
    """
    if len(logits) != len(labels) or (valid is not None and len(valid) != len(logits)):
        raise ValueError(
            f"selection_loss needs one labels (and valid) map per logits map, got {len(logits)} logits, "
            f"{len(labels)} labels, {None if valid is None else len(valid)} valid"
        )
    if not logits:
        raise ValueError("selection_loss needs at least one block's logits")
    total = logits[0].new_zeros((), dtype=torch.float32)
    for i, (score, target) in enumerate(zip(logits, labels)):
        real = None if valid is None else valid[i]
        if target.shape != score.shape or (real is not None and real.shape != score.shape):
            raise ValueError(
                f"block {i}: labels {tuple(target.shape)} and valid "
                f"{None if real is None else tuple(real.shape)} should match logits {tuple(score.shape)}"
            )
        bce = F.binary_cross_entropy_with_logits(score.float(), target.float(), reduction="none")
        if real is None:
            total = total + bce.mean()
        else:
            total = total + (bce * real).sum() / real.sum().clamp(min=1)
    return total
