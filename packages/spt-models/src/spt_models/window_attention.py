"""Swin window attention on any subset of a map's windows, optionally with dropped keys.

Legend: B images, H, W token grid, C channels, M window side, L = M * M tokens per window,
nW windows per image (of the grid padded to multiples of M), K windows taken per image, nH heads,
T real tokens taken.

torchvision's ``shifted_window_attention`` pads, rolls and partitions the whole map. The
token-sparse baselines need the same math on *some* windows (SparseViT) or with some keys masked
(DynamicSwin). Here the window geometry is spa_core's :func:`~spa_core.window_layout` (index maps
in window-partition order and Swin's shift regions, so nothing is rolled or copied twice) and the
weights are those of a torchvision ``ShiftedWindowAttention``. Window padding is zeros after
``norm1`` and is attended, as in torchvision: with every window and every key,
:func:`window_attention` equals torchvision's attention (tested to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.swin_transformer import ShiftedWindowAttention

from spa_core import window_layout

SHIFT_MASK = -100.0  # torchvision's additive mask between different shift regions


@dataclass(frozen=True)
class WindowTokens:
    """Where the slots of K windows per image come from.

    source [B, K, L] long: row ``b * H * W + h * W + w`` of the flattened map [B * H * W, C],
    -1 for window padding. region [B, K, L] long: Swin's shift region of each slot.
    """

    source: Tensor
    region: Tensor

    @property
    def real(self) -> Tensor:
        """[B, K, L] bool: slots holding a token of the map (not window padding)."""
        return self.source >= 0

    @property
    def rows(self) -> Tensor:
        """[T] long: map rows of the real slots, in slot order (each map row at most once)."""
        return self.source[self.real]

    def gather(self, x_flat: Tensor, fill: float | bool = 0) -> Tensor:
        """x_flat [B * H * W, *] -> [B * K, L, *], ``fill`` at window padding."""
        out = x_flat[self.source.clamp(min=0).flatten(0, 1)]  # [B*K, L, *]
        real = self.real.flatten(0, 1).view(*out.shape[:2], *([1] * (out.dim() - 2)))
        return torch.where(real, out, torch.full_like(out, fill))


def window_tokens(
    batch: int,
    height: int,
    width: int,
    window: int,
    shift: int,
    device: torch.device,
    windows: Tensor | None = None,
) -> WindowTokens:
    """Index maps of every window of each image (``windows=None``) or of the windows
    ``windows`` [B, K] (indices 0..nW-1 in window raster order of the padded, shifted grid)."""
    layout = window_layout(height, width, window, shift, torch.device(device))
    L = window * window
    source = layout.source.view(-1, L)  # [nW, L] rows of one image's map, -1 = padding
    region = layout.region.view(-1, L)  # [nW, L]
    if windows is None:
        windows = torch.arange(source.shape[0], device=source.device).expand(batch, -1)  # [B, nW]
    src, reg = source[windows], region[windows]  # [B, K, L] each
    offset = (torch.arange(batch, device=src.device) * height * width).view(batch, 1, 1)  # [B, 1, 1]
    return WindowTokens(torch.where(src >= 0, src + offset, src), reg)


def window_attention(
    attn: ShiftedWindowAttention,
    tokens: Tensor,
    region: Tensor,
    key_keep: Tensor | None = None,
) -> Tensor:
    """torchvision's window attention with ``attn``'s weights on already-partitioned windows.

    tokens [N', L, C] (N' windows, LayerNorm'ed, zeros at padding), region [N', L] shift regions
    (pairs in different regions get torchvision's -100), key_keep [N', L] bool or None: a query
    attends key j only if ``key_keep[j]`` or j is the query itself (DynamicViT's rule, so a row is
    never empty) -> [N', L, C]. The masked keys get exactly zero weight (-inf before the softmax).
    """
    Nw, L, C = tokens.shape
    nH = attn.num_heads
    qkv = F.linear(tokens, attn.qkv.weight, attn.qkv.bias).view(Nw, L, 3, nH, C // nH)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [N', nH, L, d]
    logits = (q * (C // nH) ** -0.5) @ k.transpose(-2, -1)  # [N', nH, L, L]
    logits = logits + attn.get_relative_position_bias()  # + [1, nH, L, L]
    other = region.unsqueeze(2) != region.unsqueeze(1)  # [N', L, L] query region != key region
    logits = logits + other.unsqueeze(1).to(logits.dtype) * SHIFT_MASK
    if key_keep is not None:
        eye = torch.eye(L, dtype=torch.bool, device=tokens.device)
        allowed = key_keep.unsqueeze(1) | eye  # [N', L, L]: key kept, or the query itself
        logits = logits.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    probs = F.dropout(logits.softmax(dim=-1), p=attn.attention_dropout, training=attn.training)
    out = (probs @ v).transpose(1, 2).reshape(Nw, L, C)  # [N', L, C]
    out = F.linear(out, attn.proj.weight, attn.proj.bias)
    return F.dropout(out, p=attn.dropout, training=attn.training)


def map_window_attention(attn: ShiftedWindowAttention, x: Tensor, keep: Tensor | None = None) -> Tensor:
    """Attention of every window of the map: x [B, H, W, C] (LayerNorm'ed) -> [B, H, W, C].

    keep [B, H, W] bool or None: tokens that may be keys (see :func:`window_attention`); window
    padding stays a key, as in torchvision. With ``keep=None`` this is ``attn(x)``.
    """
    B, H, W, C = x.shape
    M, shift = attn.window_size[0], attn.shift_size[0]
    where = window_tokens(B, H, W, M, shift, x.device)
    tokens = where.gather(x.reshape(-1, C))  # [B*nW, L, C]
    key_keep = None if keep is None else where.gather(keep.reshape(-1), fill=True)  # [B*nW, L]
    out = window_attention(attn, tokens, where.region.flatten(0, 1), key_keep)  # [B*nW, L, C]
    flat = out.new_empty(B * H * W, C).index_copy(0, where.rows, out[where.real.flatten(0, 1)])
    return flat.view(B, H, W, C)
