"""DynamicSwin: window attention with dropped keys against torchvision and a per-query reference,
eval top-k counts and ranks, hard differentiable training masks, the keep-ratio loss, Swin
equivalence at keep ratio 1, and a forward/backward smoke test."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models.swin_transformer import SwinTransformerBlock

import spt_models.dynamicswin  # noqa: F401  (registers dynamicswin_t/s/b)
from spt_models import create_model, load_swin_weights
from spt_models.dynamicswin import DynamicSwinBlock, keep_count, keep_ratio_loss
from spt_models.window_attention import map_window_attention

SMALL = dict(depths=(1, 1, 4, 1), drop_path=0.0)  # stage 3 keeps 4 blocks: predictors before 1, 2, 3


def _reference_masked_attention(attn, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Slow, obvious version: pad, roll, partition like the Swin paper, then for every query a
    softmax over exactly its allowed keys (kept ones, padding and itself; -100 across shift regions).

    x [1, H, W, C] (LayerNorm'ed), keep [1, H, W] bool -> [1, H, W, C].
    """
    _, H, W, C = x.shape
    M, s = attn.window_size[0], attn.shift_size[0]
    Hp, Wp = -(-H // M) * M, -(-W // M) * M
    sh, sw = (0 if M >= Hp else s), (0 if M >= Wp else s)
    xp = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H)).roll((-sh, -sw), dims=(1, 2))[0]  # [Hp, Wp, C]
    kp = F.pad(keep, (0, Wp - W, 0, Hp - H), value=True).roll((-sh, -sw), dims=(1, 2))[0]  # [Hp, Wp]
    rows = torch.arange(Hp).view(-1, 1).expand(Hp, Wp)
    cols = torch.arange(Wp).view(1, -1).expand(Hp, Wp)
    region = ((rows >= Hp - M).long() + (rows >= Hp - sh).long()) * 3 * (sh > 0) + (
        (cols >= Wp - M).long() + (cols >= Wp - sw).long()
    ) * (sw > 0)
    nH, d = attn.num_heads, C // attn.num_heads
    bias = attn.get_relative_position_bias()[0]  # [nH, L, L]
    out = torch.zeros(Hp, Wp, C)
    for r0 in range(0, Hp, M):
        for c0 in range(0, Wp, M):
            win = xp[r0 : r0 + M, c0 : c0 + M].reshape(-1, C)  # [L, C]
            kw = kp[r0 : r0 + M, c0 : c0 + M].reshape(-1)
            rw = region[r0 : r0 + M, c0 : c0 + M].reshape(-1)
            q, k, v = attn.qkv(win).view(-1, 3, nH, d).unbind(1)  # each [L, nH, d]
            res = torch.zeros(M * M, nH, d)
            for i in range(M * M):
                js = [j for j in range(M * M) if kw[j] or j == i]
                logit = torch.stack([(q[i] * k[j]).sum(-1) * d**-0.5 + bias[:, i, j] for j in js])  # [J, nH]
                logit = logit + torch.tensor([-100.0 * float(rw[i] != rw[j]) for j in js]).unsqueeze(1)
                res[i] = (logit.softmax(0).unsqueeze(-1) * v[js]).sum(0)
            out[r0 : r0 + M, c0 : c0 + M] = attn.proj(res.reshape(-1, C)).view(M, M, C)
    return out.roll((sh, sw), dims=(0, 1))[:H, :W].unsqueeze(0)


def _block_pair(shift: int, dim: int = 24, heads: int = 2) -> tuple[DynamicSwinBlock, SwinTransformerBlock]:
    torch.manual_seed(0)
    dyn = DynamicSwinBlock(dim, heads, window_size=[7, 7], shift_size=[shift, shift]).eval()
    dense = SwinTransformerBlock(dim, heads, [7, 7], [shift, shift]).eval()
    dense.load_state_dict({k: v for k, v in dyn.state_dict().items() if not k.startswith("fast_mlp.")})
    return dyn, dense


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("size", [(14, 14), (10, 13), (5, 20)])
def test_window_attention_with_all_keys_equals_torchvision(shift, size):
    dyn, _ = _block_pair(shift)
    x = torch.randn(2, *size, 24)
    with torch.no_grad():
        assert_close(map_window_attention(dyn.attn, x), dyn.attn(x), atol=1e-6, rtol=0)
        everything = torch.ones(2, *size, dtype=torch.bool)
        assert_close(map_window_attention(dyn.attn, x, everything), dyn.attn(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shift", [0, 3])
def test_masked_window_attention_equals_per_query_reference(shift):
    dyn, _ = _block_pair(shift)
    x = torch.randn(1, 10, 13, 24)
    keep = torch.rand(1, 10, 13, generator=torch.Generator().manual_seed(3)) < 0.5
    with torch.no_grad():
        got = map_window_attention(dyn.attn, x, keep)
        want = _reference_masked_attention(dyn.attn, x, keep)
    assert_close(got, want, atol=1e-5, rtol=0)


def test_kept_tokens_of_fully_kept_windows_get_dense_swin_attention_and_mlp():
    dyn, dense = _block_pair(shift=0)
    x = torch.randn(2, 14, 14, 24)
    keep = torch.rand(2, 14, 14, generator=torch.Generator().manual_seed(1)) < 0.5
    keep[:, :7, :7] = True  # window 0 of each image fully kept
    with torch.no_grad():
        ours = map_window_attention(dyn.attn, dyn.norm1(x), keep)
        swin = dense.attn(dense.norm1(x))
        assert_close(ours[:, :7, :7], swin[:, :7, :7], atol=1e-6, rtol=0)
        mixed = keep.clone()
        mixed[:, :7, :7] = False  # kept tokens of windows that lost some keys
        assert not torch.allclose(ours[mixed], swin[mixed], atol=1e-4)  # the key mask is active
        out = dyn(x, keep.float(), keep)
        assert_close(out[:, :7, :7], dense(x)[:, :7, :7], atol=1e-5, rtol=0)  # full MLP where kept
        y = x + ours  # dropped tokens: fast path
        assert_close(out[~keep], (y + dyn.fast_mlp(y))[~keep], atol=1e-5, rtol=0)


def test_official_mode_attention_equals_dense_swin_for_every_token():
    dyn, dense = _block_pair(shift=3)
    dyn.mask_keys = False
    x = torch.randn(2, 14, 14, 24)
    keep = torch.rand(2, 14, 14) < 0.5
    with torch.no_grad():
        out = dyn(x, keep.float(), keep)
        ref = dense(x)  # kept tokens: the full Swin block
    assert_close(out[keep], ref[keep], atol=1e-5, rtol=0)


def test_cumulative_option_eval_keeps_the_same_count_per_image_and_the_top_scored_tokens():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL, cumulative=True).eval()
    with torch.no_grad():
        _, info = model(torch.randn(3, 3, 160, 160))  # stage 3: 10 x 10 = 100 tokens
    prev = torch.ones(3, 100, dtype=torch.bool)
    for logits, keep, ratio in zip(info.logits, info.keep, model.keep_ratio):
        keep, logits = keep.flatten(1), logits.flatten(1)
        assert keep.sum(1).tolist() == [keep_count(ratio, 100)] * 3 == [round(ratio * 100)] * 3
        assert not (keep & ~prev).any()  # cumulative: a dropped token stays dropped
        for b in range(3):
            candidates = prev[b].nonzero().flatten()
            ranked = candidates[logits[b, candidates].argsort(descending=True)]
            assert set(keep[b].nonzero().flatten().tolist()) == set(ranked[: keep[b].sum()].tolist())
        prev = keep


def test_cumulative_option_training_mask_is_hard_cumulative_and_differentiable():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL, cumulative=True).train()
    maps, info = model(torch.randn(2, 3, 160, 160), generator=torch.Generator().manual_seed(0))
    for i, (policy, keep) in enumerate(zip(info.policy, info.keep)):
        assert torch.equal(policy, keep.float())  # hard: exactly 0 or 1
        assert policy.requires_grad
        if i:
            assert not (keep & ~info.keep[i - 1]).any()
    assert 0 < info.keep[0].float().mean() < 1  # some tokens took each path
    weights = torch.randn(maps["stage3"].shape, generator=torch.Generator().manual_seed(1))
    (maps["stage3"] * weights).sum().backward()  # task gradient only, no ratio loss
    for name, p in model.predictors.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_keep_ratio_loss_is_zero_when_ratios_match_and_weighted_mse_otherwise():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL).eval()
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, 160, 160))  # 100 tokens: 70, 50, 30 kept exactly
    assert info.ratio_loss.item() == 0.0
    policy = [torch.ones(2, 4, 4), torch.zeros(2, 4, 4)]
    loss = keep_ratio_loss(policy, (0.5, 0.25), weight=10.0, valid=torch.ones(2, 4, 4, dtype=torch.bool))
    assert loss.item() == pytest.approx(10.0 * (0.25 + 0.0625) / 2)


def test_keep_ratio_loss_trains_the_predictors():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL).train()
    _, info = model(torch.randn(2, 3, 160, 160), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(info.ratio_loss) and info.ratio_loss > 0
    info.ratio_loss.backward()
    grads = [p.grad for p in model.predictors.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def official_stage3(model, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The official dyswin algorithm in eval, written out by hand on our modules: every predictor
    ranks **all** tokens and keeps int(N * ratio); attention is dense (torchvision's block
    attention); kept tokens get the MLP, the others the fast path. x: stage-3 input [B, h, w, C]."""
    B, h, w, _ = x.shape
    keeps, keep = [], None
    for j, block in enumerate(model.features[5]):
        if j in model.pruning_loc:
            i = model.pruning_loc.index(j)
            score = model.predictors[i](x, torch.ones(B, h, w, dtype=torch.bool)).flatten(1)  # [B, N]
            top = score.argsort(dim=1, descending=True)[:, : int(h * w * model.keep_ratio[i])]
            keep = torch.zeros(B, h * w, dtype=torch.bool).scatter_(1, top, True).view(B, h, w)
            keeps.append(keep)
        if keep is None:
            x = block(x)
            continue
        x = x + block.attn(block.norm1(x))  # dense window attention, no key mask
        x = x + torch.where(keep.unsqueeze(-1), block.mlp(block.norm2(x)), block.fast_mlp(x))
    return x, keeps


def test_default_is_the_official_algorithm_redeciding_over_all_tokens():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL).eval()
    assert not model.cumulative and not model.features[5][1].mask_keys
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        maps, info = model(x)
        stage3_input = model.features[4](maps["stage2"])
        want, keeps = official_stage3(model, stage3_input)
    assert_close(maps["stage3"], want, atol=1e-5, rtol=0)
    for got, ref in zip(info.keep, keeps):
        assert torch.equal(got, ref)
    assert (keeps[1] & ~keeps[0]).any()  # re-decided: a token dropped by predictor 1 is kept by 2


def test_padding_is_never_kept_and_eval_counts_follow_real_tokens():
    torch.manual_seed(0)
    model = create_model("dynamicswin_t", **SMALL)
    valid = torch.tensor([[160, 160], [96, 64]])  # image 1: 6 x 4 real stage-3 tokens of 10 x 10
    for mode in (True, False):
        with torch.no_grad():
            _, info = model.train(mode)(torch.randn(2, 3, 160, 160), valid=valid)
        for keep in info.keep:
            assert not (keep & ~info.valid).any()
        assert info.ratio[16].shape == (2,)
    assert [int(k[1].sum()) for k in info.keep] == [keep_count(r, 24) for r in model.keep_ratio]


def test_keep_ratio_one_equals_torchvision_swin(tv_swin_t, torchvision_stages):
    model = create_model("dynamicswin_t", keep_ratio=(1.0, 1.0, 1.0)).eval()
    report = load_swin_weights(model, tv_swin_t.state_dict())
    assert report.fresh and all(k.startswith("predictors.") or ".fast_mlp." in k for k in report.fresh)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps, info = model(x)
        ref = torchvision_stages(tv_swin_t, x)
    assert all(k.all() for k in info.keep)
    for got, want in zip(maps.values(), ref):
        assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dynamicswin_s", "dynamicswin_b"])
def test_small_and_base_prune_before_blocks_2_4_6(name):
    model = create_model(name).eval()
    assert model.pruning_loc == (2, 4, 6) and len(model.features[5]) == 18
    with torch.no_grad():
        maps, info = model(torch.randn(1, 3, 224, 224))  # stage 3: 14 x 14
    assert [int(k.sum()) for k in info.keep] == [keep_count(r, 196) for r in (0.7, 0.5, 0.3)]
    assert maps["stage4"].shape[-1] == model.feature_info[-1]["num_chs"]


@pytest.mark.slow
def test_training_forward_costs_about_six_percent_more_than_swin_t_and_eval_less():
    """Paper Table 1 (training-stage FLOPs): DynamicSwin-T 101 G vs Swin-T 96 G at 1280x800."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from spt_models import count_macs

    x = torch.randn(1, 3, 800, 1280)
    swin, model = count_macs(create_model("swin_t"), x), create_model("dynamicswin_t")
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.train()(x)
    assert 1.04 < counter.get_total_flops() // 2 / swin < 1.08
    assert count_macs(model, x) < 0.95 * swin  # eval: fast path for the dropped tokens


def test_bad_pruning_config_is_an_error():
    with pytest.raises(ValueError, match="keep_ratio must be non-increasing"):
        create_model("dynamicswin_t", keep_ratio=(0.5, 0.7, 0.3))
    with pytest.raises(ValueError, match=r"pruning_loc must be increasing block indices in \[0, 6\)"):
        create_model("dynamicswin_t", pruning_loc=(1, 2, 6))
