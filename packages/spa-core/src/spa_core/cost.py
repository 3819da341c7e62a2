"""Closed-form costs, in multiply-accumulates (MACs; the paper's "FLOPs" are MACs).

Legend: B images, N tokens per image, C channels, M window side, L container length,
B' containers. Paper eqs. 7-9 are given as printed; ``spa_attention_macs`` and the block totals
count exactly what this package's modules run (``torch.utils.flop_counter.FlopCounterMode`` / 2
under the reference backend or the MATH SDPA backend; the tests hold them together). Element-wise
work (LayerNorm, softmax, GELU, the gate's sigmoid, gathers) is not counted, as in the paper.
"""

from __future__ import annotations

from .window import pad_to_multiple


def msa_macs(B: int, N: int, C: int) -> int:
    """Eq. 7: global MSA, ``B (4 N C^2 + 2 N^2 C)``."""
    return B * (4 * N * C**2 + 2 * N**2 * C)


def wmsa_macs(B: int, N: int, C: int, M: int) -> int:
    """Eq. 8: window MSA, ``B (4 N C^2 + 2 M^2 N C)``."""
    return B * (4 * N * C**2 + 2 * M**2 * N * C)


def spa_macs_paper(B: int, N: int, C: int, L: int, num_containers: int) -> int:
    """Eq. 9 as printed: ``B (N C + N C^2) + B' (3 L C^2 + 2 L^2 C)``."""
    return B * (N * C + N * C**2) + num_containers * (3 * L * C**2 + 2 * L**2 * C)


def spa_attention_macs(num_tokens: int, C: int, L: int, num_containers: int) -> int:
    """This implementation's SPA attention: the gate on every real token (``N_total C``), then QKV,
    QK^T, AV and the output projection on every container slot: ``B' (4 L C^2 + 2 L^2 C)``.
    ``num_tokens`` is B * H * W (real tokens of the batch)."""
    return num_tokens * C + num_containers * (4 * L * C**2 + 2 * L**2 * C)


def swin_attention_macs(B: int, H: int, W: int, C: int, M: int) -> int:
    """torchvision's ``shifted_window_attention``: eq. 8 over the grid padded to multiples of M."""
    return wmsa_macs(B, pad_to_multiple(H, M) * pad_to_multiple(W, M), C, M)


def mlp_macs(num_tokens: int, C: int, mlp_ratio: float = 4.0) -> int:
    """Two linear layers C -> hidden -> C on ``num_tokens`` tokens."""
    return 2 * num_tokens * C * int(C * mlp_ratio)


def spa_block_macs(
    B: int,
    H: int,
    W: int,
    C: int,
    M: int,
    num_containers: int,
    mlp_ratio: float = 4.0,
    *,
    mlp: str = "all",
    num_selected: int | None = None,
) -> int:
    """One :class:`~spa_core.block.SPABlock` forward: SPA attention + the MLP on all B * H * W tokens
    (``mlp="all"``) or on the ``num_selected`` (T) selected tokens only (``mlp="selected"``).
    The ``gate`` option adds element-wise work only and does not change the count."""
    if mlp == "all":
        mlp_tokens = B * H * W
    elif mlp == "selected":
        if num_selected is None:
            raise ValueError("mlp='selected' needs num_selected, the number of selected tokens T")
        mlp_tokens = num_selected
    else:
        raise ValueError(f"mlp must be 'all' or 'selected', got {mlp!r}")
    return spa_attention_macs(B * H * W, C, M * M, num_containers) + mlp_macs(mlp_tokens, C, mlp_ratio)


def swin_block_macs(B: int, H: int, W: int, C: int, M: int, mlp_ratio: float = 4.0) -> int:
    """One torchvision ``SwinTransformerBlock`` forward: padded W-MSA + MLP on all B * H * W tokens."""
    return swin_attention_macs(B, H, W, C, M) + mlp_macs(B * H * W, C, mlp_ratio)
