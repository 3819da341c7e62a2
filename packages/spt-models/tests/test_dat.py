"""DAT: zero offsets sample the map exactly (tokens at r = 1, 2x2 averages at r = 2), the
deformable bias reads the table at integer displacements, the deformable attention equals a
dense reference with those keys, offsets are bounded and receive gradients, the L/D stage layout,
and a forward/backward smoke test."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models.swin_transformer import SwinTransformerBlock

import spt_models.dat  # noqa: F401  (registers dat_t, dat_s)
from spt_models import create_model
from spt_models.dat import DeformableAttention, DeformableBlock, reference_points, sample_keys


def _attention(stride: int, table_grid=(6, 8), dim=32, heads=4, groups=2) -> DeformableAttention:
    torch.manual_seed(0)
    return DeformableAttention(
        dim, heads, groups=groups, stride=stride, kernel=3, offset_range=2.0, table_grid=table_grid
    ).eval()


def _zero_offsets(attn: DeformableAttention) -> None:
    with torch.no_grad():
        attn.conv_offset[-1].weight.zero_()


def _dense_attention(
    attn: DeformableAttention, x: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """x [B, H, W, C], keys [B, Ns, C] (already sampled), bias [nH, N, Ns] -> [B, H, W, C]."""
    B, H, W, C = x.shape
    nH, d = attn.num_heads, C // attn.num_heads
    q = attn.proj_q(x).view(B, H * W, nH, d).transpose(1, 2)
    k = attn.proj_k(keys).view(B, -1, nH, d).transpose(1, 2)
    v = attn.proj_v(keys).view(B, -1, nH, d).transpose(1, 2)
    probs = (q @ k.transpose(-2, -1) * d**-0.5 + bias).softmax(-1)
    return attn.proj_out((probs @ v).transpose(1, 2).reshape(B, H, W, C))


def test_zero_offsets_at_stride_1_sample_the_tokens_themselves():
    x = torch.randn(2, 5, 6, 7)
    pos = reference_points(6, 7, x.device).expand(2, -1, -1, -1)
    assert_close(sample_keys(x, pos), x, atol=1e-6, rtol=0)


def test_zero_offsets_at_stride_2_sample_2x2_averages():
    x = torch.randn(2, 5, 8, 12)
    pos = reference_points(4, 6, x.device).expand(2, -1, -1, -1)
    assert_close(sample_keys(x, pos), F.avg_pool2d(x, 2), atol=1e-6, rtol=0)


def test_zero_offsets_at_stride_3_sample_cell_centres():
    x = torch.randn(1, 3, 9, 6)
    pos = reference_points(3, 2, x.device).expand(1, -1, -1, -1)
    assert_close(sample_keys(x, pos), x[:, :, 1::3, 1::3], atol=1e-6, rtol=0)


def test_zero_offsets_stride_1_equals_dense_attention_with_indexed_bias():
    attn = _attention(stride=1, table_grid=(6, 8))
    _zero_offsets(attn)
    x = torch.randn(2, 6, 8, 32)  # the table's own grid: integer displacements hit table entries
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    dy = rows.reshape(-1, 1) - rows.reshape(1, -1)  # [N, N] query minus key
    dx = cols.reshape(-1, 1) - cols.reshape(1, -1)
    bias = attn.rpe_table[:, dy + 5, dx + 7]  # [nH, N, N] direct indexing
    with torch.no_grad():
        out, pos = attn(x)
        want = _dense_attention(attn, x, x.reshape(2, 48, 32), bias)
    assert_close(pos[:, 0], reference_points(6, 8, x.device).expand(2, -1, -1, -1))
    assert_close(out, want, atol=1e-5, rtol=0)


def test_zero_offsets_stride_2_attends_to_pooled_keys():
    attn = _attention(stride=2)
    _zero_offsets(attn)
    with torch.no_grad():
        attn.rpe_table.zero_()
    x = torch.randn(2, 8, 10, 32)
    pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)  # [B, 20, C]
    with torch.no_grad():
        out, pos = attn(x)
        want = _dense_attention(attn, x, pooled, torch.zeros(1, 80, 20))
    assert pos.shape == (2, 2, 4, 5, 2)
    assert_close(out, want, atol=1e-5, rtol=0)


def test_offsets_are_bounded_by_the_range_factor_and_receive_gradients():
    attn = _attention(stride=2).train()
    with torch.no_grad():
        attn.conv_offset[-1].weight.mul_(100)  # saturate the tanh
    x = torch.randn(2, 8, 10, 32, requires_grad=True)
    out, pos = attn(x)
    offset = pos - reference_points(4, 5, x.device)
    limit = torch.tensor([2.0 / 4, 2.0 / 5])
    assert (offset.abs() <= limit + 1e-6).all() and (offset.abs() > 0.5 * limit).any()
    with torch.no_grad():
        attn.conv_offset[-1].weight.div_(100)
    out, _ = attn(x)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in attn.conv_offset.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert attn.rpe_table.grad.abs().sum() > 0


def test_stages_3_and_4_alternate_local_and_deformable_blocks():
    model = create_model("dat_t")
    for i, depth in ((5, 6), (7, 2)):
        kinds = ["D" if isinstance(b, DeformableBlock) else "L" for b in model.features[i]]
        assert kinds == ["L", "D"] * (depth // 2)
        assert all(
            b.attn.shift_size == [0, 0] for b in model.features[i] if isinstance(b, SwinTransformerBlock)
        )
    shifts = [b.attn.shift_size for b in model.features[3]]
    assert shifts == [[0, 0], [3, 3]]  # stages 1-2: Swin
    d3, d4 = model.features[5][1].attn, model.features[7][1].attn
    assert (d3.groups, d4.groups, d3.rpe_table.shape[1:], d4.rpe_table.shape[1:]) == (
        3,
        6,
        (27, 27),
        (13, 13),
    )


@pytest.mark.slow
def test_dat_s_has_eighteen_alternating_stage3_blocks_and_runs():
    model = create_model("dat_s").eval()
    kinds = ["D" if isinstance(b, DeformableBlock) else "L" for b in model.features[5]]
    assert kinds == ["L", "D"] * 9
    with torch.no_grad():
        maps, _ = model(torch.randn(1, 3, 224, 224))
    assert maps["stage4"].shape == (1, 7, 7, 768)


@pytest.mark.slow
def test_dat_t_costs_about_five_percent_more_than_swin_t_at_1280x800():
    """Paper Table 1: DAT-T 101 G vs Swin-T 96 G backbone MACs (+5.2 %)."""
    from spt_models import count_macs

    x = torch.randn(1, 3, 800, 1280)
    swin, dat = count_macs(create_model("swin_t"), x), count_macs(create_model("dat_t"), x)
    assert 1.03 < dat / swin < 1.08
