import pytest
import torch

from spa_core import pack, pack_plan, unpack, window_layout


def test_packed_layout_fills_containers_in_order_and_pads_only_the_last():
    keep = torch.zeros(3, 10, dtype=torch.bool)
    keep[0, [1, 4, 5]] = True
    keep[2, [0, 2, 3, 7, 9]] = True  # image 1 selects nothing
    x = torch.arange(30.0).view(3, 10, 1)
    tokens, plan = pack(x, keep, length=3)
    assert tokens.shape == (3, 3, 1) and plan.num_containers == 3
    assert tokens.flatten().tolist() == [1, 4, 5, 20, 22, 23, 27, 29, 0]
    assert plan.image_id.tolist() == [[0, 0, 0], [2, 2, 2], [2, 2, -1]]
    assert torch.equal(unpack(tokens, plan, 3, 10), x * keep.unsqueeze(-1))


def test_padded_layout_gives_every_image_the_batch_max():
    keep = torch.zeros(3, 10, dtype=torch.bool)
    keep[0, :4] = True
    keep[1, :1] = True
    plan = pack_plan(keep, length=3, layout="padded")
    assert plan.num_containers == 3 * 2
    assert plan.image_id.tolist() == [[0, 0, 0], [0, -1, -1], [1, -1, -1], [-1, -1, -1], [-1] * 3, [-1] * 3]
    x = torch.randn(3, 10, 4)
    tokens, plan = pack(x, keep, 3, "padded")
    assert torch.equal(unpack(tokens, plan, 3, 10), x * keep.unsqueeze(-1))


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_empty_selection_has_no_containers(layout):
    tokens, plan = pack(torch.randn(2, 5, 3), torch.zeros(2, 5, dtype=torch.bool), 4, layout)
    assert tokens.shape == (0, 4, 3) and plan.num_tokens == 0


def test_pack_rejects_bad_keep():
    with pytest.raises(ValueError, match=r"keep must be a \[B, N\] bool tensor, got \(2, 5\) torch.float32"):
        pack_plan(torch.zeros(2, 5), 4)
    with pytest.raises(ValueError, match="layout must be 'packed' or 'padded', got 'x'"):
        pack_plan(torch.zeros(2, 5, dtype=torch.bool), 4, "x")


@pytest.mark.parametrize("hw,shift", [((14, 21), 0), ((14, 21), 3), ((10, 9), 3), ((5, 20), 3), ((7, 7), 3)])
def test_window_layout_is_swins_roll_and_partition(hw, shift):
    """source[j] is the token Swin's pad -> roll -> window_partition puts at position j."""
    H, W = hw
    M = 7
    hp, wp = -(-H // M) * M, -(-W // M) * M
    ids = torch.full((hp, wp), -1)
    ids[:H, :W] = torch.arange(H * W).view(H, W)
    sh = 0 if M >= hp else shift
    sw = 0 if M >= wp else shift
    rolled = torch.roll(ids, shifts=(-sh, -sw), dims=(0, 1))
    windows = rolled.view(hp // M, M, wp // M, M).permute(0, 2, 1, 3).reshape(-1)
    layout = window_layout(H, W, M, shift, torch.device("cpu"))
    assert torch.equal(layout.source, windows)
    rows = torch.arange(hp).view(-1, 1).expand(hp, wp)
    assert torch.equal(layout.pos[:, 0], rows.reshape(hp // M, M, wp // M, M).permute(0, 2, 1, 3).reshape(-1))
    assert layout.region.unique().numel() == (1 if sh == 0 else 3) * (1 if sw == 0 else 3)
