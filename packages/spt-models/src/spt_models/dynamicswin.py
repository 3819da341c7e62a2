"""DynamicSwin (Rao et al., TPAMI 2023; official ``models/dyswin.py`` of raoyongming/DynamicViT),
re-implemented on our Swin stages.

Legend: B images, H, W input pixels, h, w the stage-3 token grid (N = h * w), C channels.

Stages 1, 2 and 4 are Swin. In stage 3 a token predictor (``PredictorLG``: LayerNorm, Linear,
GELU, local half + image-mean half, MLP to 2 log-probabilities) runs before blocks
``pruning_loc`` ([1, 2, 3] for T, [2, 4, 6] for S and B, as in the official ``main.py``) and
decides which tokens are kept, with keep ratios ``keep_ratio`` = (rho, rho - 0.2, rho - 0.4),
rho = 0.7, each a fraction of all N tokens. Every token stays in the map (the dense map feeds
the FPN), so from the first predictor on each block is a :class:`DynamicSwinBlock`:

    x -> LN -> window attention over all tokens of the window, dropped tokens masked as keys
      -> residual -> kept tokens: x + MLP(LN(x)); dropped tokens: x + Linear(LN(x)) (fast path)

Decisions. Training: hard Gumbel-softmax over {keep, drop} with a straight-through gradient
(the two-class Gumbel-softmax is :func:`spa_core.select_tokens` with threshold 0.5: keep iff
``l_keep - l_drop + logistic noise > 0``); the MLP output is ``policy * MLP + (1 - policy) *
fast`` (value: exactly one of the two; gradient reaches the predictors, as in the official
two-stream forward). Eval: per image the ``floor(ratio * N)`` (>= 1) top-scored tokens, so every
image keeps the same count; the MLP runs on kept tokens only and the fast path on dropped ones.

Our choices where the brief, paper and official code differ (each tested):
- decisions are cumulative (a dropped token stays dropped; eval ranks only still-kept tokens),
  as in DynamicViT; the official dyswin re-decides over all tokens at each predictor.
- ``mask_keys=True`` (default): a dropped token is no key for the other tokens of its window, in
  training and eval alike; every token keeps itself as key (DynamicViT's attention-masking rule),
  window padding stays a key as in Swin. Queries are all tokens (dropped ones get the attention
  update too). ``mask_keys=False`` is the official dyswin: all tokens attend all tokens, so the
  attention equals dense Swin attention exactly. The key mask is the hard decision (no gradient
  flows through it; the predictors learn through the MLP mixing and the ratio loss).
- keep-ratio loss (official ``losses.py``, ``mse_token`` with ``ratio_weight=10``):
  ``10 * mean_predictors mean_images (kept fraction - target)^2``, returned in
  :class:`PruningInfo.ratio_loss` for the detector's loss dict (``loss_ratio``).

Cost at 1280x800 (MACs, measured): the training forward runs both MLP paths on every token plus
the predictors, 101.4 G for T against Swin-T's 95.6 G (paper Table 1: 101 vs 96, "training
stage"); the eval forward runs one path per token, 86.5 G.

Layout mirrors :class:`~spt_models.swin.SwinBackbone` (``features.0..7``); the dynamic blocks
subclass torchvision's ``SwinTransformerBlock``, so a torchvision Swin state dict loads
(:func:`~spt_models.weights.load_swin_weights`); predictors and fast paths are fresh.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock

from spa_core import select_tokens

from .registry import build, register_model
from .swin import drop_path_rates, feature_info, init_linear, patch_embed, swin_stage
from .window_attention import map_window_attention

DYNAMIC_STAGE = 2  # stage 3 (0-based): the only stage with token predictors


@dataclass(frozen=True)
class DynamicSwinConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2**(i-1)
    depths: tuple[int, ...]  # blocks per stage
    heads: tuple[int, ...]  # attention heads per stage
    pruning_loc: tuple[int, ...] = (1, 2, 3)  # stage-3 blocks a predictor runs before (official T: 1,2,3)
    keep_ratio: tuple[float, ...] = (0.7, 0.5, 0.3)  # (rho, rho-0.2, rho-0.4), rho = 0.7, of all tokens
    mask_keys: bool = True  # dropped tokens are no keys of the others (False: official dyswin)
    tau: float = 1.0  # Gumbel-softmax temperature
    ratio_weight: float = 10.0  # weight of the keep-ratio loss (official: 10 for Swin)
    window: int = 7  # window side M
    drop_path: float = 0.2  # stochastic depth of the last block, spread linearly from 0 at the first
    patch_size: int = 4  # side of the patch embedding's stride
    mlp_ratio: float = 4.0  # MLP hidden width / channels


DYNAMICSWIN_T = DynamicSwinConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2)
DYNAMICSWIN_S = DynamicSwinConfig(
    embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), pruning_loc=(2, 4, 6), drop_path=0.3
)
DYNAMICSWIN_B = DynamicSwinConfig(
    embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), pruning_loc=(2, 4, 6), drop_path=0.5
)


@dataclass
class PruningInfo:
    """What the stage-3 predictors decided (h, w: the stage-3 grid).

    logits: per predictor, [B, h, w] keep-minus-drop log-probability (ranking score).
    keep: per predictor, [B, h, w] bool hard decision, cumulative.
    policy: per predictor, [B, h, w] float equal to ``keep``; in training it carries the
    straight-through gradient of the Gumbel-softmax.
    target: per predictor, the keep ratio. ratio_loss: scalar, already weighted (``loss_ratio``).
    """

    logits: list[Tensor] = field(default_factory=list)
    keep: list[Tensor] = field(default_factory=list)
    policy: list[Tensor] = field(default_factory=list)
    target: tuple[float, ...] = ()
    ratio_loss: Tensor | None = None

    @property
    def ratio(self) -> Tensor:
        """[num_predictors, B]: kept fraction of each image's tokens after each predictor."""
        return torch.stack([k.flatten(1).float().mean(1) for k in self.keep])


def keep_ratio_loss(policy: list[Tensor], target: tuple[float, ...], weight: float) -> Tensor:
    """``weight * mean_i mean_b (mean_n policy_i[b, n] - target_i)^2`` (official ``mse_token``).

    policy: per predictor [B, h, w] float -> scalar.
    """
    terms = []
    for p, t in zip(policy, target, strict=True):
        kept = p.flatten(1).mean(1)  # [B]
        terms.append((kept - torch.tensor(t, dtype=kept.dtype, device=kept.device)).square().mean())
    return weight * torch.stack(terms).mean()


def keep_count(ratio: float, num_tokens: int) -> int:
    """Tokens kept per image in eval: ``floor(ratio * N)`` (official ``int(N * ratio)``), at least 1.
    The epsilon absorbs float error (0.57 * 100 == 56.99999999999999 keeps 57 tokens)."""
    return max(1, math.floor(ratio * num_tokens + 1e-9))


class TokenPredictor(nn.Module):
    """DynamicViT's ``PredictorLG``: x [B, h, w, C] -> keep-minus-drop logits [B, h, w].

    Half of the hidden features stay per token, the other half is averaged over the image (the
    official Swin version averages over all tokens, kept or not).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(dim, dim // 2),
            nn.GELU(),
            nn.Linear(dim // 2, dim // 4),
            nn.GELU(),
            nn.Linear(dim // 4, 2),
            nn.LogSoftmax(dim=-1),
        )

    def forward(self, x: Tensor) -> Tensor:
        B, h, w, C = x.shape
        feat = self.in_conv(x.reshape(B, h * w, C))  # [B, N, C]
        local, glob = feat.split(C // 2, dim=-1)  # [B, N, C/2] each
        glob = glob.mean(dim=1, keepdim=True).expand_as(glob)  # [B, N, C/2] image mean
        logp = self.out_conv(torch.cat([local, glob], dim=-1))  # [B, N, 2] log p(keep), log p(drop)
        return (logp[..., 0] - logp[..., 1]).view(B, h, w)


class DynamicSwinBlock(SwinTransformerBlock):
    """torchvision's Swin block with DynamicViT's asymmetric computation (``fast_mlp`` added).

    forward(x [B, H, W, C], policy [B, H, W] float, keep [B, H, W] bool) -> [B, H, W, C].
    """

    def __init__(self, dim: int, num_heads: int, *, mask_keys: bool = True, **kwargs) -> None:
        super().__init__(dim, num_heads, **kwargs)
        self.mask_keys = mask_keys
        self.fast_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))  # official ``fastMlp``

    def forward(self, x: Tensor, policy: Tensor, keep: Tensor) -> Tensor:  # type: ignore[override]
        B, H, W, C = x.shape
        attn = map_window_attention(self.attn, self.norm1(x), keep if self.mask_keys else None)
        x = x + self.stochastic_depth(attn)
        if self.training:
            p = policy.unsqueeze(-1)  # [B, H, W, 1]
            update = p * self.mlp(self.norm2(x)) + (1.0 - p) * self.fast_mlp(x)  # [B, H, W, C]
            return x + self.stochastic_depth(update)
        flat, kept = x.reshape(-1, C), keep.reshape(-1)  # [B*H*W, C], [B*H*W]
        update = torch.empty_like(flat)
        update[kept] = self.mlp(self.norm2(flat[kept]))  # full MLP on kept tokens only
        update[~kept] = self.fast_mlp(flat[~kept])  # fast path on dropped tokens only
        return x + update.view(B, H, W, C)


class DynamicSwinBackbone(nn.Module):
    """DynamicSwin feature extractor.

    forward: x [B, 3, H, W] -> (maps, :class:`PruningInfo`), maps as
    :class:`~spt_models.swin.SwinBackbone` (``{"stage1": [B, H/4, W/4, C], ..., "stage4":
    [B, H/32, W/32, 8C]}``, NHWC, dense).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        pruning_loc: tuple[int, ...] = (1, 2, 3),
        keep_ratio: tuple[float, ...] = (0.7, 0.5, 0.3),
        mask_keys: bool = True,
        tau: float = 1.0,
        ratio_weight: float = 10.0,
        window: int = 7,
        drop_path: float = 0.2,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(heads) != 4:
            raise ValueError(f"DynamicSwin has 4 stages: got depths={depths}, heads={heads}")
        _check_pruning(pruning_loc, keep_ratio, depths[DYNAMIC_STAGE])
        self.pruning_loc, self.keep_ratio = tuple(pruning_loc), tuple(keep_ratio)
        self.tau, self.ratio_weight = tau, ratio_weight
        rates = drop_path_rates(sum(depths), drop_path)
        dims = [embed_dim * 2**i for i in range(4)]
        first = [sum(depths[:i]) for i in range(5)]
        layers: list[nn.Module] = [patch_embed(embed_dim, patch_size)]
        for i in range(4):
            stage_rates = rates[first[i] : first[i + 1]]
            if i == DYNAMIC_STAGE:
                layers.append(
                    self._dynamic_stage(dims[i], heads[i], window, stage_rates, mlp_ratio, mask_keys)
                )
            else:
                layers.append(swin_stage(dims[i], heads[i], window, stage_rates, mlp_ratio))
            if i < 3:
                layers.append(PatchMerging(dims[i], norm_layer=nn.LayerNorm))
        self.features = nn.Sequential(*layers)
        self.predictors = nn.ModuleList(TokenPredictor(dims[DYNAMIC_STAGE]) for _ in pruning_loc)
        self.feature_info = feature_info(embed_dim, 4, patch_size)
        init_linear(self)

    def _dynamic_stage(
        self, dim: int, heads: int, window: int, rates: list[float], mlp_ratio: float, mask_keys: bool
    ) -> nn.ModuleList:
        """Swin blocks before the first predictor, :class:`DynamicSwinBlock` from it on."""
        blocks = nn.ModuleList()
        for j, rate in enumerate(rates):
            kwargs = dict(
                window_size=[window, window],
                shift_size=[0, 0] if j % 2 == 0 else [window // 2, window // 2],
                mlp_ratio=mlp_ratio,
                stochastic_depth_prob=rate,
                norm_layer=nn.LayerNorm,
            )
            if j < self.pruning_loc[0]:
                blocks.append(SwinTransformerBlock(dim, heads, **kwargs))
            else:
                blocks.append(DynamicSwinBlock(dim, heads, mask_keys=mask_keys, **kwargs))
        return blocks

    def fresh_keys(self) -> list[str]:
        """State-dict keys a torchvision Swin checkpoint does not provide: predictors, fast paths."""
        return [k for k in self.state_dict() if k.startswith("predictors.") or ".fast_mlp." in k]

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[OrderedDict[str, Tensor], PruningInfo]:
        """x [B, 3, H, W] -> (maps, info); ``generator`` seeds the Gumbel noise (training)."""
        maps: OrderedDict[str, Tensor] = OrderedDict()
        f = self.features
        maps["stage1"] = x = f[1](f[0](x))  # [B, H/4, W/4, C]
        maps["stage2"] = x = f[3](f[2](x))  # [B, H/8, W/8, 2C]
        x = f[4](x)  # [B, h, w, 4C]
        info = PruningInfo(target=self.keep_ratio)
        keep = policy = None
        for j, block in enumerate(f[5]):
            if j in self.pruning_loc:
                i = self.pruning_loc.index(j)
                keep, policy, logits = self._decide(i, x, keep, policy, generator)
                info.logits.append(logits)
                info.keep.append(keep)
                info.policy.append(policy)
            x = block(x) if keep is None else block(x, policy, keep)
        maps["stage3"] = x
        maps["stage4"] = f[7](f[6](x))  # [B, H/32, W/32, 8C]
        info.ratio_loss = keep_ratio_loss(info.policy, self.keep_ratio, self.ratio_weight)
        return maps, info

    def _decide(
        self,
        i: int,
        x: Tensor,
        prev_keep: Tensor | None,
        prev_policy: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predictor i on x [B, h, w, C] -> (keep [B, h, w] bool, policy [B, h, w], logits [B, h, w])."""
        B, h, w, _ = x.shape
        logits = self.predictors[i](x)  # [B, h, w]
        if self.training:
            weight, keep = select_tokens(
                logits, threshold=0.5, tau=self.tau, training=True, generator=generator
            )
            if prev_keep is not None:
                keep, weight = keep & prev_keep, weight * prev_policy  # cumulative; value == keep
            return keep, weight, logits
        count = keep_count(self.keep_ratio[i], h * w)
        score = logits.flatten(1)  # [B, N]
        if prev_keep is not None:
            score = score.masked_fill(~prev_keep.flatten(1), float("-inf"))  # rank still-kept tokens only
        index = score.topk(count, dim=1).indices  # [B, count]
        keep = torch.zeros_like(score, dtype=torch.bool).scatter_(1, index, True).view(B, h, w)
        return keep, keep.to(x.dtype), logits


def _check_pruning(pruning_loc: tuple[int, ...], keep_ratio: tuple[float, ...], depth: int) -> None:
    if len(pruning_loc) != len(keep_ratio) or not pruning_loc:
        raise ValueError(
            f"pruning_loc and keep_ratio should be non-empty and of one length, got {pruning_loc}, {keep_ratio}"
        )
    if list(pruning_loc) != sorted(set(pruning_loc)) or pruning_loc[0] < 0 or pruning_loc[-1] >= depth:
        raise ValueError(f"pruning_loc should be increasing block indices in [0, {depth}), got {pruning_loc}")
    if any(not 0.0 < r <= 1.0 for r in keep_ratio) or list(keep_ratio) != sorted(keep_ratio, reverse=True):
        raise ValueError(f"keep_ratio should be non-increasing values in (0, 1], got {keep_ratio}")


@register_model
def dynamicswin_t(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_T, **overrides)


@register_model
def dynamicswin_s(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_S, **overrides)


@register_model
def dynamicswin_b(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_B, **overrides)
