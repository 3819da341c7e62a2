"""Deformable Attention Transformer, DAT-T/S (Xia et al., CVPR 2022; official ``models/dat.py``
and ``dat_blocks.py`` of LeapLabTHU/DAT, v1 configs ``dat_tiny.yaml`` / ``dat_small.yaml``),
re-implemented on our Swin stages.

Legend: B images, H, W token grid of a stage, C channels, nH heads, d = C / nH, G offset groups,
Cg = C / G, Hk, Wk the reference grid (stride r), Ns = Hk * Wk sampled keys, N = H * W queries.

Stages 1-2 are Swin (W-MSA, SW-MSA). Stages 3-4 alternate a local block (Swin's window attention
without shift, torchvision's block) and a deformable block, L D L D ... as in the paper and the v1
``stage_spec``. Patch embedding and merging are Swin's (the official model uses strided convs).

Deformable attention (:class:`DeformableAttention`), per group of Cg channels:
    q = proj_q(x)                                           [B, H, W, C]
    offsets = conv_offset(q): depthwise k x k conv with stride r, LayerNorm, GELU, 1x1 conv to 2
      (our "1x1 conv" is a Linear on NHWC), scaled ``tanh(o) * s / (Hk, Wk)`` (offset range factor s)
    pos = reference + offsets, reference = centres of the Hk x Wk cells, in [-1, 1]
    sampled = grid_sample(x, pos) (bilinear, zeros outside)   [B, Ns, C]
    k, v = proj_k(sampled), proj_v(sampled); softmax(q k^T / sqrt(d) + bias) v -> proj_out
    bias = the table [nH, 2h - 1, 2w - 1] interpolated at the continuous query-key displacement.

Our choices (stated, tested):
- ``align_corners=False`` sampling with references at cell centres, so zero offsets sample the
  map exactly (r = 1: the tokens themselves; r = 2: 2x2 average pooling). The official v1 code
  mixes cell-centre references with ``align_corners=True``, a half-pixel skew.
- Bias: displacement in tokens of the current map, divided by ``max(side - 1, 1)``, read with
  ``align_corners=True`` from a table sized for the stage grid at ``pretrain_size`` (224: 14x14
  in stage 3, 7x7 in stage 4, as the official table sized at construction). At the pre-training
  grid an integer displacement reads exactly one table entry; at other sizes the table stretches
  over the map, as the paper's normalized displacement does. Outside the table: border value.
- Reference grid stride r = 2 in stage 3 and r = 1 in stage 4 (the released ImageNet config has
  r = 1 in both, at 224): our reading of the paper's "downsampled grid", which reproduces its
  cost at 1280x800 (measured 101.4 G vs 95.6 G for Swin-T; Table 1: 101 G vs 96 G). With r = 1
  stage 3's 50x80 queries would each attend all 4000 tokens (131.8 G); r = 2 in both: 99.4 G.
  Kernel sizes 5 (stage 3) and 3 (stage 4), groups 3 and 6, range factor 2 are the v1 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.ops import MLP, StochasticDepth
from torchvision.ops.misc import Permute

from .backbone import Backbone
from .registry import build, register_model
from .swin import drop_path_rates, feature_info, init_linear, patch_embed, swin_stage

DEFORMABLE_STAGES = (2, 3)  # stages 3 and 4 (0-based)


@dataclass(frozen=True)
class DATConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2**(i-1)
    depths: tuple[int, ...]  # blocks per stage; stages 3-4 alternate local (even) and deformable (odd)
    heads: tuple[int, ...]  # attention heads per stage
    groups: tuple[int, int] = (3, 6)  # offset groups G in stages 3, 4 (v1)
    strides: tuple[int, int] = (2, 1)  # reference grid stride r in stages 3, 4 (our reading, see above)
    kernels: tuple[int, int] = (5, 3)  # depthwise kernel of the offset network in stages 3, 4 (v1)
    offset_range: tuple[float, float] = (2.0, 2.0)  # offset range factor s in stages 3, 4 (v1)
    pretrain_size: int = 224  # input side the bias tables are sized for
    window: int = 7  # window side M of the Swin and local blocks
    drop_path: float = 0.2  # stochastic depth of the last block, spread linearly from 0 at the first
    patch_size: int = 4  # side of the patch embedding's stride
    mlp_ratio: float = 4.0  # MLP hidden width / channels


DAT_T = DATConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2)
DAT_S = DATConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3)


def reference_points(
    height: int, width: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Centres of a height x width grid of cells covering [-1, 1]^2 -> [height, width, 2] (y, x)."""
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # [height]
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # [width]
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def sample_keys(x: Tensor, pos: Tensor) -> Tensor:
    """Bilinear samples of x [B', Cg, H, W] at pos [B', Hk, Wk, 2] ((y, x) in [-1, 1], pixel
    centres at ``(2i + 1) / H - 1``; zeros outside) -> [B', Cg, Hk, Wk]."""
    return F.grid_sample(x, pos.flip(-1), mode="bilinear", padding_mode="zeros", align_corners=False)


def deformable_bias(table: Tensor, query: Tensor, pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """Relative position bias at continuous displacements.

    table [B', nHg, 2h - 1, 2w - 1]; query [N, 2], pos [B', Ns, 2] ((y, x) in [-1, 1] of a map of
    ``grid = (H, W)`` tokens) -> [B', nHg, N, Ns]: the table read (bilinear, border) at the
    displacement ``query - pos`` in tokens, scaled by ``1 / max(side - 1, 1)`` onto [-1, 1].
    """
    H, W = grid
    disp = query.view(1, -1, 1, 2) - pos.unsqueeze(1)  # [B', N, Ns, 2] in [-1, 1] units
    tokens = disp * disp.new_tensor([H / 2, W / 2])  # in tokens
    coords = tokens / tokens.new_tensor([max(H - 1, 1), max(W - 1, 1)])  # table coordinates
    return F.grid_sample(table, coords.flip(-1), mode="bilinear", padding_mode="border", align_corners=True)


class DeformableAttention(nn.Module):
    """Deformable multi-head attention (DAT's ``DAttentionBaseline``), NHWC.

    forward: x [B, H, W, C] -> (out [B, H, W, C], pos [B, G, Hk, Wk, 2] sampled positions (y, x)).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        groups: int,
        stride: int,
        kernel: int,
        offset_range: float,
        table_grid: tuple[int, int],
    ) -> None:
        super().__init__()
        if dim % num_heads or num_heads % groups:
            raise ValueError(
                f"dim % num_heads and num_heads % groups must be 0, got {dim}, {num_heads}, {groups}"
            )
        self.num_heads, self.groups, self.offset_range = num_heads, groups, offset_range
        cg = dim // groups
        self.conv_offset = nn.Sequential(
            nn.Conv2d(cg, cg, kernel, stride, kernel // 2, groups=cg),  # depthwise, on the reference grid
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(cg),
            nn.GELU(),
            nn.Linear(cg, 2, bias=False),  # the 1x1 conv to (dy, dx)
        )
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)
        h, w = table_grid
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * h - 1, 2 * w - 1))
        nn.init.trunc_normal_(self.rpe_table, std=0.01)

    def offsets(self, q: Tensor) -> Tensor:
        """q [B, H, W, C] -> offsets [B*G, Hk, Wk, 2] (dy, dx) in [-1, 1] units."""
        B, H, W, C = q.shape
        q_groups = q.permute(0, 3, 1, 2).reshape(B * self.groups, C // self.groups, H, W)  # [B*G, Cg, H, W]
        offset = self.conv_offset(q_groups)  # [B*G, Hk, Wk, 2]
        if self.offset_range > 0:
            Hk, Wk = offset.shape[1:3]
            offset = offset.tanh() * offset.new_tensor([1.0 / Hk, 1.0 / Wk]) * self.offset_range
        return offset

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, H, W, C = x.shape
        G, nH = self.groups, self.num_heads
        q = self.proj_q(x)  # [B, H, W, C]
        offset = self.offsets(q)  # [B*G, Hk, Wk, 2]
        Hk, Wk = offset.shape[1:3]
        pos = reference_points(Hk, Wk, x.device, x.dtype) + offset  # [B*G, Hk, Wk, 2]
        x_groups = x.permute(0, 3, 1, 2).reshape(B * G, C // G, H, W)  # [B*G, Cg, H, W]
        sampled = sample_keys(x_groups, pos).reshape(B, C, Hk * Wk).transpose(1, 2)  # [B, Ns, C]
        k = self.proj_k(sampled).view(B, -1, nH, C // nH).transpose(1, 2)  # [B, nH, Ns, d]
        v = self.proj_v(sampled).view(B, -1, nH, C // nH).transpose(1, 2)  # [B, nH, Ns, d]
        q = q.view(B, H * W, nH, C // nH).transpose(1, 2)  # [B, nH, N, d]
        query = reference_points(H, W, x.device, x.dtype).view(-1, 2)  # [N, 2] token centres
        table = (
            self.rpe_table.unsqueeze(0)
            .expand(B, -1, -1, -1)
            .reshape(B * G, nH // G, *self.rpe_table.shape[1:])
        )
        bias = deformable_bias(table, query, pos.view(B * G, Hk * Wk, 2), (H, W))  # [B*G, nH/G, N, Ns]
        bias = bias.view(B, nH, H * W, Hk * Wk)  # [B, nH, N, Ns]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, nH, N, d]
        out = self.proj_out(out.transpose(1, 2).reshape(B, H, W, C))
        return out, pos.view(B, G, Hk, Wk, 2)


class DeformableBlock(nn.Module):
    """Pre-norm transformer block with :class:`DeformableAttention`; parameter names as
    torchvision's Swin block (``norm1``, ``attn``, ``norm2``, ``mlp.0``, ``mlp.3``).

    forward: x [B, H, W, C] -> [B, H, W, C].
    """

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float, drop_path: float, **attn_kwargs
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DeformableAttention(dim, num_heads, **attn_kwargs)
        self.stochastic_depth = StochasticDepth(drop_path, "row")
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, [int(dim * mlp_ratio), dim], activation_layer=nn.GELU, inplace=None)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x))[0])
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class DATBackbone(Backbone):
    """DAT feature extractor.

    forward: x [B, 3, H, W] -> (maps, None), the four NHWC maps as
    :class:`~spt_models.swin.SwinBackbone`. Dense, the forward of
    :class:`~spt_models.backbone.Backbone`: ``valid``, ``generator`` and ``keep`` are accepted for the
    contract and unused (keys are sampled from the padded map, as the official code samples its
    padded batch). Swin weights load as into Swin-T/S: a deformable block takes its Swin block's
    norms, MLP and attention projections (qkv split into ``proj_q/k/v``, ``proj`` as ``proj_out``);
    its offset network and bias table start fresh.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        groups: tuple[int, int] = (3, 6),
        strides: tuple[int, int] = (2, 1),
        kernels: tuple[int, int] = (5, 3),
        offset_range: tuple[float, float] = (2.0, 2.0),
        pretrain_size: int = 224,
        window: int = 7,
        drop_path: float = 0.2,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(heads) != 4:
            raise ValueError(f"DAT has 4 stages: got depths={depths}, heads={heads}")
        rates = drop_path_rates(sum(depths), drop_path)
        first = [sum(depths[:i]) for i in range(5)]
        layers: list[nn.Module] = [patch_embed(embed_dim, patch_size)]
        for i in range(4):
            dim, stage_rates = embed_dim * 2**i, rates[first[i] : first[i + 1]]
            if i in DEFORMABLE_STAGES:
                g = DEFORMABLE_STAGES.index(i)
                side = pretrain_size // (patch_size * 2**i)
                deform = dict(
                    groups=groups[g],
                    stride=strides[g],
                    kernel=kernels[g],
                    offset_range=offset_range[g],
                    table_grid=(side, side),
                )
                layers.append(self._stage(dim, heads[i], window, stage_rates, mlp_ratio, deform))
            else:
                layers.append(swin_stage(dim, heads[i], window, stage_rates, mlp_ratio))
            if i < 3:
                layers.append(PatchMerging(dim, norm_layer=nn.LayerNorm))
        self.features = nn.Sequential(*layers)
        self.feature_info = feature_info(embed_dim, 4, patch_size)
        init_linear(self)

    def _deformable_attention(self) -> list[str]:
        """State-dict prefixes of the deformable blocks' attention (``features.5.1.attn``, ...)."""
        return [f"{name}." for name, m in self.named_modules() if isinstance(m, DeformableAttention)]

    def fresh_keys(self) -> list[str]:
        """The deformable attention's offset network and relative position table."""
        prefixes = tuple(self._deformable_attention())
        return [k for k in self.state_dict() if k.startswith(prefixes) and ".proj_" not in k]

    def from_swin_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Swin's attention weights of the blocks DAT makes deformable, under DAT's names: ``qkv``
        [3C, C] split into ``proj_q``, ``proj_k``, ``proj_v``; ``proj`` -> ``proj_out``; Swin's
        window bias table and index dropped (DAT's table is over sampled offsets: fresh)."""
        state = dict(state)
        for prefix in self._deformable_attention():
            for part in ("weight", "bias"):
                qkv = state.pop(f"{prefix}qkv.{part}", None)
                if qkv is not None:
                    for name, chunk in zip(("proj_q", "proj_k", "proj_v"), qkv.chunk(3), strict=True):
                        state[f"{prefix}{name}.{part}"] = chunk
                proj = state.pop(f"{prefix}proj.{part}", None)
                if proj is not None:
                    state[f"{prefix}proj_out.{part}"] = proj
            for key in ("relative_position_bias_table", "relative_position_index"):
                state.pop(f"{prefix}{key}", None)
        return state

    @staticmethod
    def _stage(
        dim: int, heads: int, window: int, rates: list[float], mlp_ratio: float, deform: dict
    ) -> nn.Sequential:
        """Local (Swin W-MSA, no shift) blocks at even positions, deformable blocks at odd ones."""
        return nn.Sequential(
            *(
                SwinTransformerBlock(
                    dim, heads, [window, window], [0, 0], mlp_ratio=mlp_ratio, stochastic_depth_prob=rate
                )
                if j % 2 == 0
                else DeformableBlock(dim, heads, mlp_ratio=mlp_ratio, drop_path=rate, **deform)
                for j, rate in enumerate(rates)
            )
        )


@register_model
def dat_t(**overrides) -> DATBackbone:
    return build(DATBackbone, DAT_T, **overrides)


@register_model
def dat_s(**overrides) -> DATBackbone:
    return build(DATBackbone, DAT_S, **overrides)
