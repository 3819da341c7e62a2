"""SPTConfig.spa_stages (paper Table 6): SPA in stage 4 only, 3-4 (default), 2-4 or 1-4. Layout, s0's
stride, eq. 4's chain, the selection loss at every stride, empty selections, detectors, the default
unchanged, Swin weights, and the errors."""

import re

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.functional import max_pool2d
from torch.testing import assert_close
from torchvision.models.swin_transformer import SwinTransformerBlock

from spa_core import Gate, SPABlock
from spt_models import SPTBackbone, create_detector, create_model, load_swin_weights

TINY = {"embed_dim": 16, "depths": (1, 1, 2, 2), "heads": (1, 2, 4, 8), "extra_blocks": 0, "drop_path": 0.0}
# spa_stages -> (s0's stride, SPA strides, strides of the selection labels)
STRIDES = {
    (4,): (16, (32,), (16, 32)),
    (3, 4): (8, (16, 32), (8, 16, 32)),
    (2, 3, 4): (4, (8, 16, 32), (4, 8, 16, 32)),
    (1, 2, 3, 4): (4, (4, 8, 16, 32), (4, 8, 16, 32)),
}
SETTINGS = list(STRIDES)
H, W = 64, 96
VALID = torch.tensor([[64, 96], [40, 50]])  # image 1 is padded inside the batch


def labels(strides, h: int = H, w: int = W, batch: int = 2) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {s: torch.rand(batch, -(-h // s), -(-w // s), generator=g) < 0.3 for s in strides}


def gates(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n.startswith("gate.") or ".gate." in n}


def set_gates(model: nn.Module, bias: float) -> nn.Module:
    """Every gate (s0's too) at logit ``bias``: -40 selects nothing even with the training noise,
    +40 everything (sigmoid(40) == 1 in fp32)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Gate):
                m.proj.weight.zero_()
                m.proj.bias.fill_(bias)
    return model


@pytest.mark.parametrize("spa_stages", SETTINGS)
def test_layout_forward_backward_and_loss_reach_every_gate(spa_stages):
    """A block's gate gets a gradient only where it wins eq. 4's max over the finer scores, hence
    128x160 (stage 4: 4x5 tokens): at 64x96 the 2x3 stage-4 gates of SPA from stage 2 lose everywhere."""
    h, w, valid = 128, 160, torch.tensor([[128, 160], [100, 90]])
    torch.manual_seed(0)
    model = create_model("spt_t", spa_stages=spa_stages, **TINY).train()
    stride0, spa_strides, label_strides = STRIDES[spa_stages]
    assert (model.spa_strides, model.label_strides) == (spa_strides, label_strides)
    for i in range(4):  # features.1/3/5/7: SPA stages hold SPABlocks, the others Swin blocks
        kind = SPABlock if i + 1 in spa_stages else SwinTransformerBlock
        assert all(isinstance(b, kind) for b in model.features[2 * i + 1]), i
    maps, aux = model(torch.randn(2, 3, h, w), valid=valid, generator=torch.Generator().manual_seed(0))
    assert aux.stride0 == stride0 and aux.score0.shape == (2, h // stride0, w // stride0)
    assert list(aux.ratio) == list(spa_strides)
    assert all(r.shape == (2,) and bool(((r > 0) & (r <= 1)).all()) for r in aux.ratio.values())
    assert not any((k & ~aux.valid[s]).any() for k, s in zip(aux.keep, aux.strides))  # padding never kept
    loss_select = aux.losses(labels(label_strides, h, w))["loss_select"]
    assert torch.isfinite(loss_select)
    gate_params = gates(model)
    assert len(gate_params) == 2 * (1 + sum(len(model.features[2 * i - 1]) for i in spa_stages))
    grads = torch.autograd.grad(loss_select, list(gate_params.values()), retain_graph=True)
    assert [n for n, g in zip(gate_params, grads) if not bool(g.abs().sum() > 0)] == []  # s0's gate too
    (loss_select + sum(m.square().mean() for m in maps.values())).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


@pytest.mark.parametrize("spa_stages", SETTINGS)
def test_eq4_chains_from_s0_through_every_spa_stage(spa_stages):
    """Every block of the first SPA stage scores >= s0 (max-pooled, or as is when s0 is at its own
    stride), every later block >= the max-pooled last scores of the stage before; the bound is
    reached somewhere (eq. 4 takes effect)."""
    model = create_model("spt_t", spa_stages=spa_stages, **TINY).eval()
    with torch.no_grad():
        _, aux = model(torch.randn(1, 3, H, W))
    finer, finer_stride = aux.score0, aux.stride0
    for stride in aux.ratio:
        logits = [lg for lg, s in zip(aux.logits, aux.strides) if s == stride]
        bound = finer if finer_stride == stride else max_pool2d(finer[:, None], 2, ceil_mode=True)[:, 0]
        assert all(bool((lg >= bound).all()) for lg in logits), stride
        assert any(bool((lg == bound).any()) for lg in logits), stride
        finer, finer_stride = logits[-1], stride


@pytest.mark.parametrize("spa_stages", SETTINGS)
def test_empty_selection_is_finite_and_every_parameter_gets_a_gradient(spa_stages):
    model = set_gates(create_model("spt_t", spa_stages=spa_stages, **TINY), -40.0).train()  # select nothing
    maps, aux = model(torch.randn(2, 3, H, W), valid=VALID, generator=torch.Generator().manual_seed(0))
    assert not any(bool(k.any()) for k in aux.keep)
    assert all(bool((r == 0).all()) for r in aux.ratio.values())
    loss = aux.losses(labels(STRIDES[spa_stages][2]))["loss_select"]
    (loss + sum(m.square().mean() for m in maps.values())).backward()
    assert torch.isfinite(loss) and all(torch.isfinite(m).all() for m in maps.values())
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


@pytest.mark.parametrize("spa_stages", [(4,), (2, 3, 4)])
def test_faster_rcnn_train_step_with_labels_at_the_needed_strides(spa_stages):
    torch.manual_seed(0)
    model = create_detector(
        "spt_t",
        "faster_rcnn",
        3,
        backbone_kwargs={**TINY, "spa_stages": spa_stages},
        fpn_channels=16,
        rpn_post_nms_top_n_train=32,
        box_batch_size_per_image=16,
    ).train()
    sizes = [(96, 128), (64, 96)]  # image 1 is padded inside the batch
    images = [torch.rand(3, h, w) for h, w in sizes]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 8.0, 60.0, 50.0]]),
            "labels": torch.tensor([1]),
            "select": {s: g[0] for s, g in labels(model.backbone.body.label_strides, h, w, 1).items()},
        }
        for h, w in sizes
    ]
    losses = model(images, targets, generator=torch.Generator().manual_seed(0))
    assert "loss_select" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("spa_stages", [(3, 4), [3, 4]])
def test_explicit_3_4_is_the_default_model(spa_stages):
    """(3, 4), or [3, 4] as a YAML config gives it, builds the default model: same weights, same output."""
    out = []
    for kwargs in ({}, {"spa_stages": spa_stages}):
        torch.manual_seed(0)
        model = create_model("spt_t", **{**TINY, "extra_blocks": 2, "drop_path": 0.1}, **kwargs).train()
        x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
        maps, aux = model(x, valid=VALID, generator=torch.Generator().manual_seed(2))
        out.append((model.state_dict(), maps, aux.logits, aux.losses(labels((8, 16, 32)))["loss_select"]))
    (sd_a, maps_a, logits_a, loss_a), (sd_b, maps_b, logits_b, loss_b) = out
    assert model.spa_stages == (3, 4) and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert all(torch.equal(maps_a[k], maps_b[k]) for k in maps_a)
    assert all(torch.equal(a, b) for a, b in zip(logits_a, logits_b)) and torch.equal(loss_a, loss_b)


def test_list_from_a_config_file_is_accepted():
    assert create_model("spt_t", spa_stages=[4], **TINY).spa_stages == (4,)


@pytest.mark.parametrize(
    "bad", [(2,), (3,), (1, 2), (2, 4), (4, 3), (), (0, 1, 2, 3, 4), 4, "34", (3.0, 4.0)]
)
def test_invalid_spa_stages_raise(bad):
    message = (
        f"spa_stages must be a suffix of the stages 1-4: (4,), (3, 4), (2, 3, 4) or (1, 2, 3, 4), got {bad!r}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        create_model("spt_t", spa_stages=bad, **TINY)


def test_missing_label_stride_is_named():
    """SPA from stage 2 needs stride-4 labels (s0), which spt-data does not make by default (8, 16, 32)."""
    model = create_model("spt_t", spa_stages=(2, 3, 4), **TINY)
    _, aux = model(torch.randn(2, 3, H, W), valid=VALID)
    message = (
        "selection labels are missing for stride(s) [4]; this SPT needs strides [4, 8, 16, 32] "
        "(s0 at 4, SPA blocks at [8, 16, 32]), got strides [8, 16, 32]"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        aux.losses(labels((8, 16, 32)))


def test_given_selection_reads_keep_at_the_spa_strides():
    model = create_model("spt_t", spa_stages=(1, 2, 3, 4), selection="given", **TINY).eval()
    keep = labels((4, 8, 16, 32))
    with torch.no_grad():
        _, aux = model(torch.randn(2, 3, H, W), keep=keep)
    assert all(torch.equal(k, keep[s]) for k, s in zip(aux.keep, aux.strides))
    assert aux.strides == [4, 8, 16, 16, 32, 32]
    with pytest.raises(
        ValueError, match=re.escape("needs keep masks for strides [4, 8, 16, 32], got [16, 32]")
    ):
        model(torch.randn(2, 3, H, W), keep={16: keep[16], 32: keep[32]})


def tiny_torchvision_swin(strong_init) -> nn.Module:
    """torchvision's SwinTransformer at TINY's size with seeded O(1) weights (with the default 0.02
    init every attention branch is ~1e-4 of the residual stream and the comparison would be weak)."""
    torch.manual_seed(0)
    tv = torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1, 2, 2], num_heads=[1, 2, 4, 8], window_size=[7, 7]
    )
    return strong_init(tv).eval()


@pytest.mark.parametrize("spa_stages", SETTINGS)
def test_swin_weights_load_and_open_gates_give_swin(spa_stages, strong_init):
    """A torchvision Swin state dict loads for every setting (fresh: the gates, and the extra
    stage-3 blocks, Swin blocks when stage 3 is not an SPA stage); with the extra blocks left out,
    every gate saturated and 224x224 input (every stage a window multiple), the maps are Swin's."""
    tv = tiny_torchvision_swin(strong_init)
    extra = create_model("spt_t", spa_stages=spa_stages, **{**TINY, "extra_blocks": 2})
    report = load_swin_weights(extra, tv.state_dict())
    extra_keys = {k for k in extra.state_dict() if k.startswith(("features.5.2.", "features.5.3."))}
    gate_norm = {"gate_norm.weight", "gate_norm.bias"}  # s0's LayerNorm
    assert set(report.fresh) == extra_keys | set(gates(extra)) | gate_norm
    kind = SPABlock if 3 in spa_stages else SwinTransformerBlock
    assert isinstance(extra.features[5][3], kind)
    model = create_model("spt_t", spa_stages=spa_stages, **TINY).eval()
    load_swin_weights(model, tv.state_dict())
    set_gates(model, 40.0)
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        maps, aux = model(x)
        want = [f(x) for f in [tv.features[:2], tv.features[:4], tv.features[:6], tv.features[:8]]]
    assert all(bool(k.all()) for k in aux.keep)
    assert isinstance(model, SPTBackbone)
    for (key, got), ref in zip(maps.items(), want):
        assert_close(got, ref, atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
