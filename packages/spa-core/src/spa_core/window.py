"""Swin's window geometry, expressed as index maps instead of tensor copies.

Legend: H, W the token grid, M the window side, Hp, Wp the grid padded to multiples of M,
Np = Hp * Wp. A :class:`WindowLayout` lists the positions of the padded and cyclically shifted
grid in *window-partition order* (windows in raster order, tokens in raster order inside a
window), which is the order Swin's ``window_partition`` produces and the order SPA packs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


def pad_to_multiple(size: int, window: int) -> int:
    """Smallest multiple of ``window`` that is >= ``size``."""
    return -(-size // window) * window


def effective_shift(height: int, width: int, window: int, shift: int) -> tuple[int, int]:
    """Swin's rule: no shift along a side whose padded length fits in one window."""
    hp, wp = pad_to_multiple(height, window), pad_to_multiple(width, window)
    return (0 if window >= hp else shift), (0 if window >= wp else shift)


@dataclass(frozen=True)
class WindowLayout:
    """Index maps of one (H, W, M, shift) geometry, in window-partition order.

    source [Np] long: flat index ``h * W + w`` into the unpadded map, -1 for window padding.
    pos    [Np, 2] long: (row, col) in the shifted, padded frame (relative-position-bias offsets).
    region [Np] long: Swin's shift-region id (0..8); all 0 when the block is not shifted.
    """

    source: Tensor
    pos: Tensor
    region: Tensor


@lru_cache(maxsize=128)
def window_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    """Build (and cache) the :class:`WindowLayout` of an ``height x width`` grid.

    ``shift`` is Swin's cyclic shift (M // 2 in odd blocks, 0 otherwise); it is dropped along a
    side that fits in one window, exactly as torchvision's ``shifted_window_attention`` does.
    """
    M = window
    hp, wp = pad_to_multiple(height, M), pad_to_multiple(width, M)
    sh, sw = effective_shift(height, width, M, shift)
    rows = torch.arange(hp).view(hp // M, 1, M, 1).expand(hp // M, wp // M, M, M).reshape(-1)  # [Np]
    cols = torch.arange(wp).view(1, wp // M, 1, M).expand(hp // M, wp // M, M, M).reshape(-1)  # [Np]
    # torch.roll(x, -s) puts original position (r + s) % Hp at position r.
    src_r, src_c = (rows + sh) % hp, (cols + sw) % wp
    inside = (src_r < height) & (src_c < width)
    source = torch.where(inside, src_r * width + src_c, torch.full_like(src_r, -1))
    region = _region(rows, hp, M, sh) * 3 + _region(cols, wp, M, sw)
    pos = torch.stack([rows, cols], dim=1)
    return WindowLayout(source.to(device), pos.to(device), region.to(device))


def _region(coord: Tensor, padded: int, window: int, shift: int) -> Tensor:
    """Swin's slices (0, -M), (-M, -s), (-s, None) along one side -> ids 0, 1, 2."""
    if shift == 0:
        return torch.zeros_like(coord)
    return (coord >= padded - window).long() + (coord >= padded - shift).long()


def relative_position_index(pos_q: Tensor, pos_k: Tensor, window: int) -> Tensor:
    """Index into Swin's ``(2M-1)^2`` bias table for every (query, key) pair.

    pos_q [..., Lq, 2], pos_k [..., Lk, 2] -> [..., Lq, Lk]. Offsets are clamped to
    [-(M-1), M-1], so inside one Swin window this is exactly Swin's ``relative_position_index``.
    """
    M = window
    rel = (pos_q.unsqueeze(-2) - pos_k.unsqueeze(-3)).clamp(-(M - 1), M - 1) + (M - 1)  # [..., Lq, Lk, 2]
    return rel[..., 0] * (2 * M - 1) + rel[..., 1]
