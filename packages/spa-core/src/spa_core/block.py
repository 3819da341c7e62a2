"""The SPA block: Swin's block with attention on selected, packed tokens only.

Legend: B images, H, W token grid, C channels, M window side, L = M * M container length,
B' containers, T selected tokens.

    x -> LN -> gate (+ finer scores, eq. 4) -> select (eq. 6) -> gated features (eq. 5) of the
      selected tokens, packed in window-partition order -> QKV / MSA / proj in containers
      -> added back to x at the selected positions only  -> LN -> MLP -> residual

Two readings of the paper, both switchable (DESIGN §7):

``mlp="all"`` (default, the paper's text: "negative tokens are directly passed to the feedforward
network"): the MLP runs on every token. ``mlp="selected"``: unselected tokens skip attention and
MLP alike (identity), as SparseViT's dropped windows; the MLP runs on the T selected tokens only,
which is the only reading under which the paper's FLOPs tables can be reached.

``gate="selected"`` (default): eq. 5's ``sigmoid(s) * LN(x)`` is formed for the selected tokens
(the attention input), so the task loss reaches only selected tokens' scores. ``gate="all"``:
eq. 5 for every token, as the paper defines ``r_g``: an unselected token passes its gated
features to the MLP, ``x + MLP(sigmoid(s) * LN2(x))``, so the task loss reaches a dropped token's
score too (our reading of "negative tokens are directly passed to the feedforward network"; with
``mlp="selected"`` an unselected token reaches no MLP, so that pair is refused).

Parameter names follow torchvision's ``SwinTransformerBlock`` (``norm1``, ``attn.qkv``,
``attn.proj``, ``attn.relative_position_bias_table``, ``norm2``, ``mlp.0``, ``mlp.3``), so a
torchvision Swin block's weights load unchanged (drop its ``attn.relative_position_index``
buffer: SPA computes offsets from true positions). The block adds ``gate.proj``.
:meth:`SPABlock.from_swin_block` copies a torchvision or timm Swin block, gate open.

Two "layouts", two names: ``layout`` (argument and attribute) is the *container* layout,
``"packed"`` or ``"padded"`` (:func:`~spa_core.packing.pack_plan`); ``windows`` is the *window*
geometry of one map, a :class:`~spa_core.window.WindowLayout` (padding, shift, window-partition order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import BACKENDS, Backend, attention_groups, packed_attention
from .from_swin import OPEN_GATE_LOGIT, read_swin_block
from .gate import Gate, gate_features, multiscale_score
from .packing import Layout, pack_plan
from .selection import select_tokens, select_top_ratio
from .window import window_layout

MLPMode = Literal["all", "selected"]
GateMode = Literal["selected", "all"]
MLP_MODES: tuple[str, ...] = ("all", "selected")
GATE_MODES: tuple[str, ...] = ("selected", "all")


@dataclass
class BlockSelection:
    """What one SPA block selected.

    logits [B, H, W]: score logits after eq. 4 (input of the selection loss, eq. 10).
    keep [B, H, W] bool: the hard selection.
    num_containers: B', the number of containers attention ran on.
    """

    logits: Tensor
    keep: Tensor
    num_containers: int

    def ratio(self, valid: Tensor | None = None) -> Tensor:
        """Selected fraction of each image's real tokens -> [B]."""
        kept = self.keep.flatten(1).sum(1).float()
        total = valid.flatten(1).sum(1).float() if valid is not None else self.keep[0].numel()
        return kept / total


def drop_path(x: Tensor, p: float, training: bool, sample: Tensor | None = None, batch: int = 0) -> Tensor:
    """Stochastic depth: zero a whole sample's residual branch with probability ``p``.

    x [B, ...] with one sample per row; or x [T, ...] rows of ``batch`` samples, ``sample`` [T]
    giving each row's sample.
    """
    if not training or p == 0.0:
        return x
    batch = batch or x.shape[0]
    scale = x.new_empty(batch).bernoulli_(1.0 - p).div_(1.0 - p)  # [B]
    scale = scale[sample] if sample is not None else scale
    return x * scale.view(-1, *([1] * (x.dim() - 1)))


def scatter_add_rows(x: Tensor, rows: Tensor, update: Tensor) -> Tensor:
    """x [N, C] + update [T, C] at the unique ``rows`` [T] -> [N, C] (a new tensor).

    ``clone().index_add_`` rather than ``index_add``: the same values and gradients, but CPU's
    out-of-place ``index_add`` is ~50x slower for a [8000, 384] map (torch 2.14, profiled).
    """
    return x.clone().index_add_(0, rows, update)


class SPAttention(nn.Module):
    """QKV, masked multi-head attention in containers, projection.

    tokens [B', L, C], pos [B', L, 2], group [B', L] -> [B', L, C].
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        *,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
        backend: Backend = "sdpa",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.num_heads, self.window_size, self.backend = num_heads, window_size, backend
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, tokens: Tensor, pos: Tensor, group: Tensor) -> Tensor:
        Bc, L, C = tokens.shape
        qkv = self.qkv(tokens).view(Bc, L, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B', nH, L, d]
        out = packed_attention(
            q,
            k,
            v,
            table=self.relative_position_bias_table,
            pos=pos,
            group=group,
            window=self.window_size,
            backend=self.backend,
            dropout=self.attention_dropout if self.training else 0.0,
        )  # [B', nH, L, d]
        out = self.proj(out.transpose(1, 2).reshape(Bc, L, C))
        return F.dropout(out, p=self.dropout, training=self.training)


class SPABlock(nn.Module):
    """Select and Pack Attention block.

    Args:
        dim: channels C. num_heads: attention heads. window_size: M; containers hold M * M tokens.
        shift: roll the map by M // 2 (Swin's odd blocks) before packing.
        threshold, tau: selection threshold on the probability (paper: 0.01) and temperature.
        keep_ratio: if set, keep exactly ``ceil(keep_ratio * n)`` top-scored tokens per image instead
            of thresholding (the fixed-ratio baseline, App. B.4 / Fig. 6).
        layout: the container layout, ``"packed"`` (SPA) or ``"padded"`` (pad each image to the
            batch max; baseline).
        backend: ``"sdpa"``, ``"reference"`` or ``"flex"`` (see :mod:`spa_core.attention`).
        mlp: ``"all"`` (MLP on every token) or ``"selected"`` (unselected tokens are untouched).
        gate: ``"selected"`` (eq. 5 on selected tokens) or ``"all"`` (also on the MLP input of
            unselected tokens). See the module docstring for both readings.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        *,
        shift: bool = False,
        mlp_ratio: float = 4.0,
        threshold: float = 0.01,
        tau: float = 1.0,
        keep_ratio: float | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
        layout: Layout = "packed",
        backend: Backend = "sdpa",
        mlp: MLPMode = "all",
        gate: GateMode = "selected",
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if layout not in ("packed", "padded"):
            raise ValueError(f"layout must be 'packed' or 'padded', got {layout!r}")
        if mlp not in MLP_MODES:
            raise ValueError(f"mlp must be 'all' or 'selected', got {mlp!r}")
        if gate not in GATE_MODES:
            raise ValueError(f"gate must be 'selected' or 'all', got {gate!r}")
        if mlp == "selected" and gate == "all":
            raise ValueError(
                "gate='all' gates the MLP input of unselected tokens, which skip the MLP with "
                "mlp='selected'; use gate='selected' with mlp='selected'"
            )
        self.mlp_mode, self.gate_mode = mlp, gate
        self.window_size, self.shift = window_size, window_size // 2 if shift else 0
        if keep_ratio is not None and not 0.0 <= keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
        self.threshold, self.tau, self.keep_ratio = threshold, tau, keep_ratio
        self.layout, self.drop_path_rate = layout, drop_path
        self.norm1 = norm_layer(dim)
        self.gate = Gate(dim)
        self.attn = SPAttention(
            dim, num_heads, window_size, attention_dropout=attention_dropout, dropout=dropout, backend=backend
        )
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    @classmethod
    def from_swin_block(cls, block: nn.Module, **options: Any) -> SPABlock:
        """An SPA block with the weights of a torchvision or timm Swin (v1) ``SwinTransformerBlock``.

        ``options``: SPA's own arguments (``threshold``, ``tau``, ``keep_ratio``, ``layout``,
        ``backend``, ``mlp``, ``gate``); the rest (dims, heads, window, shift, MLP width, dropouts,
        stochastic depth, LayerNorm eps) comes from ``block``. The gate starts open: weight 0, bias
        :data:`~spa_core.from_swin.OPEN_GATE_LOGIT` (20), so ``sigmoid(logit) == 1`` and every token
        is kept (in training too, unless a token's logistic noise falls below -24: p ~ 1e-11); on
        maps that are window multiples the output is ``block``'s (fp32: ~1e-6). At logit 20 the task
        loss's gradient through the sigmoid vanishes; the selection loss (BCE on the logits) trains
        the gate. On other maps SPA attends real tokens only (see the README). Same device, dtype
        and train/eval mode as ``block``. Raises ValueError naming what it cannot copy (Swin V2,
        another MLP, a non-square window, a shift other than window // 2).
        """
        parts = read_swin_block(block)
        clash = sorted(options.keys() & parts.config.keys())
        if clash:
            raise ValueError(f"from_swin_block takes {clash} from the block; pass only SPA's own options")
        spa = cls(**parts.config, **options)
        missing, unexpected = spa.load_state_dict(parts.state, strict=False)
        assert sorted(missing) == ["gate.proj.bias", "gate.proj.weight"] and not unexpected, (
            missing + unexpected
        )
        with torch.no_grad():
            spa.gate.proj.weight.zero_()
            spa.gate.proj.bias.fill_(OPEN_GATE_LOGIT)
        weight = parts.state["attn.qkv.weight"]
        return spa.to(device=weight.device, dtype=weight.dtype).train(block.training)

    def forward(
        self,
        x: Tensor,
        score_up: Tensor | None = None,
        valid: Tensor | None = None,
        keep: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, BlockSelection]:
        """x [B, H, W, C] -> (x [B, H, W, C], selection): attention on the selected tokens (see
        :meth:`attend` for the arguments), then the MLP on all tokens or on the selected ones."""
        B, H, W, C = x.shape
        xn, logits, weight, keep = self._select(x, score_up, valid, keep, generator)
        rows, image, update, num_containers = self._attention(xn, logits, weight, keep)
        update = update.to(x.dtype) if update is not None else None  # the residual stream keeps its dtype
        flat = x.reshape(-1, C)  # [B*H*W, C]
        if self.mlp_mode == "selected":
            if rows is not None:  # attention and MLP on the T selected rows, one scatter
                mid = flat.index_select(0, rows) + update  # [T, C]
                mlp = drop_path(self.mlp(self.norm2(mid)), self.drop_path_rate, self.training, image, B)
                x = scatter_add_rows(flat, rows, update + mlp.to(x.dtype)).view(B, H, W, C)
        else:
            if rows is not None:
                x = scatter_add_rows(flat, rows, update).view(B, H, W, C)
            h = self.norm2(x)  # [B, H, W, C]
            if self.gate_mode == "all":  # eq. 5 on the MLP input of unselected tokens
                h = h * torch.where(keep, 1.0, torch.sigmoid(logits)).unsqueeze(-1).to(h.dtype)
            x = x + drop_path(self.mlp(h), self.drop_path_rate, self.training)
        if rows is None and torch.is_grad_enabled():
            x = x + self._exact_zero(logits)
        return x, BlockSelection(logits, keep, num_containers)

    def attend(
        self,
        x: Tensor,
        score_up: Tensor | None = None,
        valid: Tensor | None = None,
        keep: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, BlockSelection]:
        """The attention half: x [B, H, W, C] -> (x + attention update at selected tokens, selection).

        score_up [B, 2H', 2W']: score logits of the finer scale (eq. 4), or None.
        valid [B, H, W] bool: real tokens (False on batch padding; never selected).
        keep [B, H, W] bool: a given selection replacing the gate's (oracle, fixed ratio, benchmarks);
        the gate still scales the features (eq. 5).
        """
        B, H, W, C = x.shape
        xn, logits, weight, keep = self._select(x, score_up, valid, keep, generator)
        rows, _, update, num_containers = self._attention(xn, logits, weight, keep)
        if rows is not None:
            x = scatter_add_rows(x.reshape(-1, C), rows, update.to(x.dtype)).view(B, H, W, C)
        elif torch.is_grad_enabled():
            x = x + self._exact_zero(logits)
        return x, BlockSelection(logits, keep, num_containers)

    def _select(
        self,
        x: Tensor,
        score_up: Tensor | None,
        valid: Tensor | None,
        keep: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x [B, H, W, C] -> (LN(x) [B, H, W, C], logits [B, H, W], weight [B, H, W], keep [B, H, W] bool)."""
        xn = self.norm1(x)
        logits = multiscale_score(self.gate(xn), score_up)  # [B, H, W]
        if keep is None and self.keep_ratio is not None:
            weight, keep = select_top_ratio(logits, self.keep_ratio, training=self.training, valid=valid)
        elif keep is None:
            weight, keep = select_tokens(
                logits,
                threshold=self.threshold,
                tau=self.tau,
                training=self.training,
                valid=valid,
                generator=generator,
            )
        else:
            keep = keep if valid is None else keep & valid
            weight = keep.to(x.dtype)
        return xn, logits, weight, keep

    def _attention(
        self, xn: Tensor, logits: Tensor, weight: Tensor, keep: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, int]:
        """Pack the selected tokens, attend, unpack -> (rows [T] into x.view(B*H*W, C), image [T] of
        each row, attention update [T, C], containers B'); (None, None, None, 0) if nothing is selected."""
        B, H, W, C = xn.shape
        windows = window_layout(H, W, self.window_size, self.shift, xn.device)
        inside = windows.source >= 0  # [Np]
        keep_w = keep.flatten(1)[:, windows.source.clamp(min=0)] & inside  # [B, Np] window-partition order
        plan = pack_plan(keep_w, self.window_size**2, self.layout)
        if not plan.num_tokens:
            return None, None, None, 0
        image, cell = plan.index // keep_w.shape[1], plan.index % keep_w.shape[1]  # [T], [T]
        rows = image * (H * W) + windows.source[cell]  # [T] into x.view(B * H * W, C)
        # index_select, not x[rows]: its backward is an index_add, ~25x faster on CPU than index's
        # accumulating index_put over the full map (rows are unique)
        gated = gate_features(xn.reshape(-1, C).index_select(0, rows), logits.flatten().index_select(0, rows))
        tokens = plan.to_slots(
            gated * weight.flatten().index_select(0, rows).unsqueeze(1)
        )  # [B', L, C] eq. 5, 6
        pos = plan.to_slots(windows.pos[cell])  # [B', L, 2]
        group = attention_groups(plan.image_id, plan.to_slots(windows.region[cell]))  # [B', L]
        out = plan.from_slots(self.attn(tokens, pos, group))  # [T, C]
        out = drop_path(out, self.drop_path_rate, self.training, sample=image, batch=B)
        return rows, image, out, plan.num_containers

    def _exact_zero(self, logits: Tensor) -> Tensor:
        """0, connected to every parameter and the scores: with nothing selected, the attention
        weights (and with ``mlp="selected"`` the MLP's) still get an (exactly zero) gradient, so DDP
        with ``find_unused_parameters=False`` sees them used (background-only batches select nothing)."""
        return 0.0 * (logits.sum() + sum(p.sum() for p in self.parameters()))
