"""Swin Transformer backbones (Liu et al. 2021), T/S/B, as torchvision builds them.

Legend: B images, H, W input pixels, C embedding channels (stage i has C * 2**(i-1)), M window side.
The module list mirrors torchvision's ``SwinTransformer.features`` one to one (``features.0``
patch embedding, ``features.1/3/5/7`` the four stages, ``features.2/4/6`` patch merging) and
reuses torchvision's ``SwinTransformerBlock`` and ``PatchMerging``, so a torchvision ``swin_t/s/b``
state dict loads without renaming (:func:`spt_models.weights.load_swin_weights`; the
classification ``norm``/``head`` are not part of the backbone).

NHWC inside. Any input size: torchvision's blocks pad the map to window multiples and crop back,
patch merging pads odd sides. The patch embedding is a stride-4 convolution, so an input side
that is not a multiple of 4 loses its last ``side % 4`` pixels, exactly as in torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.ops.misc import Permute

from .backbone import STAGE_NAMES, Backbone
from .registry import build, register_model

STAGE_INDEX = (1, 3, 5, 7)  # position of each stage in ``features``


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2**(i-1)
    depths: tuple[int, ...]  # blocks per stage
    heads: tuple[int, ...]  # attention heads per stage
    window: int = 7  # window side M
    drop_path: float = 0.2  # stochastic depth of the last block, spread linearly from 0 at the first
    patch_size: int = 4  # side of the patch embedding's stride
    mlp_ratio: float = 4.0  # MLP hidden width / channels


SWIN_T = SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2)
SWIN_S = SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3)
SWIN_B = SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5)


def drop_path_rates(total: int, rate: float) -> list[float]:
    """Stochastic depth per block, ``rate * i / (total - 1)`` for block i of ``total`` (torchvision)."""
    return [rate * i / max(total - 1, 1) for i in range(total)]


def feature_info(embed_dim: int, num_stages: int = 4, patch_size: int = 4) -> list[dict]:
    """timm-style description of the outputs: name, channels (``num_chs``), stride (``reduction``),
    and the module producing each map."""
    return [
        {
            "name": STAGE_NAMES[i],
            "num_chs": embed_dim * 2**i,
            "reduction": patch_size * 2**i,
            "module": f"features.{STAGE_INDEX[i]}",
        }
        for i in range(num_stages)
    ]


def patch_embed(embed_dim: int, patch_size: int) -> nn.Sequential:
    """[B, 3, H, W] -> [B, H/p, W/p, C]: strided convolution, NCHW -> NHWC, LayerNorm (torchvision)."""
    return nn.Sequential(
        nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size),
        Permute([0, 2, 3, 1]),
        nn.LayerNorm(embed_dim),
    )


def swin_stage(dim: int, num_heads: int, window: int, rates: list[float], mlp_ratio: float) -> nn.Sequential:
    """``len(rates)`` torchvision Swin blocks, shifted by M // 2 in every second one; [B, H, W, C] -> same."""
    return nn.Sequential(
        *(
            SwinTransformerBlock(
                dim,
                num_heads,
                window_size=[window, window],
                shift_size=[0, 0] if i % 2 == 0 else [window // 2, window // 2],
                mlp_ratio=mlp_ratio,
                stochastic_depth_prob=rate,
                norm_layer=nn.LayerNorm,
            )
            for i, rate in enumerate(rates)
        )
    )


def init_linear(module: nn.Module) -> None:
    """torchvision's Swin init: every Linear gets trunc-normal(0.02) weights and zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SwinBackbone(Backbone):
    """Swin Transformer feature extractor.

    forward: x [B, 3, H, W] -> (maps, None), maps the OrderedDict ``{"stage1": [B, H/4, W/4, C],
    "stage2": [B, H/8, W/8, 2C], "stage3": [B, H/16, W/16, 4C], "stage4": [B, H/32, W/32, 8C]}``, NHWC
    (torchvision's ``features`` stage outputs; sides rounded as the patch embedding floors and patch
    merging ceils). ``feature_info`` lists the maps' channels and strides. Dense, the forward of
    :class:`~spt_models.backbone.Backbone`: ``valid``, ``generator`` and ``keep`` are accepted for the
    contract and unused; as in torchvision, the windows attend the batch padding.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        window: int = 7,
        drop_path: float = 0.2,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(heads) != 4:
            raise ValueError(f"Swin has 4 stages: got depths={depths}, heads={heads}")
        rates = drop_path_rates(sum(depths), drop_path)
        layers: list[nn.Module] = [patch_embed(embed_dim, patch_size)]
        for i, depth in enumerate(depths):
            dim, first = embed_dim * 2**i, sum(depths[:i])
            layers.append(swin_stage(dim, heads[i], window, rates[first : first + depth], mlp_ratio))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim, norm_layer=nn.LayerNorm))
        self.features = nn.Sequential(*layers)
        self.feature_info = feature_info(embed_dim, len(depths), patch_size)
        init_linear(self)


@register_model
def swin_t(**overrides) -> SwinBackbone:
    return build(SwinBackbone, SWIN_T, **overrides)


@register_model
def swin_s(**overrides) -> SwinBackbone:
    return build(SwinBackbone, SWIN_S, **overrides)


@register_model
def swin_b(**overrides) -> SwinBackbone:
    return build(SwinBackbone, SWIN_B, **overrides)
