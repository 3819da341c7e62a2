"""Token masks: the real image extent on a token grid, and random selections of a fixed ratio.

Legend: B images, H, W input pixels, h, w a token grid at some stride s (token (r, c) covers
pixels [r*s, (r+1)*s) x [c*s, (c+1)*s)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_valid(valid: Tensor, batch: int, height: int, width: int) -> None:
    """Raise ValueError unless ``valid`` is a [B, 2] (height, width) extent table within the
    ``height x width`` input with sides >= 1, or a [B, H, W] bool pixel mask with a real pixel per image."""
    if valid.dim() == 2 and valid.shape == (batch, 2) and not valid.dtype.is_floating_point:
        low, high = valid.min(0).values, valid.max(0).values
        if int(low.min()) < 1 or int(high[0]) > height or int(high[1]) > width:
            raise ValueError(
                f"valid extents must be within [1, {height}] x [1, {width}] pixels, got {valid.tolist()}"
            )
    elif valid.shape == (batch, height, width) and valid.dtype == torch.bool:
        empty = (~valid.flatten(1).any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"valid pixel mask has no real pixel in image(s) {empty}")
    else:
        raise ValueError(
            f"valid must be a [B, 2] integer tensor of real (height, width) or a [B, H, W] bool pixel "
            f"mask for an input of {batch}x{height}x{width}, got {tuple(valid.shape)} {valid.dtype}"
        )


def token_valid(valid: Tensor, grid: tuple[int, int], stride: int) -> Tensor:
    """Real tokens of a ``grid = (h, w)`` token map at ``stride``.

    valid [B, 2] integer (real height, width in pixels) -> [B, h, w] bool: a token is real iff its
    cell starts inside the real extent, i.e. row < ceil(height / stride) (same for columns).
    valid [B, H, W] bool pixel mask -> [B, h, w] bool: a token is real iff its cell holds a real pixel.
    Cells past the input edge are not real.
    """
    h, w = grid
    if valid.dim() == 2:
        rows = -(-valid[:, 0] // stride)  # [B] ceil division
        cols = -(-valid[:, 1] // stride)  # [B]
        r = torch.arange(h, device=valid.device)
        c = torch.arange(w, device=valid.device)
        return (r.view(1, h, 1) < rows.view(-1, 1, 1)) & (c.view(1, 1, w) < cols.view(-1, 1, 1))
    pooled = F.max_pool2d(valid.unsqueeze(1).float(), kernel_size=stride, ceil_mode=True).squeeze(1) > 0
    pooled = pooled[:, :h, :w]  # [B, <=h, <=w]
    return F.pad(pooled, (0, w - pooled.shape[2], 0, h - pooled.shape[1]), value=False)


def fit_grid(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """mask [B, h', w'] -> [B, h, w]: top-left aligned, cropped or padded with False to ``grid``."""
    h, w = grid
    mask = mask[:, :h, :w]
    return F.pad(mask, (0, w - mask.shape[2], 0, h - mask.shape[1]), value=False)


def random_keep(
    batch: int,
    grid: tuple[int, int],
    ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """A random selection of exactly ``round(ratio * h * w)`` tokens per image -> [B, h, w] bool.

    Used to fix the select ratio (profiling, benchmarks, Fig. 6); seeded through ``generator``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    h, w = grid
    count = round(ratio * h * w)
    noise = torch.rand(batch, h * w, generator=generator)  # [B, h*w]
    ranks = noise.argsort(dim=1).argsort(dim=1)  # [B, h*w]: rank of each token's draw
    return (ranks < count).view(batch, h, w).to(device)


def token_grid(height: int, width: int, stride: int, patch_size: int = 4) -> tuple[int, int]:
    """Token grid (h, w) of a Swin/SPT map at ``stride`` for an ``height x width`` input: the patch
    embedding floors (``side // patch_size``), every patch merging ceils (``ceil(side / 2)``)."""
    if stride < patch_size or stride % patch_size or (stride // patch_size) & (stride // patch_size - 1):
        raise ValueError(f"stride must be patch_size * 2**k, got {stride} with patch_size {patch_size}")
    h, w, s = height // patch_size, width // patch_size, patch_size
    while s < stride:
        h, w, s = -(-h // 2), -(-w // 2), s * 2
    return h, w


def random_stage_keep(
    batch: int,
    height: int,
    width: int,
    ratio: float,
    *,
    strides: tuple[int, ...] = (16, 32),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> dict[int, Tensor]:
    """{stride: [B, h, w] bool} random masks of exactly ``ratio`` of each stage's tokens (SPT's ``keep``)."""
    return {
        s: random_keep(batch, token_grid(height, width, s), ratio, generator=generator, device=device)
        for s in strides
    }
