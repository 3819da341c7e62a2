"""Select and Pack Transformer (SPT) backbones (paper Sec. 3.1, eqs. 1-3; App. B.2).

Legend: B images, H, W input pixels, C embedding channels, M window side; token maps NHWC.

    x -> patch embed -> stage 1 (Swin) -> merge -> stage 2 (Swin) = r2 -> gate: s0 = gate(LN(r2))
      -> merge -> stage 3 (SPA blocks, each scored with max(gate, maxpool(s0)), eq. 4) = r3
      -> merge -> stage 4 (SPA blocks, each scored with max(gate, maxpool(s1))) = r4,
    s1 = the score logits of the last stage-3 block.

Our choices where the paper is silent: the stage-2 gate reads the LayerNorm'ed stage-2 output
(as every SPA block's gate reads its ``norm1`` output); every block of a stage takes the same
finer score map (s0 in stage 3, s1 in stage 4); the extra blocks of SPT-T/16, S and B are
appended at the end of stage 3 (Swin weights map onto SPA blocks of the same index); stochastic
depth is spread linearly over all blocks as in Swin.

Which stages use SPA (``spa_stages``, paper Table 6): a suffix of the stages, (4,), (3, 4) (the
paper's SPT, the default), (2, 3, 4) or (1, 2, 3, 4); the stages before it are Swin stages. The
s0 gate reads the output of the stage before the first SPA stage, at that stage's stride, and
eq. 4 chains from s0 through every SPA stage as above:

    spa_stages     s0 on (stride)             SPA strides       selection labels needed
    (4,)           stage 3 output (16)        32                16, 32
    (3, 4)         stage 2 output (8)         16, 32            8, 16, 32
    (2, 3, 4)      stage 1 output (4)         8, 16, 32         4, 8, 16, 32
    (1, 2, 3, 4)   patch embedding (4)        4, 8, 16, 32      4, 8, 16, 32

With SPA from stage 1 no patch merging lies between s0 and stage 1: s0 is at stage 1's own stride
and its blocks score ``max(gate, s0)`` (eq. 4 without the pooling). The extra blocks stay part of
stage 3 whatever its kind: SPA blocks when stage 3 is an SPA stage, Swin blocks otherwise
(``spa_stages=(4,)``). Table 6 "replaces the Swin blocks" of the paper's SPT from a given stage
on, so only the kind of the blocks changes between its rows, never the depth (2-2-10-2 for
SPT-T/16); for a model without them, ``extra_blocks=0`` (``spt_t12``).

Layout mirrors :class:`~spt_models.swin.SwinBackbone` (``features.0..7``; SPA stages are
``nn.ModuleList`` of :class:`spa_core.SPABlock`, whose parameter names are torchvision's, Swin
stages torchvision's blocks), so a torchvision Swin state dict loads onto it for every
``spa_stages``; ``gate_norm``, ``gate``, every block's ``gate`` and the extra blocks are fresh
(:meth:`SPTBackbone.fresh_keys`).

Equivalence to Swin: with every token selected and every gate saturated (sigmoid == 1 in fp32),
SPT-T/12 computes Swin-T exactly **when the stage-3/4 maps are window multiples** (e.g. 224x224:
14x14 and 7x7). Otherwise the two differ by design: Swin pads the map to window multiples and
its windows attend the zero-padded tokens (which carry the qkv bias), SPA never attends window
padding.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models.swin_transformer import PatchMerging

from spa_core import BlockSelection, Gate, SPABlock, selection_loss
from spa_core.attention import Backend
from spa_core.block import GateMode, MLPMode
from spa_core.packing import Layout

from .backbone import STAGE_NAMES, Backbone, stages
from .masks import check_valid, fit_grid, token_grid, token_valid
from .registry import build, register_model
from .swin import drop_path_rates, feature_info, init_linear, patch_embed, swin_stage

Selection = Literal["gate", "given"]
SPA_STAGES = ((4,), (3, 4), (2, 3, 4), (1, 2, 3, 4))  # the values of spa_stages: a suffix of the stages


@dataclass(frozen=True)
class SPTConfig:
    embed_dim: int  # C: channels of stage 1; stage i has C * 2**(i-1)
    depths: tuple[int, ...]  # blocks per stage of the Swin the model extends (its weights map onto these)
    heads: tuple[int, ...]  # attention heads per stage
    extra_blocks: int = 0  # blocks appended to stage 3 (paper: 4), fresh when loading Swin weights
    spa_stages: tuple[int, ...] = (3, 4)  # stages of SPA blocks (Table 6): (4,), (3, 4), (2, 3, 4) or 1-4
    window: int = 7  # window side M; SPA containers hold L = M * M tokens
    drop_path: float = 0.2  # stochastic depth of the last block, spread linearly from 0 at the first
    patch_size: int = 4  # side of the patch embedding's stride
    mlp_ratio: float = 4.0  # MLP hidden width / channels
    threshold: float = 0.01  # selection threshold on the probability (paper: 0.01)
    tau: float = 1.0  # Gumbel-sigmoid temperature
    keep_ratio: float | dict[int, float] | None = (
        None  # if set: every SPA block keeps its top ratio of tokens (App. B.4); {stride: ratio} per stage
    )
    selection: Selection = "gate"  # "gate": learned; "given": forward(x, keep={stride: ...} per SPA stride)
    backend: Backend = "sdpa"  # packed-attention backend of every SPA block: "sdpa", "reference", "flex"
    layout: Layout = "packed"  # "packed" (SPA) or "padded" (pad every image to the batch max; baseline)
    mlp: MLPMode = "all"  # SPA blocks' MLP on "all" tokens (paper text) or on "selected" ones only
    gate: GateMode = "selected"  # eq. 5 on "selected" tokens, or on "all" (unselected: the MLP input)


SPT_T16 = SPTConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), extra_blocks=4, drop_path=0.2)
SPT_T12 = SPTConfig(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), extra_blocks=0, drop_path=0.2)
SPT_S = SPTConfig(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), extra_blocks=4, drop_path=0.3)
SPT_B = SPTConfig(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), extra_blocks=4, drop_path=0.5)


@dataclass
class SelectionInfo:
    """What the SPA blocks of one forward selected (h, w: the block's token grid).

    score0 [B, H/s0, W/s0]: logits of the gate before the first SPA stage (s0, eq. 1), at
    ``stride0`` (8 for SPA in stages 3-4; see the module docstring for the others).
    logits: per SPA block (stage by stage), [B, h, w] score logits after eq. 4 (eq. 10's input).
    keep: per SPA block, [B, h, w] bool hard selection.
    strides: per SPA block, its stride (16 or 32 for SPA in stages 3-4).
    num_containers: per SPA block, B'.
    valid: {stride: [B, h, w] bool} real tokens at stride0 and at each SPA stage (all True without
    ``valid``).
    """

    score0: Tensor
    stride0: int = 8
    logits: list[Tensor] = field(default_factory=list)
    keep: list[Tensor] = field(default_factory=list)
    strides: list[int] = field(default_factory=list)
    num_containers: list[int] = field(default_factory=list)
    valid: dict[int, Tensor] = field(default_factory=dict)

    def add(self, stride: int, selection: BlockSelection) -> None:
        self.logits.append(selection.logits)
        self.keep.append(selection.keep)
        self.strides.append(stride)
        self.num_containers.append(selection.num_containers)

    @property
    def ratio(self) -> dict[int, Tensor]:
        """{stride: [B]}: per image, the selected fraction of its real tokens, mean over the stage's blocks."""
        out = {}
        for stride in dict.fromkeys(self.strides):
            real = self.valid[stride].flatten(1).sum(1).float()  # [B]
            kept = [k.flatten(1).sum(1).float() for k, s in zip(self.keep, self.strides) if s == stride]
            out[stride] = torch.stack(kept).mean(0) / real
        return out

    def losses(self, labels: dict[int, Tensor] | None) -> dict[str, Tensor]:
        """``{"loss_select": eq. 10}`` (unweighted; the detector multiplies by alpha) over s0 and every
        SPA block, or ``{}`` without labels. labels: ``{stride: [B, h', w'] bool}`` at stride0 and the
        SPA strides, top-left aligned, cropped or padded (negative) to each block's grid."""
        if labels is None:
            return {}
        strides = [self.stride0, *self.strides]
        missing = sorted(set(strides) - set(labels))
        if missing:
            raise ValueError(
                f"selection labels are missing for stride(s) {missing}; this SPT needs strides "
                f"{sorted(set(strides))} (s0 at {self.stride0}, SPA blocks at {sorted(set(self.strides))}), "
                f"got strides {sorted(labels)}"
            )
        logits = [self.score0, *self.logits]
        targets = [fit_grid(labels[s], tuple(lg.shape[1:])) for s, lg in zip(strides, logits)]
        return {"loss_select": selection_loss(logits, targets, [self.valid[s] for s in strides])}


class SPTBackbone(Backbone):
    """Select and Pack Transformer feature extractor.

    forward: x [B, 3, H, W] -> (maps, :class:`SelectionInfo`), maps as
    :class:`~spt_models.swin.SwinBackbone` (``{"stage1": [B, H/4, W/4, C], ..., "stage4":
    [B, H/32, W/32, 8C]}``, NHWC). Stage 3 has ``depths[2] + extra_blocks`` blocks; the stages in
    ``spa_stages`` are SPA blocks, the others Swin blocks (module docstring).

    ``spa_strides``: the SPA stages' strides (``keep``'s and ``aux.ratio``'s keys); ``label_strides``:
    the strides ``aux.losses(labels)`` needs labels at (s0's and the SPA strides).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depths: tuple[int, ...],
        heads: tuple[int, ...],
        extra_blocks: int = 0,
        spa_stages: tuple[int, ...] = (3, 4),
        window: int = 7,
        drop_path: float = 0.2,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        threshold: float = 0.01,
        tau: float = 1.0,
        keep_ratio: float | dict[int, float] | None = None,
        selection: Selection = "gate",
        backend: Backend = "sdpa",
        layout: Layout = "packed",
        mlp: MLPMode = "all",
        gate: GateMode = "selected",
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(heads) != 4:
            raise ValueError(f"SPT has 4 stages: got depths={depths}, heads={heads}")
        if selection not in ("gate", "given"):
            raise ValueError(f"selection must be 'gate' or 'given', got {selection!r}")
        if extra_blocks < 0:
            raise ValueError(f"extra_blocks must be >= 0, got {extra_blocks}")
        self.selection, self.swin_depths = selection, tuple(depths)
        self.patch_size = patch_size
        self.spa_stages = check_spa_stages(spa_stages)
        self.first_spa = self.spa_stages[0] - 1  # index (0-3) of the first SPA stage
        self.spa_strides = tuple(patch_size * 2 ** (i - 1) for i in self.spa_stages)  # keep's keys
        stride0 = patch_size * 2 ** max(self.first_spa - 1, 0)  # s0: the stage before, or the patch embed
        self.label_strides = tuple(sorted({stride0, *self.spa_strides}))
        stage_ratio = stage_keep_ratios(keep_ratio, self.spa_strides)  # {SPA stride: ratio or None}
        stage_depths = (depths[0], depths[1], depths[2] + extra_blocks, depths[3])
        rates = drop_path_rates(sum(stage_depths), drop_path)
        dims = [embed_dim * 2**i for i in range(4)]
        first = [sum(stage_depths[:i]) for i in range(4)]

        def spa_stage(i: int) -> nn.ModuleList:
            return nn.ModuleList(
                SPABlock(
                    dims[i],
                    heads[i],
                    window,
                    shift=j % 2 == 1,
                    mlp_ratio=mlp_ratio,
                    threshold=threshold,
                    tau=tau,
                    keep_ratio=stage_ratio[patch_size * 2**i],
                    drop_path=rates[first[i] + j],
                    layout=layout,
                    backend=backend,
                    mlp=mlp,
                    gate=gate,
                )
                for j in range(stage_depths[i])
            )

        layers: list[nn.Module] = [patch_embed(embed_dim, patch_size)]
        for i in range(4):
            if i < self.first_spa:
                stage_rates = rates[first[i] : first[i] + stage_depths[i]]
                layers.append(swin_stage(dims[i], heads[i], window, stage_rates, mlp_ratio))
            else:
                layers.append(spa_stage(i))
            if i < 3:
                layers.append(PatchMerging(dims[i], norm_layer=nn.LayerNorm))
        self.features = nn.Sequential(*layers)
        gate_dim = dims[max(self.first_spa - 1, 0)]  # the patch embedding has dims[0] channels too
        self.gate_norm = nn.LayerNorm(gate_dim)
        self.gate = Gate(gate_dim)
        self.feature_info = feature_info(embed_dim, 4, patch_size)
        init_linear(self)  # the gates' init is spa_core's too: trunc-normal(0.02) weight, zero bias

    def fresh_keys(self) -> list[str]:
        """State-dict keys a torchvision Swin checkpoint does not provide: the gates and the extra
        stage-3 blocks (index >= the Swin's stage-3 depth), SPA or Swin blocks."""
        fresh = []
        for key in self.state_dict():
            parts = key.split(".")
            extra = parts[:2] == ["features", "5"] and int(parts[2]) >= self.swin_depths[2]
            if key.startswith(("gate.", "gate_norm.")) or ".gate.proj." in key or extra:
                fresh.append(key)
        return fresh

    @property
    def needs_keep(self) -> bool:
        """Whether forward needs ``keep`` masks: iff built with ``selection="given"`` (the oracle)."""
        return self.selection == "given"

    def keep_from_labels(
        self, labels: dict[int, Tensor], height: int, width: int
    ) -> dict[int, Tensor] | None:
        """forward's ``keep`` from a batch's selection labels ``{stride: [B, h', w'] bool}`` (top-left
        aligned, cropped or padded with False to each SPA stage's grid of a ``height x width`` input),
        or None if the gates select (``selection="gate"``)."""
        if not self.needs_keep:
            return None
        if any(s not in labels for s in self.spa_strides):
            raise ValueError(
                f"selection='given' needs selection labels at strides {list(self.spa_strides)}, "
                f"got strides {sorted(labels)}"
            )
        return {
            s: fit_grid(labels[s], token_grid(height, width, s, self.patch_size)) for s in self.spa_strides
        }

    def forward(
        self,
        x: Tensor,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
        keep: dict[int, Tensor] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], SelectionInfo]:
        """x [B, 3, H, W] -> (maps, selection).

        valid: the real image extent inside a padded batch, [B, 2] integer (height, width) in
        pixels or a [B, H, W] bool pixel mask; tokens outside it are never selected, and their scores
        never reach the next scale through eq. 4's max-pool.
        generator: the Gumbel noise's random generator (training).
        keep: ``{stride: [B, H/stride, W/stride]}`` bool for every SPA stride (``spa_strides``; by
        default ``{16: ..., 32: ...}``), the selection of every block of that stage; required iff the
        model was built with ``selection="given"``.
        """
        B, _, H, W = x.shape
        keep = self._check_keep(keep)
        if valid is not None:
            check_valid(valid, B, H, W)
        maps: OrderedDict[str, Tensor] = OrderedDict()
        info: SelectionInfo | None = None
        for i, downsample, stage in stages(self.features):
            x = downsample(x)  # [B, h, w, c]: h = ceil(previous h / 2)
            stride = self.patch_size * 2**i
            if i == self.first_spa == 0:  # SPA from stage 1: s0 on the patch embedding output
                info = self._score0(x, stride, valid)
            if i < self.first_spa:
                x = stage(x)  # Swin blocks
            else:
                x = self._spa_stage(stage, x, stride, info, valid, keep, generator)
            maps[STAGE_NAMES[i]] = x
            if i == self.first_spa - 1:
                info = self._score0(x, stride, valid)  # s0 on the stage before the first SPA stage
        assert info is not None
        return maps, info

    def _score0(self, x: Tensor, stride: int, valid: Tensor | None) -> SelectionInfo:
        """s0 = gate(LN(x)) (eq. 1) on x [B, h, w, c] at ``stride`` -> a new record holding s0 [B, h, w]."""
        info = SelectionInfo(score0=self.gate(self.gate_norm(x)), stride0=stride)
        info.valid[stride] = self._real(valid, x, stride)
        return info

    @staticmethod
    def _real(valid: Tensor | None, x: Tensor, stride: int) -> Tensor:
        """Real tokens of the map x [B, h, w, c] at ``stride`` -> [B, h, w] bool."""
        B, h, w, _ = x.shape
        if valid is None:
            return x.new_ones(B, h, w, dtype=torch.bool)
        return token_valid(valid, (h, w), stride)

    def _spa_stage(
        self,
        blocks: nn.ModuleList,
        x: Tensor,
        stride: int,
        info: SelectionInfo,
        valid: Tensor | None,
        keep: dict[int, Tensor] | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        """One SPA stage on x [B, h, w, c]; every block is scored with the finer scale's last score
        map (s0 for the first SPA stage, then the previous stage's last block), padding masked out
        before eq. 4's max-pool."""
        real = info.valid[stride] = self._real(valid, x, stride)
        finer = info.logits[-1] if info.logits else info.score0  # [B, 2h, 2w], or [B, h, w] (s0 of stage 1)
        finer_stride = info.strides[-1] if info.strides else info.stride0
        if valid is not None:
            finer = finer.masked_fill(~info.valid[finer_stride], float("-inf"))
        if finer_stride == stride:  # s0 of SPA from stage 1: repeat 2x2 so that eq. 4's max-pool returns it
            finer = finer.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # [B, 2h, 2w]
        given = None if keep is None else self._stage_keep(keep, stride, tuple(real.shape))
        for block in blocks:
            x, selection = block(
                x, score_up=finer, valid=None if valid is None else real, keep=given, generator=generator
            )
            info.add(stride, selection)
        return x

    def _check_keep(self, keep: dict[int, Tensor] | None) -> dict[int, Tensor] | None:
        if self.selection == "gate" and keep is not None:
            raise ValueError(
                "keep masks were given to a model built with selection='gate'; build it with selection='given'"
            )
        if self.selection == "given" and (keep is None or sorted(keep) != list(self.spa_strides)):
            got = None if keep is None else sorted(keep)
            raise ValueError(
                f"selection='given' needs keep masks for strides {list(self.spa_strides)}, got {got}"
            )
        return keep

    @staticmethod
    def _stage_keep(keep: dict[int, Tensor], stride: int, shape: tuple[int, int, int]) -> Tensor:
        mask = keep[stride]
        if tuple(mask.shape) != shape or mask.dtype != torch.bool:
            raise ValueError(
                f"keep[{stride}] must be a {list(shape)} bool mask, got {tuple(mask.shape)} {mask.dtype}"
            )
        return mask


def stage_keep_ratios(
    keep_ratio: float | dict[int, float] | None, spa_strides: tuple[int, ...]
) -> dict[int, float | None]:
    """``keep_ratio`` -> ``{SPA stride: ratio or None}``: None (every block thresholds its gate), one
    ratio for every SPA block, or ``{stride: ratio}`` naming exactly the SPA strides (a forced
    selection per stage, e.g. a trained run's measured ratios: :mod:`spt_train.bench`). Each block
    then keeps the ``ceil(ratio * n)`` top-scored of an image's n real tokens
    (:func:`spa_core.select_top_ratio`); the range is checked by :class:`spa_core.SPABlock`."""
    if not isinstance(keep_ratio, dict):
        return dict.fromkeys(spa_strides, keep_ratio)
    if sorted(keep_ratio) != sorted(spa_strides):
        raise ValueError(
            f"keep_ratio should name every SPA stride {list(spa_strides)} once, got strides {sorted(keep_ratio)}"
        )
    return dict(keep_ratio)


def check_spa_stages(spa_stages: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``spa_stages`` (a tuple, or a list as YAML gives it) -> the tuple, if it is one of
    :data:`SPA_STAGES`; ValueError naming the value otherwise."""
    value = tuple(spa_stages) if isinstance(spa_stages, (list, tuple)) else None
    if value not in SPA_STAGES or not all(type(i) is int for i in value):
        raise ValueError(
            "spa_stages must be a suffix of the stages 1-4: (4,), (3, 4), (2, 3, 4) or (1, 2, 3, 4), "
            f"got {spa_stages!r}"
        )
    return value


@register_model
def spt_t(**overrides) -> SPTBackbone:
    """SPT-T/16 (paper main text): Swin-T with 4 extra SPA blocks in stage 3."""
    return build(SPTBackbone, SPT_T16, **overrides)


@register_model
def spt_t12(**overrides) -> SPTBackbone:
    """SPT-T/12 (App. B.2): Swin-T's depths, SPA in stages 3-4 (our reading of the lightweight variant)."""
    return build(SPTBackbone, SPT_T12, **overrides)


@register_model
def spt_s(**overrides) -> SPTBackbone:
    return build(SPTBackbone, SPT_S, **overrides)


@register_model
def spt_b(**overrides) -> SPTBackbone:
    return build(SPTBackbone, SPT_B, **overrides)


@register_model
def spt_t_fixed(**overrides) -> SPTBackbone:
    """SPT-T/16 keeping exactly ceil(keep_ratio * n) top-scored tokens per image and SPA block
    (App. B.4 / Fig. 6; default half, override ``keep_ratio``)."""
    return build(SPTBackbone, SPT_T16, **{"keep_ratio": 0.5, **overrides})


@register_model
def spt_t_oracle(**overrides) -> SPTBackbone:
    """SPT-T/16 with ground-truth selection (Fig. 4): ``forward(x, keep={16: labels16, 32: labels32})``
    with the selection labels of spt-data; every SPA block selects exactly the label positives."""
    return build(SPTBackbone, SPT_T16, **{"selection": "given", **overrides})
