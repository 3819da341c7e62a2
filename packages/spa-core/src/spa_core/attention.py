"""Attention inside packed containers (the "A" of SPA), as free functions over tensors.

Legend: B' containers, nH heads, L container length, d head dim, M window side.
A query attends a key iff both carry the same ``group`` id: group = image id and shift region
combined (see :func:`attention_groups`), padding slots get a group of their own (-1), so no real
token attends padding and no row of the mask is ever empty. Swin's relative position bias is
looked up by the true 2-D offset of the two tokens, clamped to the table.

Backends, all agreeing to 1e-5 in fp32:
``reference`` explicit matmul + softmax (tests, FLOP counting), ``sdpa``
``F.scaled_dot_product_attention`` with an additive mask (CPU and GPU, train and eval),
``flex`` FlexAttention with a score_mod and a block mask (GPU; no CPU backward), ``auto``
``flex`` for CUDA tensors without attention dropout, ``sdpa`` otherwise (:func:`resolve_backend`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .window import relative_position_index

Backend = Literal["sdpa", "reference", "flex", "auto"]
BACKENDS: tuple[str, ...] = ("sdpa", "reference", "flex", "auto")
NUM_REGIONS = 9  # Swin's 3 x 3 shift regions


def resolve_backend(backend: Backend, device: torch.device, dropout: float = 0.0) -> Backend:
    """``"auto"`` -> ``"flex"`` on CUDA without attention dropout (flex has none), else ``"sdpa"``;
    any other backend is returned unchanged."""
    if backend != "auto":
        return backend
    return "flex" if device.type == "cuda" and not dropout else "sdpa"


def attention_groups(image_id: Tensor, region: Tensor) -> Tensor:
    """image_id [B', L] (-1 = padding), region [B', L] -> group [B', L] (-1 = padding)."""
    return torch.where(image_id >= 0, image_id * NUM_REGIONS + region, image_id)


def attention_bias(table: Tensor, pos: Tensor, group: Tensor, window: int) -> Tensor:
    """Additive attention mask with relative position bias.

    table [(2M-1)^2, nH], pos [B', L, 2], group [B', L] -> [B', nH, L, L] float,
    ``-inf`` where query and key are in different groups.

    On CPU the lookup is ``index_select``, not ``table[index]``: the B' * L * L indices repeat the
    table's (2M-1)^2 rows many times over, and the CPU backward of ``table[index]`` is an
    accumulating ``index_put_`` that, from 32768 indices (14 containers of 49) and 2 threads on,
    adds with atomics in a run-dependent order, so the table's gradient changed in its last bits
    from run to run (issue 18, item 7). ``index_select``'s CPU backward (``index_add_``) sums in a
    fixed order, and is faster. On CUDA it is the other way round (``index_add_`` uses atomics,
    ``table[index]``'s backward sorts the indices first), so CUDA keeps ``table[index]``.
    """
    index = relative_position_index(pos, pos, window)  # [B', L, L]
    if table.device.type == "cpu":
        bias = table.index_select(0, index.flatten()).view(*index.shape, table.shape[1])  # [B', L, L, nH]
    else:
        bias = table[index]  # [B', L, L, nH]
    bias = bias.permute(0, 3, 1, 2)  # [B', nH, L, L]
    allowed = (group.unsqueeze(2) == group.unsqueeze(1)).unsqueeze(1)  # [B', 1, L, L]
    return bias.masked_fill(~allowed, float("-inf"))


def packed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    table: Tensor,
    pos: Tensor,
    group: Tensor,
    window: int,
    backend: Backend = "sdpa",
    dropout: float = 0.0,
) -> Tensor:
    """Masked multi-head attention inside each container.

    q, k, v [B', nH, L, d]; table [(2M-1)^2, nH]; pos [B', L, 2] long; group [B', L] long
    -> [B', nH, L, d]. Queries are scaled by d ** -0.5.
    """
    backend = resolve_backend(backend, q.device, dropout)
    if backend == "sdpa":
        mask = attention_bias(table, pos, group, window).to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if backend == "reference":
        return reference_attention(q, k, v, table=table, pos=pos, group=group, window=window, dropout=dropout)
    if backend == "flex":
        return flex_packed_attention(
            q, k, v, table=table, pos=pos, group=group, window=window, dropout=dropout
        )
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    table: Tensor,
    pos: Tensor,
    group: Tensor,
    window: int,
    dropout: float = 0.0,
) -> Tensor:
    """The slow, obvious version of :func:`packed_attention` (same signature and result)."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # [B', nH, L, L]
    scores = scores + attention_bias(table, pos, group, window).to(q.dtype)
    probs = F.dropout(scores.softmax(dim=-1), p=dropout)
    return probs @ v


_compiled_flex = None


def flex_packed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    table: Tensor,
    pos: Tensor,
    group: Tensor,
    window: int,
    dropout: float = 0.0,
) -> Tensor:
    """:func:`packed_attention` through FlexAttention: the bias is a ``score_mod`` and the
    same-group rule a block mask, so no dense [B', nH, L, L] tensor is built. Compiled on GPU."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if dropout:
        raise ValueError("backend='flex' does not support attention dropout; use 'sdpa'")
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, table)):
        raise RuntimeError(
            "backend='flex' has no CPU backward in torch "
            f"{torch.__version__}; use backend='sdpa' to train on CPU (or run under torch.no_grad())"
        )
    M = window
    Bc, _, L, _ = q.shape
    rows, cols = pos[..., 0], pos[..., 1]

    def score_mod(score, b, h, qi, ki):
        dr = (rows[b, qi] - rows[b, ki]).clamp(-(M - 1), M - 1) + (M - 1)
        dc = (cols[b, qi] - cols[b, ki]).clamp(-(M - 1), M - 1) + (M - 1)
        return score + table[dr * (2 * M - 1) + dc, h]

    def mask_mod(b, h, qi, ki):
        return group[b, qi] == group[b, ki]

    cuda = q.device.type == "cuda"
    # one block mask per call (one SPA block): container blocks whose tokens share no group are skipped
    block_mask = create_block_mask(mask_mod, Bc, None, L, L, device=q.device, _compile=cuda)
    global _compiled_flex
    if cuda:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=True)
        return _compiled_flex(q, k, v, score_mod=score_mod, block_mask=block_mask)
    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask)
