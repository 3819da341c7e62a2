"""SPABlock.from_swin_block: a torchvision or timm Swin block, copied with the gate open, is that
block on maps that are window multiples; on other maps SPA, torchvision and timm's shifted block differ
(the README says how); what cannot be copied is refused, naming what it got."""

import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from spa_core import SPABlock, selection_loss

C, HEADS, M = 48, 3, 7
TOL = {"atol": 2e-6, "rtol": 1e-6}  # fp32 rounding: outputs reach ~7 (ulp 4.8e-7); measured <= 2.6e-6


@pytest.fixture
def tv_swin():
    return pytest.importorskip("torchvision.models.swin_transformer")


@pytest.fixture
def timm_swin():
    return pytest.importorskip("timm.models.swin_transformer")


def randomize(block: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter (LayerNorm affine, qkv bias, position bias included), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return block.eval()


def tv_block(tv_swin, shift: bool, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    block = tv_swin.SwinTransformerBlock(
        C, HEADS, window_size=[M, M], shift_size=[M // 2 * shift] * 2, **kwargs
    )
    return randomize(block)


def timm_block(
    timm_swin, shift: bool, resolution: tuple[int, int], like: nn.Module | None = None
) -> nn.Module:
    """timm's block for a ``resolution`` map (its shift mask is made for it), with ``like``'s weights
    (a torchvision block: timm names the MLP's linears fc1 / fc2) or random ones."""
    torch.manual_seed(0)
    block = timm_swin.SwinTransformerBlock(
        C, input_resolution=resolution, num_heads=HEADS, window_size=M, shift_size=M // 2 * shift
    )
    if like is None:
        return randomize(block)
    renames = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}
    state = {
        next((key.replace(a, b) for a, b in renames.items() if key.startswith(a)), key): value
        for key, value in like.state_dict().items()
        if not key.endswith("relative_position_index")
    }
    block.load_state_dict(state)
    return block.eval()


def run(spa: SPABlock, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, sel = spa(x)
    assert bool(sel.keep.all()) and bool((torch.sigmoid(sel.logits) == 1).all())  # the gate is open
    return out


@pytest.mark.parametrize("shift", [False, True], ids=["plain", "shifted"])
@pytest.mark.parametrize("hw", [(14, 21), (7, 21)])  # 7 x 21: no shift along the side of one window
def test_copy_of_torchvision_block_is_that_block(tv_swin, shift, hw):
    swin = tv_block(tv_swin, shift)
    spa = SPABlock.from_swin_block(swin)
    assert not spa.training and spa.shift == (M // 2 if shift else 0)
    x = torch.randn(2, *hw, C, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(run(spa, x), swin(x), **TOL)


@pytest.mark.parametrize("shift", [False, True], ids=["plain", "shifted"])
@pytest.mark.parametrize("hw", [(14, 21), (7, 21)])  # 7 x 21: timm stores shift (0, 3)
def test_copy_of_timm_block_is_that_block(timm_swin, shift, hw):
    swin = timm_block(timm_swin, shift, hw)
    spa = SPABlock.from_swin_block(swin)
    x = torch.randn(2, *hw, C, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(run(spa, x), swin(x), **TOL)


@pytest.mark.parametrize("shift", [False, True], ids=["plain", "shifted"])
def test_maps_that_are_not_window_multiples_differ_as_the_readme_says(tv_swin, timm_swin, shift):
    """One set of weights in torchvision, timm and SPA. 14 x 21: all three agree. 13 x 20: torchvision
    and timm pad with zeros that real tokens attend, SPA attends real tokens only, so SPA differs from
    both; timm's plain block is torchvision's, its shifted one is not (timm rolls, then pads)."""
    swin = tv_block(tv_swin, shift)
    spa = SPABlock.from_swin_block(swin)
    g = torch.Generator().manual_seed(2)
    for hw in [(14, 21), (13, 20)]:
        x = torch.randn(2, *hw, C, generator=g)
        with torch.no_grad():
            tv, timm, ours = swin(x), timm_block(timm_swin, shift, hw, like=swin)(x), run(spa, x)
        if hw == (14, 21):
            assert_close(ours, tv, **TOL)
            assert_close(ours, timm, **TOL)
        else:
            assert (ours - tv).abs().max() > 1e-2 and (ours - timm).abs().max() > 1e-2
            assert ((tv - timm).abs().max() > 1e-2) == shift


def test_copies_dropouts_and_stochastic_depth_and_takes_spa_options(tv_swin, timm_swin):
    tv = tv_swin.SwinTransformerBlock(
        C, HEADS, [M, M], [3, 3], dropout=0.1, attention_dropout=0.2, stochastic_depth_prob=0.3
    )
    timm = timm_swin.SwinTransformerBlock(
        C, (14, 21), HEADS, window_size=M, proj_drop=0.1, attn_drop=0.2, drop_path=0.3
    )
    for swin in (tv, timm):
        spa = SPABlock.from_swin_block(
            swin, threshold=0.2, layout="padded", mlp="selected", backend="reference"
        )
        assert spa.training and spa.drop_path_rate == 0.3
        assert (spa.attn.dropout, spa.attn.attention_dropout, spa.mlp[2].p, spa.mlp[4].p) == (
            0.1,
            0.2,
            0.1,
            0.1,
        )
        assert (spa.threshold, spa.layout, spa.mlp_mode, spa.attn.backend) == (
            0.2,
            "padded",
            "selected",
            "reference",
        )
    with pytest.raises(ValueError, match=re.escape("from_swin_block takes ['window_size'] from the block")):
        SPABlock.from_swin_block(tv, window_size=4)


def test_open_gate_is_trained_by_the_selection_loss(tv_swin):
    """At logit 20 the sigmoid's gradient vanishes, but eq. 10 (BCE on the logits) still moves the gate."""
    spa = SPABlock.from_swin_block(tv_block(tv_swin, True)).train()
    x = torch.randn(2, 14, 21, C)
    _, sel = spa(x, generator=torch.Generator().manual_seed(0))
    assert bool(sel.keep.all())
    selection_loss([sel.logits], [torch.zeros_like(sel.keep)]).backward()
    assert spa.gate.proj.bias.grad.item() == pytest.approx(1.0)  # d BCE(20, 0) / d logit = sigmoid(20)


V1_ONLY = "from_swin_block copies Swin V1 blocks only, got a Swin V2 block {} (cosine attention, continuous position bias, post-norm)"
MLPS = "mlp must be torchvision's MLP (Linear, GELU, Dropout, Linear, Dropout) or timm's Mlp (fc1, act, drop1, norm=Identity, fc2, drop2), got"
TV = "torchvision.models.swin_transformer.SwinTransformerBlock"


def test_refuses_swin_v2_naming_the_block(tv_swin):
    timm_v2 = pytest.importorskip("timm.models.swin_transformer_v2")
    blocks = {
        "torchvision.models.swin_transformer.SwinTransformerBlockV2": tv_swin.SwinTransformerBlockV2(
            C, HEADS, [M, M], [0, 0]
        ),
        "timm.models.swin_transformer_v2.SwinTransformerV2Block": timm_v2.SwinTransformerV2Block(
            C, (14, 21), HEADS
        ),
    }
    for name, block in blocks.items():
        with pytest.raises(ValueError, match=re.escape(V1_ONLY.format(name))):
            SPABlock.from_swin_block(block)


def test_refuses_blocks_it_cannot_copy(tv_swin, timm_swin):
    from timm.layers import GluMlp

    def tv(window=(M, M), shift=(0, 0), mlp=None, act=None):
        block = tv_swin.SwinTransformerBlock(C, HEADS, list(window), list(shift))
        if mlp is not None:
            block.mlp = mlp
        if act is not None:
            block.mlp[1] = act
        return block

    glu = timm_swin.SwinTransformerBlock(C, (14, 21), HEADS)
    glu.mlp = GluMlp(C, 4 * C, act_layer=nn.GELU)
    cases = [
        (tv(window=(7, 5)), f"{TV}: window_size must be square, got [7, 5]"),
        (
            tv(shift=(2, 2)),
            f"{TV}: shift_size must be [0, 0] or [3, 3] (SPA shifts by window_size // 2 = 3, "
            "not along a side that fits in one window), got [2, 2]",
        ),
        (
            tv(mlp=nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))),
            f"{TV}: {MLPS} Sequential of ['0: Linear', '1: GELU', '2: Linear']",
        ),
        (
            glu,
            "timm.models.swin_transformer.SwinTransformerBlock: mlp must map 48 -> hidden -> 48 channels, "
            "got 48->192 and 96->48",
        ),
        (
            tv(act=nn.GELU(approximate="tanh")),
            f"{TV}: the mlp activation must be GELU (erf form, as SPABlock's), got GELU(approximate='tanh')",
        ),
    ]
    for block, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            SPABlock.from_swin_block(block)


def test_refuses_a_module_that_is_no_swin_block():
    message = (
        "torch.nn.modules.linear.Linear is not a Swin block: it has no norm1, norm2, mlp, attn.qkv, "
        "attn.proj, attn.relative_position_bias_table, attn.num_heads"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        SPABlock.from_swin_block(nn.Linear(4, 4))
