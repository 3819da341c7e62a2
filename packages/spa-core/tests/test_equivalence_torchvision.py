"""SPA with every token selected is Swin's (shifted) window attention on the gated tokens."""

import pytest
import torch
from torch.testing import assert_close

from spa_core import SPABlock, gate_features

tv_swin = pytest.importorskip("torchvision.models.swin_transformer")


def swin_reference(block: SPABlock, x: torch.Tensor, shift: int) -> torch.Tensor:
    """The same block computed with torchvision's ``shifted_window_attention`` on gated features."""
    attn, M = block.attn, block.window_size
    xn = block.norm1(x)
    gated = gate_features(xn, block.gate(xn))
    bias = tv_swin._get_relative_position_bias(
        attn.relative_position_bias_table, _tv_index(M), [M, M]
    )  # [1, nH, L, L]
    update = tv_swin.shifted_window_attention(
        gated,
        attn.qkv.weight,
        attn.proj.weight,
        bias,
        [M, M],
        attn.num_heads,
        shift_size=[shift, shift],
        qkv_bias=attn.qkv.bias,
        proj_bias=attn.proj.bias,
        training=False,
    )
    x = x + update
    return x + block.mlp(block.norm2(x))


def _tv_index(M: int) -> torch.Tensor:
    ref = tv_swin.ShiftedWindowAttention(dim=8, window_size=[M, M], shift_size=[0, 0], num_heads=1)
    return ref.relative_position_index


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("hw", [(14, 21), (7, 7), (28, 14)])
def test_all_selected_equals_torchvision_window_attention(shift, hw):
    torch.manual_seed(0)
    block = SPABlock(48, 3, 7, shift=shift).eval()
    x = torch.randn(2, *hw, 48)
    keep = torch.ones(2, *hw, dtype=torch.bool)
    with torch.no_grad():
        out, sel = block(x, keep=keep)
        expected = swin_reference(block, x, shift=3 if shift else 0)
    assert_close(out, expected, atol=1e-5, rtol=0)
    assert sel.num_containers == 2 * hw[0] * hw[1] // 49  # containers are exactly Swin's windows


@pytest.mark.parametrize("shift", [False, True])
def test_open_gate_reduces_to_torchvision_swin_block(shift):
    """With the gate's bias large (sigmoid == 1 in fp32) and torchvision's weights loaded, an SPA
    block in eval selects everything and is torchvision's SwinTransformerBlock."""
    torch.manual_seed(1)
    ref = tv_swin.SwinTransformerBlock(96, 3, window_size=[7, 7], shift_size=[3 * shift, 3 * shift]).eval()
    block = SPABlock(96, 3, 7, shift=shift).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("relative_position_index")}
    missing, unexpected = block.load_state_dict(state, strict=False)
    assert sorted(missing) == ["gate.proj.bias", "gate.proj.weight"] and unexpected == []
    with torch.no_grad():
        block.gate.proj.weight.zero_()
        block.gate.proj.bias.fill_(40.0)
        x = torch.randn(2, 14, 28, 96)
        out, sel = block(x)
        assert bool(sel.keep.all())
        assert_close(out, ref(x), atol=1e-5, rtol=0)
