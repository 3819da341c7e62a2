"""Plain Vision Transformer (Dosovitskiy et al. 2021), ViT-S/16, with optional ground-truth token
selection (paper Fig. 4: attending to the informative tokens only), for the VOC classifier.

Legend: B images, H, W input pixels, h = H / 16, w = W / 16 the patch grid, N = h * w,
C channels, T the most tokens (cls included) any image of the batch selects.

    x -> 16x16 patches (conv) -> + position embedding, cls token first -> 12 pre-norm blocks
      (global MSA, MLP) -> LayerNorm -> (cls feature [B, C], tokens [B, h, w, C])

``forward(x, keep)`` with keep [B, h, w] bool (e.g. the selection labels at stride 16): the cls
token and the selected tokens of each image are gathered (image order kept, padded to T), run
through every block attending only each other (padding is never a key), and scattered back;
unselected tokens skip every block, bit-identical, and only meet the final LayerNorm. Cost scales
with T, so the selection saves compute. ``keep=None`` (or all True) is the plain ViT.

Parameter names are timm's ``vit_small_patch16_224`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``), so a
DeiT/timm ViT-S/16 state dict (without ``head``) loads with ``load_state_dict``. The position
embedding is learned at ``img_size`` (224: 14x14) and bicubic-resized to other grids, as timm does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spa_core import drop_path

from .registry import build, register_model
from .swin import init_linear


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int = 384  # C
    depth: int = 12  # blocks
    heads: int = 6  # attention heads
    patch_size: int = 16  # side of the square patches
    mlp_ratio: float = 4.0  # MLP hidden width / channels
    drop_path: float = 0.1  # stochastic depth of the last block, spread linearly from 0 (DeiT-S: 0.1)
    img_size: int = 224  # input side the position embedding is learned at


VIT_S16 = ViTConfig()


class PatchEmbed(nn.Module):
    """x [B, 3, H, W] -> [B, C, H/p, W/p]: one strided convolution (timm's ``patch_embed.proj``)."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Global multi-head self-attention: x [B, T, C], key_valid [B, T] bool or None -> [B, T, C]."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, nH, T, d]
        mask = None if key_valid is None else key_valid.view(B, 1, 1, T)  # True: may be attended
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, nH, T, d]
        return self.proj(out.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block: x [B, T, C], key_valid [B, T] bool or None -> [B, T, C]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.drop_path_rate = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        x = x + drop_path(self.attn(self.norm1(x), key_valid), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class VisionTransformer(nn.Module):
    """ViT feature extractor.

    forward(x [B, 3, H, W], keep [B, h, w] bool or None) -> (cls [B, C], tokens [B, h, w, C]),
    both after the final LayerNorm. ``feature_info`` describes the token map (stride 16).
    ``multiscale = False``: not a :class:`~spt_models.backbone.Backbone` (one map, no stages), so
    the classifier's head only, no detector.
    """

    multiscale = False  # capability, as Backbone.multiscale: CLIs and configs ask it instead of the name

    def __init__(
        self,
        *,
        embed_dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        patch_size: int = 16,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, img_size // patch_size
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio, rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.feature_info = [
            {"name": "tokens", "num_chs": embed_dim, "reduction": patch_size, "module": "norm"}
        ]
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        init_linear(self)

    def embed(self, x: Tensor) -> Tensor:
        """x [B, 3, H, W] -> [B, 1 + N, C]: cls token, then patches in raster order, + positions."""
        patches = self.patch_embed(x)  # [B, C, h, w]
        B, C, h, w = patches.shape
        pos_cls, pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]  # [1, 1, C], [1, g*g, C]
        if (h, w) != (self.grid, self.grid):
            grid = pos.reshape(1, self.grid, self.grid, C).permute(0, 3, 1, 2)  # [1, C, g, g]
            pos = (
                F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
                .flatten(2)
                .transpose(1, 2)
            )
        tokens = patches.flatten(2).transpose(1, 2) + pos  # [B, N, C]
        return torch.cat([self.cls_token.expand(B, -1, -1) + pos_cls, tokens], dim=1)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B, _, H, W = x.shape
        h, w = H // self.patch_size, W // self.patch_size
        tokens = self.embed(x)  # [B, 1 + N, C]
        if keep is None:
            for block in self.blocks:
                tokens = block(tokens)
        else:
            tokens = self._selected_blocks(tokens, self._check_keep(keep, (B, h, w)))
        tokens = self.norm(tokens)
        return tokens[:, 0], tokens[:, 1:].reshape(B, h, w, -1)

    def _selected_blocks(self, tokens: Tensor, keep: Tensor) -> Tensor:
        """Run the blocks on cls + the selected tokens only: tokens [B, 1 + N, C] -> same."""
        B, S, C = tokens.shape
        sel = torch.cat([keep.new_ones(B, 1), keep.flatten(1)], dim=1)  # [B, 1 + N], cls always in
        count = sel.sum(1)  # [B]
        T = int(count.max())
        order = torch.argsort((~sel).to(torch.uint8), dim=1, stable=True)[:, :T]  # [B, T] selected first
        valid = torch.arange(T, device=tokens.device) < count.unsqueeze(1)  # [B, T] real (not padding)
        sub = tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, C))  # [B, T, C]
        for block in self.blocks:
            sub = block(sub, key_valid=valid)
        rows = (order + torch.arange(B, device=tokens.device).unsqueeze(1) * S)[valid]  # [sum(count)]
        return tokens.reshape(-1, C).index_copy(0, rows, sub[valid]).view(B, S, C)

    @staticmethod
    def _check_keep(keep: Tensor, shape: tuple[int, int, int]) -> Tensor:
        if tuple(keep.shape) != shape or keep.dtype != torch.bool:
            raise ValueError(
                f"keep must be a {list(shape)} bool mask (B, H/16, W/16), got {tuple(keep.shape)} {keep.dtype}"
            )
        return keep


@register_model
def vit_s16(**overrides) -> VisionTransformer:
    """ViT-S/16 (DeiT-S dims: 384 channels, 12 blocks, 6 heads)."""
    return build(VisionTransformer, VIT_S16, **overrides)
