"""The selection gate (paper eq. 11), multi-scale scores (eq. 4) and gated features (eq. 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Gate(nn.Module):
    """One ``Linear(C, 1)``: token features [B, H, W, C] -> score logits [B, H, W].

    Initialised with a small random weight and zero bias, so every token starts at sigmoid 0.5,
    well above the selection threshold: training starts from (almost) everything selected and the
    selection loss teaches the gate what to drop.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).squeeze(-1)


def multiscale_score(logits: Tensor, finer: Tensor | None) -> Tensor:
    """Eq. 4: ``max(logits, maxpool2d(finer, 2))``.

    logits [B, H, W]; finer [B, H2, W2] with ceil(H2 / 2) == H and ceil(W2 / 2) == W (the score map
    of the previous scale, before patch merging), or None -> [B, H, W].
    """
    if finer is None:
        return logits
    pooled = F.max_pool2d(finer.unsqueeze(1), kernel_size=2, ceil_mode=True).squeeze(1)
    if pooled.shape != logits.shape:
        raise ValueError(
            f"finer score map {tuple(finer.shape)} pools to {tuple(pooled.shape)}, "
            f"expected {tuple(logits.shape)}"
        )
    return torch.maximum(logits, pooled)


def gate_features(x: Tensor, logits: Tensor) -> Tensor:
    """Eq. 5: ``sigmoid(s) * x``; x [..., C], logits [...] -> [..., C]."""
    return torch.sigmoid(logits).unsqueeze(-1) * x
