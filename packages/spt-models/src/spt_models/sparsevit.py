"""SparseViT (Chen et al., CVPR 2023; official ``mmdet/models/backbones/sparsevit.py`` of
mit-han-lab/sparsevit), re-implemented on our Swin stages: window-level activation sparsity.

Legend: B images, H, W token grid of a stage, C channels, M window side, L = M * M,
nW windows per image (grid padded to multiples of M), K kept windows per image, T their real tokens.

In a stage with keep ratio r < 1, the activation magnitude of every token,
``a = mean_c |x|`` [B, H, W], is taken once from the stage input (the official code computes it
at the first pruned block and reuses it). A window's score is the L2 norm of ``a`` over its
tokens (window padding counts 0); per image the ``K = max(1, floor(r * nW))`` top-scored windows
are kept, separately for the regular and the shifted partition (nested: with equal ratios
every block of the stage keeps the same windows). In each block, kept windows run Swin's
attention and MLP; dropped windows pass through bit-identically (``index_copy`` of the kept rows
into the untouched input). Every image keeps exactly K windows, whatever its content: the
uniform sparsity SPA is compared against (paper Table 7: SparseViT-style "top-50").

Keep ratios: the official configs are per-block *pruning* ratios found by an evolutionary search
(e.g. ``[[.3,.3],[0,0],[.1,.1,.2,.2,.2,.2],[0,0]]``); we use one keep ratio per stage, default
``(1, 1, 0.5, 0.5)`` (stages 3-4 at 50%, the paper's Table 7 setting and the stages SPT makes
sparse). Our ``floor`` with at least one window differs from the official ``int(nW * (1 - p))``
only where that would keep none.

Blocks are torchvision's ``SwinTransformerBlock`` modules in :class:`~spt_models.swin.SwinBackbone`'s
layout, so the state dict is Swin's (torchvision Swin weights load unchanged); only their forward
differs (:func:`sparse_window_block`). Window padding is zero after ``norm1`` and attended, as in
torchvision (the official code pads before ``norm1``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.models.swin_transformer import SwinTransformerBlock

from spa_core import drop_path

from .backbone import STAGE_NAMES, Backbone, stages
from .masks import check_valid, token_valid
from .registry import build, register_model
from .swin import SwinBackbone
from .window_attention import WindowTokens, window_attention, window_tokens


@dataclass(frozen=True)
class SparseViTConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2**(i-1)
    depths: tuple[int, ...]  # blocks per stage
    heads: tuple[int, ...]  # attention heads per stage
    keep: tuple[float, ...] = (1.0, 1.0, 0.5, 0.5)  # fraction of windows kept per image, per stage
    window: int = 7  # window side M
    drop_path: float = 0.2  # stochastic depth of the last block, spread linearly from 0 at the first
    patch_size: int = 4  # side of the patch embedding's stride
    mlp_ratio: float = 4.0  # MLP hidden width / channels


SPARSEVIT_T = SparseViTConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2)
SPARSEVIT_S = SparseViTConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3)
SPARSEVIT_B = SparseViTConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5)


@dataclass
class WindowSelection:
    """Kept windows of one forward, per stage name with keep < 1 and per shift (0 or M // 2).

    windows: ``{(stage, shift): [B, K] long}`` window indices (raster order of the padded,
    shifted grid), best first. num_windows: ``{(stage, shift): nW}``.
    kept: ``{stride: [B]}`` per sparse stage, the fraction of each image's real tokens inside kept
    windows, mean over the two partitions.
    """

    windows: dict[tuple[str, int], Tensor] = field(default_factory=dict)
    num_windows: dict[tuple[str, int], int] = field(default_factory=dict)
    kept: dict[int, Tensor] = field(default_factory=dict)

    @property
    def ratio(self) -> dict[int, Tensor]:
        """{stride: [B]}: fraction of each image's real tokens computed on, per sparse stage."""
        return dict(self.kept)

    def losses(self, labels: dict[int, Tensor] | None = None) -> dict[str, Tensor]:
        """SparseViT has no auxiliary loss: ``{}``."""
        return {}


def window_scores(x: Tensor, window: int, shift: int, real: Tensor | None = None) -> Tensor:
    """SparseViT's window score: x [B, H, W, C] -> [B, nW], the L2 norm over each window of the
    per-token mean absolute activation; window padding and batch padding (``real`` [B, H, W] bool
    False) count 0."""
    B, H, W, _ = x.shape
    where = window_tokens(B, H, W, window, shift, x.device)
    magnitude = x.abs().mean(dim=-1)  # [B, H, W]
    if real is not None:
        magnitude = magnitude * real
    per_window = where.gather(magnitude.reshape(-1))  # [B*nW, L], 0 at padding
    return torch.linalg.vector_norm(per_window, ord=2, dim=-1).view(B, -1)  # [B, nW]


def num_kept(ratio: float, num_windows: int) -> int:
    """K = ``max(1, floor(ratio * nW))`` (the epsilon absorbs float error such as 0.57 * 100)."""
    return max(1, int(ratio * num_windows + 1e-9))


def select_windows(scores: Tensor, ratio: float) -> Tensor:
    """scores [B, nW] -> [B, K] indices of the K top-scored windows of each image, best first."""
    return scores.topk(num_kept(ratio, scores.shape[1]), dim=1).indices


def sparse_window_block(block: SwinTransformerBlock, x: Tensor, windows: Tensor | None) -> Tensor:
    """One Swin block on the windows ``windows`` [B, K] only (None: all windows).

    x [B, H, W, C] -> [B, H, W, C]; tokens outside the kept windows are returned bit-identical.
    """
    B, H, W, C = x.shape
    M, shift = block.attn.window_size[0], block.attn.shift_size[0]
    where: WindowTokens = window_tokens(B, H, W, M, shift, x.device, windows)
    flat = x.reshape(-1, C)  # [B*H*W, C]
    tokens = where.gather(block.norm1(flat))  # [B*K, L, C], zeros at window padding
    out = window_attention(block.attn, tokens, where.region.flatten(0, 1))  # [B*K, L, C]
    rows = where.rows  # [T] map rows of the kept windows' real tokens
    image = rows // (H * W)  # [T] image of each row (per-image stochastic depth)
    p, training = block.stochastic_depth.p, block.training
    y = flat[rows] + drop_path(out[where.real.flatten(0, 1)], p, training, sample=image, batch=B)  # [T, C]
    y = y + drop_path(block.mlp(block.norm2(y)), p, training, sample=image, batch=B)
    return flat.index_copy(0, rows, y).view(B, H, W, C)


class SparseViTBackbone(Backbone):
    """SparseViT feature extractor (Swin layout and weights, window-sparse stages).

    forward: x [B, 3, H, W] -> (maps, :class:`WindowSelection`), maps as
    :class:`~spt_models.swin.SwinBackbone`.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        keep: tuple[float, ...] = (1.0, 1.0, 0.5, 0.5),
        window: int = 7,
        drop_path: float = 0.2,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(keep) != 4 or any(not 0.0 < r <= 1.0 for r in keep):
            raise ValueError(f"keep should hold 4 ratios in (0, 1], one per stage, got {keep}")
        self.keep, self.window, self.patch_size = tuple(keep), window, patch_size
        swin = SwinBackbone(
            embed_dim=embed_dim,
            depths=depths,
            heads=heads,
            window=window,
            drop_path=drop_path,
            patch_size=patch_size,
            mlp_ratio=mlp_ratio,
        )
        self.features, self.feature_info = swin.features, swin.feature_info

    def forward(
        self,
        x: Tensor,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
        keep: dict[int, Tensor] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], WindowSelection]:
        """x [B, 3, H, W] -> (maps, selection). valid: real extent of each padded image ([B, 2] or
        [B, H, W]): window scores count real tokens only. ``generator`` (deterministic) and ``keep``
        (the windows are scored, never given) are unused."""
        B, _, H, W = x.shape
        if valid is not None:
            check_valid(valid, B, H, W)
        maps: OrderedDict[str, Tensor] = OrderedDict()
        selection = WindowSelection()
        for i, downsample, stage in stages(self.features):
            x = downsample(x)  # [B, h, w, c]
            name, ratio = STAGE_NAMES[i], self.keep[i]
            if ratio < 1.0:
                stride = self.patch_size * 2**i
                real = token_valid(valid, x.shape[1:3], stride) if valid is not None else None
                self._select(x, name, stride, ratio, real, selection)
            for j, block in enumerate(stage):
                shift = 0 if j % 2 == 0 else self.window // 2
                x = (
                    block(x)
                    if ratio == 1.0
                    else sparse_window_block(block, x, selection.windows[(name, shift)])
                )
            maps[name] = x
        return maps, selection

    def _select(
        self, x: Tensor, name: str, stride: int, ratio: float, real: Tensor | None, selection: WindowSelection
    ) -> None:
        """Rank the windows of both partitions by the stage input's activation magnitude (real tokens)."""
        B, H, W, _ = x.shape
        real = x.new_ones(B, H, W, dtype=torch.bool) if real is None else real
        fractions = []
        with torch.no_grad():
            for shift in (0, self.window // 2):
                scores = window_scores(x, self.window, shift, real)  # [B, nW]
                windows = select_windows(scores, ratio)  # [B, K]
                selection.windows[(name, shift)] = windows
                selection.num_windows[(name, shift)] = scores.shape[1]
                covered = torch.zeros(B * H * W, dtype=torch.bool, device=x.device)
                covered[window_tokens(B, H, W, self.window, shift, x.device, windows).rows] = True
                kept = (covered.view(B, H, W) & real).flatten(1).sum(1)  # [B]
                fractions.append(kept.float() / real.flatten(1).sum(1).float())
        selection.kept[stride] = torch.stack(fractions).mean(0)


@register_model
def sparsevit_t(**overrides) -> SparseViTBackbone:
    return build(SparseViTBackbone, SPARSEVIT_T, **overrides)


@register_model
def sparsevit_s(**overrides) -> SparseViTBackbone:
    return build(SparseViTBackbone, SPARSEVIT_S, **overrides)


@register_model
def sparsevit_b(**overrides) -> SparseViTBackbone:
    return build(SparseViTBackbone, SPARSEVIT_B, **overrides)
