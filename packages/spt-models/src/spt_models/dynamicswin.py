"""DynamicSwin (Rao et al., TPAMI 2023; official ``models/dyswin.py`` of raoyongming/DynamicViT),
re-implemented on our Swin stages.

Legend: B images, H, W input pixels, h, w the stage-3 token grid (N = h * w), C channels.

Stages 1, 2 and 4 are Swin. In stage 3 a token predictor (``PredictorLG``: LayerNorm, Linear,
GELU, local half + image-mean half, MLP to 2 log-probabilities) runs before blocks
``pruning_loc`` ([1, 2, 3] for T, [2, 4, 6] for S and B, as in the official ``main.py``) and
decides which tokens are kept, with keep ratios ``keep_ratio`` = (rho, rho - 0.2, rho - 0.4),
rho = 0.7, each a fraction of the image's N (real) tokens. Every token stays in the map (the dense
map feeds the FPN), so from the first predictor on each block is a :class:`DynamicSwinBlock`:

    x -> LN -> window attention over all tokens of the window (dense, as Swin)
      -> residual -> kept tokens: x + MLP(LN(x)); dropped tokens: x + Linear(LN(x)) (fast path)

Decisions (the official algorithm, our default). Each predictor re-decides over **all** tokens
(a token dropped by one predictor may be kept by the next). Training: hard Gumbel-softmax over
{keep, drop} with a straight-through gradient (the two-class Gumbel-softmax is
:func:`spa_core.select_tokens` with threshold 0.5: keep iff ``l_keep - l_drop + logistic noise >
0``); the MLP output is ``policy * MLP + (1 - policy) * fast`` (value: exactly one of the two;
gradient reaches the predictors, as in the official two-stream forward). Eval: per image the
``floor(ratio * N)`` (>= 1) top-scored tokens; the MLP runs on kept tokens only and the fast path on
dropped ones.

Options (ours, off by default): ``cumulative=True`` keeps decisions cumulative as DynamicViT does on
plain ViTs (a dropped token stays dropped; eval ranks only still-kept tokens);
``mask_keys=True`` makes a dropped token no key for the other tokens of its window (every token
keeps itself as key, window padding stays a key as in Swin; the mask is the hard decision).

``valid`` (batch padding): padding tokens are never kept, the predictor's image mean, the eval
counts and the keep-ratio loss run over real tokens only.
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

from .backbone import STAGE_NAMES, Backbone, stages
from .masks import check_valid, token_valid
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
    mask_keys: bool = False  # True: dropped tokens are no keys of the others (official: False)
    cumulative: bool = False  # True: a dropped token stays dropped (official Swin version: False)
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
    """What the stage-3 predictors decided (h, w: the stage-3 grid, at ``stride``).

    logits: per predictor, [B, h, w] keep-minus-drop log-probability (ranking score).
    keep: per predictor, [B, h, w] bool hard decision.
    policy: per predictor, [B, h, w] float equal to ``keep``; in training it carries the
    straight-through gradient of the Gumbel-softmax.
    target: per predictor, the keep ratio. ratio_loss: scalar, already weighted (``loss_ratio``).
    valid: [B, h, w] bool real tokens of stage 3.
    """

    stride: int = 16
    logits: list[Tensor] = field(default_factory=list)
    keep: list[Tensor] = field(default_factory=list)
    policy: list[Tensor] = field(default_factory=list)
    target: tuple[float, ...] = ()
    ratio_loss: Tensor | None = None
    valid: Tensor | None = None

    @property
    def ratio(self) -> dict[int, Tensor]:
        """{stride: [B]}: per image, the fraction of its real stage-3 tokens that got the full MLP,
        mean over the predictors."""
        real = self.valid.flatten(1).sum(1).float()  # [B]
        kept = torch.stack([k.flatten(1).sum(1).float() for k in self.keep])  # [P, B]
        return {self.stride: kept.mean(0) / real}

    def losses(self, labels: dict[int, Tensor] | None = None) -> dict[str, Tensor]:
        """``{"loss_ratio": ratio_loss}`` (weighted as in the official code); labels are unused."""
        return {"loss_ratio": self.ratio_loss}


def keep_ratio_loss(policy: list[Tensor], target: tuple[float, ...], weight: float, valid: Tensor) -> Tensor:
    """``weight * mean_i mean_b (kept fraction of image b's real tokens after predictor i - target_i)^2``
    (official ``mse_token``). policy: per predictor [B, h, w] float; valid [B, h, w] bool -> scalar."""
    real = valid.flatten(1).sum(1)  # [B]
    terms = []
    for p, t in zip(policy, target, strict=True):
        kept = (p * valid).flatten(1).sum(1) / real  # [B]
        terms.append((kept - torch.tensor(t, dtype=kept.dtype, device=kept.device)).square().mean())
    return weight * torch.stack(terms).mean()


def keep_count(ratio: float, num_tokens: int) -> int:
    """Tokens kept per image in eval: ``floor(ratio * N)`` (official ``int(N * ratio)``), at least 1.
    The epsilon absorbs float error (0.57 * 100 == 56.99999999999999 keeps 57 tokens)."""
    return max(1, math.floor(ratio * num_tokens + 1e-9))


class TokenPredictor(nn.Module):
    """DynamicViT's ``PredictorLG``: x [B, h, w, C] -> keep-minus-drop logits [B, h, w].

    Half of the hidden features stay per token, the other half is averaged over the image's real
    tokens (the official Swin version averages over all tokens, kept or not).
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

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x [B, h, w, C], valid [B, h, w] bool (the image mean runs over real tokens) -> [B, h, w]."""
        B, h, w, C = x.shape
        feat = self.in_conv(x.reshape(B, h * w, C))  # [B, N, C]
        local, glob = feat.split(C // 2, dim=-1)  # [B, N, C/2] each
        real = valid.reshape(B, h * w, 1).to(glob.dtype)  # [B, N, 1]
        glob = ((glob * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)).expand_as(glob)  # image mean
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


class DynamicSwinBackbone(Backbone):
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
        mask_keys: bool = False,
        cumulative: bool = False,
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
        self.tau, self.ratio_weight, self.cumulative = tau, ratio_weight, cumulative
        self.patch_size = patch_size
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
        self,
        x: Tensor,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
        keep: dict[int, Tensor] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], PruningInfo]:
        """x [B, 3, H, W] -> (maps, info). valid: real extent of each padded image ([B, 2] or
        [B, H, W], see :mod:`spt_models.backbone`); ``generator`` seeds the Gumbel noise (training);
        ``keep`` is unused (the predictors decide)."""
        B, _, H, W = x.shape
        if valid is not None:
            check_valid(valid, B, H, W)
        maps: OrderedDict[str, Tensor] = OrderedDict()
        info = PruningInfo(stride=self.patch_size * 2**DYNAMIC_STAGE, target=self.keep_ratio)
        for i, downsample, stage in stages(self.features):
            x = downsample(x)  # [B, h, w, c]
            if i == DYNAMIC_STAGE:
                x = self._dynamic_stage_forward(stage, x, info, valid, generator)
            else:
                x = stage(x)
            maps[STAGE_NAMES[i]] = x
        return maps, info

    def _dynamic_stage_forward(
        self,
        blocks: nn.ModuleList,
        x: Tensor,
        info: PruningInfo,
        valid: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Stage 3 with its predictors: x [B, h, w, C] -> [B, h, w, C]; fills ``info``."""
        B, h, w, _ = x.shape
        real = (
            x.new_ones(B, h, w, dtype=torch.bool)
            if valid is None
            else token_valid(valid, (h, w), info.stride)
        )
        info.valid = real
        keep = policy = None
        for j, block in enumerate(blocks):
            if j in self.pruning_loc:
                i = self.pruning_loc.index(j)
                keep, policy, logits = self._decide(i, x, real, keep, policy, generator)
                info.logits.append(logits)
                info.keep.append(keep)
                info.policy.append(policy)
            x = block(x) if keep is None else block(x, policy, keep)
        info.ratio_loss = keep_ratio_loss(info.policy, self.keep_ratio, self.ratio_weight, real)
        return x

    def _decide(
        self,
        i: int,
        x: Tensor,
        real: Tensor,
        prev_keep: Tensor | None,
        prev_policy: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Predictor i on x [B, h, w, C] -> (keep [B, h, w] bool, policy [B, h, w], logits [B, h, w]).

        real [B, h, w] bool: tokens that may be kept (never batch padding)."""
        B, h, w, _ = x.shape
        logits = self.predictors[i](x, real)  # [B, h, w]
        cumulative = self.cumulative and prev_keep is not None
        if self.training:
            weight, keep = select_tokens(
                logits, threshold=0.5, tau=self.tau, training=True, valid=real, generator=generator
            )
            if cumulative:
                keep, weight = keep & prev_keep, weight * prev_policy  # value == keep
            return keep, weight, logits
        allowed = (real & prev_keep if cumulative else real).flatten(1)  # [B, N]
        count = torch.tensor(
            [keep_count(self.keep_ratio[i], int(n)) for n in real.flatten(1).sum(1)], device=x.device
        )  # [B] floor(ratio * real tokens), at least 1
        score = logits.flatten(1).masked_fill(~allowed, float("-inf"))  # [B, N]
        order = score.argsort(dim=1, descending=True, stable=True)  # [B, N]
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=x.device).expand(B, -1))
        keep = ((rank < count.unsqueeze(1)) & allowed).view(B, h, w)
        return keep, keep.to(x.dtype), logits


def _check_pruning(pruning_loc: tuple[int, ...], keep_ratio: tuple[float, ...], depth: int) -> None:
    if len(pruning_loc) != len(keep_ratio) or not pruning_loc:
        raise ValueError(
            f"pruning_loc and keep_ratio must be non-empty and of one length, got {pruning_loc}, {keep_ratio}"
        )
    if list(pruning_loc) != sorted(set(pruning_loc)) or pruning_loc[0] < 0 or pruning_loc[-1] >= depth:
        raise ValueError(f"pruning_loc must be increasing block indices in [0, {depth}), got {pruning_loc}")
    if any(not 0.0 < r <= 1.0 for r in keep_ratio) or list(keep_ratio) != sorted(keep_ratio, reverse=True):
        raise ValueError(f"keep_ratio must be non-increasing values in (0, 1], got {keep_ratio}")


@register_model
def dynamicswin_t(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_T, **overrides)


@register_model
def dynamicswin_s(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_S, **overrides)


@register_model
def dynamicswin_b(**overrides) -> DynamicSwinBackbone:
    return build(DynamicSwinBackbone, DYNAMICSWIN_B, **overrides)
