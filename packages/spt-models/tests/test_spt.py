"""SPT: reduces to Swin with everything selected; layout, stochastic depth, selection switch, SelectionInfo."""

import pytest
import torch
from torch.testing import assert_close

from spa_core import SPABlock
from spt_models import create_model, load_swin_weights, random_stage_keep


def test_spt_t12_with_open_gates_equals_swin_t(tv_swin_t, torchvision_stages, saturate_gates):
    """Swin-T weights, every gate saturated (sigmoid == 1), every token selected -> Swin-T's maps.
    224x224 keeps stages 3-4 at window multiples (14x14, 7x7); see spt.py for why others differ."""
    model = create_model("spt_t12").eval()
    report = load_swin_weights(model, tv_swin_t.state_dict())
    assert not [k for k in report.fresh if ".gate." not in k and not k.startswith("gate")]
    assert saturate_gates(model) == 1 + 6 + 2
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        maps, info = model(x)
        ref = torchvision_stages(tv_swin_t, x)
    assert all(bool(k.all()) for k in info.keep)
    for (key, got), want in zip(maps.items(), ref):
        assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
    assert [float(r.min()) for r in info.ratio.values()] == [1.0, 1.0]


def test_spt_t12_differs_from_swin_when_gates_scale_features(tv_swin_t, torchvision_stages, saturate_gates):
    """The equivalence above is not vacuous: scores of 0 (sigmoid 0.5) in block 0 change stage 3."""
    model = create_model("spt_t12").eval()
    load_swin_weights(model, tv_swin_t.state_dict())
    saturate_gates(model)
    with torch.no_grad():
        model.gate.proj.bias.zero_()  # s0 = 0, so block 0's score max(0, maxpool(s0)) is 0
        model.features[5][0].gate.proj.bias.zero_()
        x = torch.randn(1, 3, 224, 224)
        maps, _ = model(x)
        ref = torchvision_stages(tv_swin_t, x)
    assert_close(maps["stage2"], ref[1], atol=1e-5, rtol=0)
    assert (maps["stage3"] - ref[2]).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("name", "stage3", "dim"), [("spt_t", 10, 96), ("spt_t12", 6, 96), ("spt_s", 22, 96), ("spt_b", 22, 128)]
)
def test_variants_layout(name, stage3, dim):
    model = create_model(name)
    blocks3, blocks4 = model.features[5], model.features[7]
    assert len(blocks3) == stage3 and len(blocks4) == 2
    assert all(isinstance(b, SPABlock) for b in [*blocks3, *blocks4])
    assert [b.shift for b in blocks3] == [0, 3] * (stage3 // 2)
    assert blocks3[0].attn.qkv.in_features == 4 * dim and blocks4[0].attn.qkv.in_features == 8 * dim
    swin = [b.stochastic_depth.p for i in (1, 3) for b in model.features[i]]
    rates = swin + [b.drop_path_rate for b in [*blocks3, *blocks4]]
    total = len(rates)
    assert rates == pytest.approx([rates[-1] * i / (total - 1) for i in range(total)])
    assert rates[-1] == pytest.approx({"spt_t": 0.2, "spt_t12": 0.2, "spt_s": 0.3, "spt_b": 0.5}[name])


def test_fresh_keys_are_gates_and_extra_blocks(tv_swin_t, caplog):
    model = create_model("spt_t")
    with caplog.at_level("INFO", logger="spt_models.weights"):
        report = load_swin_weights(model, tv_swin_t.state_dict())
    extra = {k for k in model.state_dict() if k.startswith("features.5.") and int(k.split(".")[2]) >= 6}
    assert {k.split(".")[2] for k in extra} == {"6", "7", "8", "9"}
    gates = {k for k in model.state_dict() if ".gate.proj." in k or k.startswith(("gate.", "gate_norm."))}
    assert len(gates) == 2 * (1 + 1 + 10 + 2)
    assert set(report.fresh) == extra | gates
    assert "features.5.0.attn.relative_position_index" in report.ignored and "head.weight" in report.ignored
    assert "stay freshly initialised" in caplog.text and "features.5.9.mlp.0.weight" in caplog.text
    # loaded blocks really are torchvision's
    assert_close(
        model.features[5][5].attn.qkv.weight, tv_swin_t.features[5][5].attn.qkv.weight, rtol=0, atol=0
    )


def test_given_selection_is_used_and_ratio_reported():
    torch.manual_seed(0)
    model = create_model("spt_t12", selection="given").eval()
    keep = random_stage_keep(2, 256, 320, 0.25, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, 256, 320), keep=keep)
    for mask, stride in zip(info.keep, info.strides):
        assert torch.equal(mask, keep[stride])
    assert info.strides == [16] * 6 + [32] * 2
    for stride, ratio in info.ratio.items():
        h, w = keep[stride].shape[1:]
        assert_close(ratio, torch.full((2,), round(0.25 * h * w) / (h * w)))


def test_selection_switch_errors():
    x = torch.randn(1, 3, 64, 64)
    keep = random_stage_keep(1, 64, 64, 1.0)
    with pytest.raises(ValueError, match="selection='gate'"):
        create_model("spt_t12")(x, keep=keep)
    with pytest.raises(ValueError, match=r"needs keep masks for strides \[16, 32\], got None"):
        create_model("spt_t12", selection="given")(x)
    with pytest.raises(ValueError, match=r"keep\[32\] must be a \[1, 2, 2\] bool mask"):
        create_model("spt_t12", selection="given")(x, keep={16: keep[16], 32: keep[16]})
    with pytest.raises(ValueError, match="selection must be 'gate' or 'given', got 'oracle'"):
        create_model("spt_t12", selection="oracle")


def test_stage4_scores_take_stage3_scores():
    """Eq. 4 chain: every stage-3 block's scores are >= maxpool(s0); stage 4's >= maxpool(s1)."""
    model = create_model("spt_t12").eval()
    with torch.no_grad():
        _, info = model(torch.randn(1, 3, 224, 160))
    pool = torch.nn.functional.max_pool2d
    s0 = pool(info.score0[:, None], 2, ceil_mode=True)[:, 0]
    s1 = pool(info.logits[5][:, None], 2, ceil_mode=True)[:, 0]
    assert all(bool((lg >= s0).all()) for lg in info.logits[:6])
    assert all(bool((lg >= s1).all()) for lg in info.logits[6:])
    assert any(bool((lg == s1).any()) for lg in info.logits[6:])


def test_backend_override_reaches_every_block():
    model = create_model(
        "spt_t", backend="reference", layout="padded", threshold=0.2, keep_ratio=0.3, mlp="all", gate="all"
    )
    blocks = [*model.features[5], *model.features[7]]
    assert {b.attn.backend for b in blocks} == {"reference"}
    assert {b.mlp_mode for b in blocks} == {"all"} and {b.gate_mode for b in blocks} == {"all"}
    assert {b.mlp_mode for b in [*create_model("spt_t12", mlp="selected").features[7]]} == {"selected"}
    assert {b.layout for b in blocks} == {"padded"} and {b.threshold for b in blocks} == {0.2}
    assert {b.keep_ratio for b in blocks} == {0.3}


def test_backends_agree():
    torch.manual_seed(0)
    sdpa = create_model("spt_t12").eval()
    ref = create_model("spt_t12", backend="reference").eval()
    ref.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 3, 160, 224)
    with torch.no_grad():
        a, _ = sdpa(x)
        b, _ = ref(x)
    for key in a:
        assert_close(a[key], b[key], atol=1e-5, rtol=0)


def test_spt_t_training_is_bit_identical_with_two_threads():
    """Issue 18, item 7: two 2-step fits of the demo's SPT-T (embed 32, depths 2-2-2-2, 192x320,
    batch 4: 20 containers per stage-3 block), same seeds, 2 threads -> bit-identical weights.
    Before the CPU bias lookup became an ``index_select`` (``spa_core.attention.attention_bias``), the
    stage-3 bias tables' gradients differed in their last bits on every run, and the fits with them."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 192, 320, generator=g)
    valid = torch.tensor([[192, 320], [192, 320], [150, 320], [192, 260]])

    def fit() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("spt_t", embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), drop_path=0.1)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        noise = torch.Generator().manual_seed(2)
        for batch in x:
            maps, info = model(batch, valid=valid, generator=noise)
            loss = sum(m.square().mean() for m in maps.values()) + 1e-2 * sum(lg.sum() for lg in info.logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return {k: v.clone() for k, v in model.state_dict().items()}

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = fit(), fit()
    finally:
        torch.set_num_threads(before)
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
