"""The closed forms count exactly what the modules run (FlopCounterMode counts 2 FLOPs per MAC)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from spa_core import (
    SPABlock,
    msa_macs,
    spa_block_macs,
    spa_macs_paper,
    swin_block_macs,
    wmsa_macs,
)


def counted_macs(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("mlp,gate", [("all", "selected"), ("selected", "selected"), ("all", "all")])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 1.0])
def test_spa_block_macs_equal_flop_counter(backend, ratio, mlp, gate):
    B, H, W, C, M = 2, 10, 17, 64, 7
    block = SPABlock(C, 4, M, shift=True, backend=backend, mlp=mlp, gate=gate).eval()
    x = torch.randn(B, H, W, C)
    keep = torch.rand(B, H, W, generator=torch.Generator().manual_seed(0)) < ratio
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        macs = counted_macs(lambda: block(x, keep=keep))
        num_containers = block(x, keep=keep)[1].num_containers
    assert num_containers == -(-int(keep.sum()) // (M * M))
    assert macs == spa_block_macs(B, H, W, C, M, num_containers, mlp=mlp, num_selected=int(keep.sum()))


def test_spa_block_macs_of_the_two_readings():
    B, H, W, C, M, T = 2, 50, 80, 384, 7, 2000
    containers = -(-T // 49)
    full = spa_block_macs(B, H, W, C, M, containers)
    sparse = spa_block_macs(B, H, W, C, M, containers, mlp="selected", num_selected=T)
    assert full - sparse == 2 * (B * H * W - T) * C * 4 * C
    with pytest.raises(ValueError, match="mlp='selected' needs num_selected"):
        spa_block_macs(B, H, W, C, M, containers, mlp="selected")
    with pytest.raises(ValueError, match="mlp must be 'all' or 'selected', got 'none'"):
        spa_block_macs(B, H, W, C, M, containers, mlp="none")


def test_swin_block_macs_equal_flop_counter_on_torchvision():
    tv = pytest.importorskip("torchvision.models.swin_transformer")
    B, H, W, C, M = 2, 10, 17, 64, 7
    block = tv.SwinTransformerBlock(C, 4, window_size=[M, M], shift_size=[3, 3]).eval()
    with torch.no_grad():
        macs = counted_macs(lambda: block(torch.randn(B, H, W, C)))
    assert macs == swin_block_macs(B, H, W, C, M)


def test_paper_formulas_relate_as_the_paper_says():
    B, N, C, M = 2, 4000, 384, 7
    assert msa_macs(B, N, C) - wmsa_macs(B, N, C, M) == B * 2 * N * C * (N - M * M)  # eq. 7 vs eq. 8
    # every token selected, N a multiple of L: eq. 9 differs from eq. 8 only by the gate (N C)
    assert spa_macs_paper(B, N, C, 49, B * N // 49 + 1) > wmsa_macs(B, N, C, M)
    n = 49 * 80
    assert spa_macs_paper(B, n, C, 49, B * n // 49) - wmsa_macs(B, n, C, M) == B * n * C
