"""Padding of a batch (outside ``valid``) is never selected; valid extents -> token masks."""

import pytest
import torch

from spt_models import create_model, token_grid, token_valid


@pytest.mark.parametrize(
    ("stride", "grid", "expect_rows", "expect_cols"), [(16, (16, 20), 13, 10), (32, (8, 10), 7, 5)]
)
def test_token_valid_from_extents_uses_ceil_division(stride, grid, expect_rows, expect_cols):
    valid = torch.tensor([[256, 320], [200, 150]])  # (height, width) in pixels
    mask = token_valid(valid, grid, stride)
    assert mask.shape == (2, *grid) and bool(mask[0].all())
    rows, cols = mask[1].any(1).sum().item(), mask[1].any(0).sum().item()
    assert (rows, cols) == (expect_rows, expect_cols)
    assert mask[1].sum().item() == expect_rows * expect_cols


def test_pixel_mask_gives_the_same_tokens_as_extents():
    extents = torch.tensor([[250, 330], [97, 33], [1, 1]])
    pixels = torch.zeros(3, 250, 330, dtype=torch.bool)
    for i, (h, w) in enumerate(extents.tolist()):
        pixels[i, :h, :w] = True
    for stride in (4, 8, 16, 32):
        grid = token_grid(250, 330, stride)
        assert torch.equal(token_valid(pixels, grid, stride), token_valid(extents, grid, stride)), stride


def test_token_grid_matches_the_model():
    model = create_model("swin_t", depths=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        maps, _ = model(torch.randn(1, 3, 250, 330))
    assert [tuple(v.shape[1:3]) for v in maps.values()] == [token_grid(250, 330, s) for s in (4, 8, 16, 32)]


@pytest.mark.parametrize("mode", ["train", "eval", "given"])
@pytest.mark.parametrize("as_pixels", [False, True])
def test_padding_is_never_selected(mode, as_pixels):
    torch.manual_seed(0)
    model = create_model("spt_t12", depths=(1, 1, 2, 2), selection="given" if mode == "given" else "gate")
    model.train(mode == "train")
    with torch.no_grad():  # gates fully open: the gate alone would select every token
        for block in [*model.features[5], *model.features[7]]:
            block.gate.proj.bias.fill_(10.0)
    extents = torch.tensor([[256, 320], [150, 100]])
    valid = extents
    if as_pixels:
        valid = torch.zeros(2, 256, 320, dtype=torch.bool)
        valid[0], valid[1, :150, :100] = True, True
    keep = None
    if mode == "given":
        keep = {s: torch.ones(2, *token_grid(256, 320, s), dtype=torch.bool) for s in (16, 32)}
    _, info = model(
        torch.randn(2, 3, 256, 320), valid=valid, keep=keep, generator=torch.Generator().manual_seed(0)
    )
    for mask, stride in zip(info.keep, info.strides):
        real = token_valid(extents, mask.shape[1:], stride)
        assert not bool((mask & ~real).any()), f"padding selected at stride {stride}"
        assert torch.equal(mask, real)  # open gates: every real token selected
    assert float(info.ratio[16][1]) == 1.0 and int(info.valid[16][1].sum()) == 10 * 7


def test_bad_valid_is_rejected():
    model = create_model("spt_t12", depths=(1, 1, 1, 1))
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(
        ValueError, match=r"within \[1, 64\] x \[1, 64\] pixels, got \[\[64, 64\], \[65, 10\]\]"
    ):
        model(x, valid=torch.tensor([[64, 64], [65, 10]]))
    with pytest.raises(ValueError, match="no real pixel in image"):
        model(x, valid=torch.zeros(2, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        model(x, valid=torch.ones(2, 3, dtype=torch.long))


def test_padding_scores_at_stride_8_never_reach_stage_3():
    """Image 1 is 200 px high: its last real stride-16 row (12) pools stride-8 rows 24 (real) and 25
    (padding). A padding score must not win eq. 4's max-pool into a real token."""
    torch.manual_seed(0)
    model = create_model("spt_t12", depths=(1, 1, 1, 1)).eval()
    real8 = token_valid(torch.tensor([[256, 320], [200, 320]]), (32, 40), 8)

    class PaddingHot(torch.nn.Module):  # s0: +30 on padding, -30 on real stride-8 tokens
        def forward(self, x):
            return torch.where(real8, -30.0, 30.0)

    model.gate = PaddingHot()
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, 256, 320), valid=torch.tensor([[256, 320], [200, 320]]))
    stage3 = info.logits[0]  # [2, 16, 20]
    assert float(stage3[1, 12].max()) < 30.0  # the boundary row took no padding score
    assert float(stage3[0].max()) < 30.0
