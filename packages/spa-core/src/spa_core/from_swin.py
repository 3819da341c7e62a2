"""Read a torchvision or timm Swin (v1) block into SPA's terms (:meth:`SPABlock.from_swin_block`).

Neither library is imported: a block is read by its attribute names, which both share
(``norm1``, ``norm2``, ``attn.qkv``, ``attn.proj``, ``attn.relative_position_bias_table``,
``attn.num_heads``, ``mlp``) or name differently:

- MLP: torchvision ``mlp.0`` / ``mlp.1`` (GELU) / ``mlp.3``, timm ``mlp.fc1`` / ``mlp.act`` / ``mlp.fc2``;
- window and shift: torchvision ``attn.window_size`` / ``attn.shift_size`` (lists, as given),
  timm ``window_size`` / ``shift_size`` on the block (tuples, already reduced to its
  ``input_resolution``: no shift along a side that fits in one window, SPA's rule as well);
- stochastic depth: torchvision ``stochastic_depth`` (``p``), timm ``drop_path1`` / ``drop_path2``
  (``drop_prob``, or ``Identity``);
- dropout: torchvision ``attn.attention_dropout`` / ``attn.dropout`` floats, timm ``attn.attn_drop`` /
  ``attn.proj_drop`` modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .window import effective_shift

OPEN_GATE_LOGIT = 20.0  # sigmoid(20.0) == 1.0 exactly in fp32, fp16 and bf16
REQUIRED = (
    "norm1",
    "norm2",
    "mlp",
    "attn.qkv",
    "attn.proj",
    "attn.relative_position_bias_table",
    "attn.num_heads",
)
TIMM_MLP = ["fc1", "act", "drop1", "norm", "fc2", "drop2"]


@dataclass(frozen=True)
class SwinBlockParts:
    """A Swin block read into SPABlock's terms.

    config: SPABlock's arguments that come from the block (``dim``, ``num_heads``, ``window_size``,
        ``shift``, ``mlp_ratio``, ``dropout``, ``attention_dropout``, ``drop_path``, ``norm_layer``).
    state: the block's weights under SPABlock's parameter names (all but ``gate.proj``).
    """

    config: dict[str, Any]
    state: dict[str, Tensor]


def read_swin_block(block: nn.Module) -> SwinBlockParts:
    """A torchvision or timm ``SwinTransformerBlock`` -> :class:`SwinBlockParts`; anything SPA cannot
    reproduce exactly (Swin V2, another MLP, a non-square window, a shift other than M // 2) -> ValueError."""
    name = f"{type(block).__module__}.{type(block).__qualname__}"
    attn = getattr(block, "attn", None)
    if hasattr(attn, "logit_scale") or hasattr(attn, "cpb_mlp"):
        raise ValueError(
            f"from_swin_block copies Swin V1 blocks only, got a Swin V2 block {name} "
            "(cosine attention, continuous position bias, post-norm)"
        )
    missing = [path for path in REQUIRED if _get(block, path) is None]
    if missing:
        raise ValueError(f"{name} is not a Swin block: it has no {', '.join(missing)}")
    qkv, proj, table = attn.qkv, attn.proj, attn.relative_position_bias_table
    dim, heads = qkv.in_features, int(attn.num_heads)
    if (qkv.out_features, proj.in_features, proj.out_features) != (3 * dim, dim, dim):
        raise ValueError(
            f"{name}: attention must map {dim} channels to 3 * {dim} (qkv) and back (proj), got "
            f"qkv {qkv.in_features}->{qkv.out_features}, proj {proj.in_features}->{proj.out_features}"
        )
    window, shift = _window_and_shift(block, attn, name)
    if tuple(table.shape) != ((2 * window - 1) ** 2, heads):
        raise ValueError(
            f"{name}: attn.relative_position_bias_table must be [{(2 * window - 1) ** 2}, {heads}] "
            f"for window {window} and {heads} heads, got {list(table.shape)}"
        )
    eps = _layer_norm_eps(block, dim, name)
    fc1, fc2, mlp_dropout = _read_mlp(block.mlp, dim, name)
    dropout, attention_dropout = _dropouts(attn)
    if any(p != dropout for p in mlp_dropout):
        raise ValueError(
            f"{name}: SPABlock has one dropout for attention output and MLP, got attention output "
            f"{dropout} and MLP {mlp_dropout}"
        )
    hidden = fc1.out_features
    if int(dim * (hidden / dim)) != hidden:
        raise ValueError(
            f"{name}: MLP width {hidden} must be int({dim} * {hidden / dim}) (SPABlock's width rule)"
        )
    config = {
        "dim": dim,
        "num_heads": heads,
        "window_size": window,
        "shift": shift,
        "mlp_ratio": hidden / dim,
        "dropout": dropout,
        "attention_dropout": attention_dropout,
        "drop_path": _drop_path_rate(block, name),
        "norm_layer": partial(nn.LayerNorm, eps=eps),
    }
    linears = {"attn.qkv": qkv, "attn.proj": proj, "mlp.0": fc1, "mlp.3": fc2}
    state = {f"{key}.weight": layer.weight for key, layer in linears.items()}
    # a Linear without bias is one with a zero bias: SPA's linears always have one
    state |= {f"{key}.bias": _bias(layer) for key, layer in linears.items()}
    state |= {
        f"{norm}.{p}": getattr(getattr(block, norm), p)
        for norm in ("norm1", "norm2")
        for p in ("weight", "bias")
    }
    state["attn.relative_position_bias_table"] = table
    return SwinBlockParts(config, {key: value.detach() for key, value in state.items()})


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window_and_shift(block: nn.Module, attn: nn.Module, name: str) -> tuple[int, bool]:
    """(M, shifted): timm keeps window and shift on the block, torchvision on its attention."""
    owner = block if hasattr(block, "shift_size") else attn
    window, shift = _pair(owner.window_size), _pair(owner.shift_size)
    if window[0] != window[1]:
        raise ValueError(f"{name}: window_size must be square, got {list(window)}")
    M = window[0]
    if not any(shift):
        return M, False
    resolution = getattr(block, "input_resolution", None)  # timm: the map size its shift was made for
    expected = effective_shift(*_pair(resolution), M, M // 2) if resolution is not None else (M // 2, M // 2)
    if shift != expected:
        raise ValueError(
            f"{name}: shift_size must be [0, 0] or {list(expected)} (SPA shifts by window_size // 2 = "
            f"{M // 2}, not along a side that fits in one window), got {list(shift)}"
        )
    return M, True


def _layer_norm_eps(block: nn.Module, dim: int, name: str) -> float:
    for key in ("norm1", "norm2"):
        norm = getattr(block, key)
        if not (isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (dim,)):
            raise ValueError(f"{name}: {key} must be a LayerNorm over {dim} channels, got {norm!r}")
        if norm.weight is None or norm.bias is None:
            raise ValueError(f"{name}: {key} must have a weight and a bias, got {norm!r}")
    if block.norm1.eps != block.norm2.eps:
        raise ValueError(
            f"{name}: norm1 and norm2 must share eps, got {block.norm1.eps} and {block.norm2.eps}"
        )
    return block.norm1.eps


def _read_mlp(mlp: nn.Module, dim: int, name: str) -> tuple[nn.Linear, nn.Linear, tuple[float, float]]:
    """torchvision's MLP (Linear, GELU, Dropout, Linear, Dropout) or timm's Mlp (fc1, act, drop1,
    norm=Identity, fc2, drop2) -> (fc1, fc2, its two dropout probabilities)."""
    children = dict(mlp.named_children())
    layers = list(children.values())
    linear, dropout = nn.Linear, nn.Dropout
    if isinstance(mlp, nn.Sequential) and _kinds(layers, [linear, None, dropout, linear, dropout]):
        fc1, act, drop1, fc2, drop2 = layers
    elif list(children) == TIMM_MLP and _kinds(layers, [linear, None, dropout, nn.Identity, linear, dropout]):
        fc1, act, drop1, _, fc2, drop2 = layers
    else:
        raise ValueError(
            f"{name}: mlp must be torchvision's MLP (Linear, GELU, Dropout, Linear, Dropout) or timm's Mlp "
            f"(fc1, act, drop1, norm=Identity, fc2, drop2), got {type(mlp).__name__} of "
            f"{[f'{key}: {type(layer).__name__}' for key, layer in children.items()]}"
        )
    if (fc1.in_features, fc2.out_features, fc1.out_features) != (dim, dim, fc2.in_features):
        raise ValueError(
            f"{name}: mlp must map {dim} -> hidden -> {dim} channels, got "
            f"{fc1.in_features}->{fc1.out_features} and {fc2.in_features}->{fc2.out_features}"
        )
    probe = torch.linspace(-4.0, 4.0, 33)
    with torch.no_grad():
        if not torch.allclose(act(probe), F.gelu(probe), rtol=0, atol=1e-6):
            raise ValueError(
                f"{name}: the mlp activation must be GELU (erf form, as SPABlock's), got {act!r}"
            )
    return fc1, fc2, (drop1.p, drop2.p)


def _dropouts(attn: nn.Module) -> tuple[float, float]:
    """(attention output dropout, attention-weight dropout) of a torchvision or timm attention."""
    if hasattr(attn, "proj_drop"):  # timm: modules
        return attn.proj_drop.p, attn.attn_drop.p
    return float(attn.dropout), float(attn.attention_dropout)


def _drop_path_rate(block: nn.Module, name: str) -> float:
    """Stochastic depth rate: torchvision's ``StochasticDepth(p, "row")``, timm's ``DropPath``
    (one per branch, the same) or ``Identity``."""
    if hasattr(block, "stochastic_depth"):
        depth = block.stochastic_depth
        if depth.mode != "row":
            raise ValueError(
                f"{name}: stochastic_depth must drop per sample (mode 'row'), got {depth.mode!r}"
            )
        return float(depth.p)
    if hasattr(block, "drop_path1"):
        paths = [block.drop_path1, block.drop_path2]
        rates = [float(getattr(path, "drop_prob", 0.0)) for path in paths]
        if rates[0] != rates[1] or not all(getattr(path, "scale_by_keep", True) for path in paths):
            raise ValueError(
                f"{name}: drop_path1 and drop_path2 must drop at one rate and scale by the keep rate, "
                f"got {paths[0]!r} and {paths[1]!r}"
            )
        return rates[0]
    raise ValueError(
        f"{name}: stochastic depth must be torchvision's stochastic_depth or timm's drop_path1/drop_path2"
    )


def _kinds(layers: list[nn.Module], kinds: list[type[nn.Module] | None]) -> bool:
    """Each layer is an instance of its kind (None: any module)."""
    return len(layers) == len(kinds) and all(k is None or isinstance(m, k) for m, k in zip(layers, kinds))


def _bias(layer: nn.Linear) -> Tensor:
    return layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
