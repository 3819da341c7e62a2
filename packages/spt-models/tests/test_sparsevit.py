"""SparseViT: window scores against a pad-roll-partition reference, exactly K windows per image,
dropped windows bit-identical, kept windows equal to the dense Swin block, Swin equivalence at
keep 1, and a forward/backward smoke test."""

import pytest
import torch
from torch.testing import assert_close
from torchvision.models.swin_transformer import SwinTransformerBlock

import spt_models.sparsevit  # noqa: F401  (registers sparsevit_t/s/b)
from spt_models import create_model, load_swin_weights
from spt_models.sparsevit import num_kept, select_windows, sparse_window_block, window_scores


def _partition_ids(H: int, W: int, M: int, shift: int) -> torch.Tensor:
    """[H, W] long: the window (raster index of the padded, shifted grid) each token falls in,
    computed the Swin-paper way (pad, roll, partition)."""
    Hp, Wp = -(-H // M) * M, -(-W // M) * M
    sh, sw = (0 if M >= Hp else shift), (0 if M >= Wp else shift)
    ids = (torch.arange(Hp).view(-1, 1) // M) * (Wp // M) + torch.arange(Wp).view(1, -1) // M  # [Hp, Wp]
    return ids.roll((sh, sw), dims=(0, 1))[:H, :W]  # undo the roll: id of the window holding (h, w)


def _block(shift: int, dim: int = 24) -> SwinTransformerBlock:
    torch.manual_seed(0)
    return SwinTransformerBlock(dim, 2, [7, 7], [shift, shift]).eval()


@pytest.mark.parametrize("shift", [0, 3])
def test_window_scores_are_l2_norms_of_mean_abs_activation(shift):
    x = torch.randn(2, 10, 16, 8)
    ids = _partition_ids(10, 16, 7, shift)  # [H, W]
    magnitude = x.abs().mean(-1)  # [B, H, W]
    want = torch.stack([(magnitude[:, ids == w] ** 2).sum(-1).sqrt() for w in range(int(ids.max()) + 1)], 1)
    assert_close(window_scores(x, 7, shift), want)


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("size", [(14, 14), (10, 13)])
def test_all_windows_equal_the_torchvision_block(shift, size):
    block = _block(shift)
    x = torch.randn(2, *size, 24)
    with torch.no_grad():
        assert_close(sparse_window_block(block, x, None), block(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("ratio", [0.5, 0.2, 1.0])
def test_exactly_k_windows_kept_and_dropped_windows_bit_identical(shift, ratio):
    block = _block(shift)
    x = torch.randn(3, 14, 20, 24)  # padded 14 x 21: 2 x 3 = 6 windows
    scores = window_scores(x, 7, shift)
    windows = select_windows(scores, ratio)
    K = num_kept(ratio, 6)
    assert windows.shape == (3, K) and K == max(1, int(ratio * 6))
    assert torch.equal(windows, scores.argsort(dim=1, descending=True)[:, :K])  # the top-scored ones
    with torch.no_grad():
        out = sparse_window_block(block, x, windows)
        dense = block(x)
    ids = _partition_ids(14, 20, 7, shift)
    for b in range(3):
        kept = torch.isin(ids, windows[b])  # [H, W] tokens of kept windows
        assert torch.equal(out[b][~kept], x[b][~kept])  # dropped windows: bit-identical
        assert_close(out[b][kept], dense[b][kept], atol=1e-5, rtol=0)  # kept windows: Swin's block
        changed = {int(w) for w in ids[(out[b] != x[b]).any(-1)].unique()}
        assert changed == set(windows[b].tolist())  # exactly the K kept windows changed


def test_keep_one_equals_torchvision_swin(tv_swin_t, torchvision_stages):
    model = create_model("sparsevit_t", keep=(1.0, 1.0, 1.0, 1.0)).eval()
    assert load_swin_weights(model, tv_swin_t.state_dict()).fresh == []
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps, selection = model(x)
        ref = torchvision_stages(tv_swin_t, x)
    assert selection.windows == {}
    for got, want in zip(maps.values(), ref):
        assert_close(got, want, atol=1e-5, rtol=0)


def test_model_keeps_k_windows_per_image_and_stage_from_the_stage_input():
    torch.manual_seed(0)
    model = create_model("sparsevit_t", depths=(1, 1, 2, 2), drop_path=0.0).eval()
    x = torch.randn(2, 3, 448, 448)  # stage 3: 28 x 28 (16 windows), stage 4: 14 x 14 (4 windows)
    captured = {}
    model.features[4].register_forward_hook(lambda m, i, out: captured.setdefault("stage3_input", out))
    with torch.no_grad():
        _, selection = model(x)
    assert selection.num_windows == {("stage3", 0): 16, ("stage3", 3): 16, ("stage4", 0): 4, ("stage4", 3): 4}
    assert {k: tuple(v.shape) for k, v in selection.windows.items()} == {
        ("stage3", 0): (2, 8),
        ("stage3", 3): (2, 8),
        ("stage4", 0): (2, 2),
        ("stage4", 3): (2, 2),
    }
    want = window_scores(captured["stage3_input"], 7, 3).topk(8, dim=1).indices
    assert torch.equal(selection.windows[("stage3", 3)], want)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sparsevit_s", "sparsevit_b"])
def test_small_and_base_forward(name):
    model = create_model(name).eval()
    with torch.no_grad():
        maps, selection = model(torch.randn(1, 3, 224, 224))
    assert len(model.features[5]) == 18 and selection.windows[("stage3", 0)].shape == (1, 2)
    assert maps["stage4"].shape == (1, 7, 7, model.feature_info[-1]["num_chs"])


def test_bad_keep_is_an_error():
    with pytest.raises(ValueError, match=r"keep should hold 4 ratios in \(0, 1\]"):
        create_model("sparsevit_t", keep=(1.0, 0.5, 0.0, 0.5))


def test_window_padding_is_zero_after_norm_like_torchvision():
    """A map that is no window multiple: the kept border window equals torchvision's block."""
    block = _block(0)
    x = torch.randn(1, 9, 9, 24)  # padded 14 x 14: 4 windows, 3 of them mostly padding
    with torch.no_grad():
        out = sparse_window_block(block, x, torch.tensor([[3]]))
        ref = block(x)
    assert_close(out[0, 7:, 7:], ref[0, 7:, 7:], atol=1e-5, rtol=0)
    assert torch.equal(out[0, :7], x[0, :7])


def test_window_scores_count_real_tokens_only_and_ratio_is_per_real_token():
    from spt_models.sparsevit import window_scores

    x = torch.randn(2, 14, 14, 8) + 5.0  # large activations everywhere, padding included
    real = torch.ones(2, 14, 14, dtype=torch.bool)
    real[1, :, 7:] = False  # image 1: the right half is batch padding
    scores = window_scores(x, 7, 0, real)  # [2, 4] windows in raster order
    assert bool((scores[0] > 0).all()) and scores[1, 1] == 0 and scores[1, 3] == 0
    model = create_model("sparsevit_t", depths=(1, 1, 2, 2), keep=(1.0, 1.0, 0.5, 1.0)).eval()
    with torch.no_grad():
        _, selection = model(torch.randn(2, 3, 224, 224), valid=torch.tensor([[224, 224], [224, 112]]))
    assert set(selection.windows[("stage3", 0)][1].tolist()) <= {0, 2}  # only windows with real tokens
    # fraction of real tokens computed on, mean over both partitions: the regular one covers all of
    # image 1's real tokens with its 2 kept windows, the shifted one cannot
    assert selection.ratio[16].shape == (2,) and 0.5 < float(selection.ratio[16][1]) < 1.0
