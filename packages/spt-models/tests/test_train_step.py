"""Every registered model: forward + backward in train mode at 2x3x256x320 on CPU."""

import pytest
import torch

from spt_models import SPTBackbone, create_model, list_models

# The Swin and SPT backbones of this module's scope (baselines have their own tests).
MODELS = ["swin_t", "swin_s", "swin_b", "spt_t", "spt_t12", "spt_s", "spt_b"]
# Parameters that legitimately get no gradient in a train-mode forward: none.
NO_GRAD_EXPECTED: dict[str, set[str]] = {name: set() for name in MODELS}


def test_every_backbone_is_registered():
    assert set(MODELS) <= set(list_models())


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    """drop_path=0 so that no residual branch is dropped for the whole (tiny) batch by chance."""
    torch.manual_seed(0)
    model = create_model(name, drop_path=0.0).train()
    x = torch.randn(2, 3, 256, 320)
    out = model(x, generator=torch.Generator().manual_seed(0)) if isinstance(model, SPTBackbone) else model(x)
    maps, info = out if isinstance(out, tuple) else (out, None)
    assert len(maps) == len(model.feature_info) == 4
    for info_i, (key, fmap) in zip(model.feature_info, maps.items()):
        stride = info_i["reduction"]
        assert key == info_i["name"]
        assert fmap.shape == (2, 256 // stride, 320 // stride, info_i["num_chs"]), key
        assert torch.isfinite(fmap).all(), key
    loss = sum(m.float().square().mean() for m in maps.values())
    if info is not None:  # the selection loss (eq. 10) reaches every gate through its logits
        loss = loss + sum(torch.sigmoid(lg).mean() for lg in [info.score0, *info.logits])
    loss.backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)}
    assert missing == NO_GRAD_EXPECTED[name], f"{name}: no gradient for {sorted(missing)[:10]}"
    nonfinite = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"{name}: non-finite gradient in {nonfinite[:10]}"


def test_gate_gets_gradient_through_the_task_loss_alone():
    """Without a selection loss the gates still learn: eq. 5 scaling + straight-through (eq. 6)."""
    torch.manual_seed(0)
    model = create_model("spt_t12", depths=(1, 1, 2, 2), drop_path=0.0).train()
    maps, _ = model(torch.randn(2, 3, 256, 320), generator=torch.Generator().manual_seed(0))
    sum(m.square().mean() for m in maps.values()).backward()
    for block in [*model.features[5], *model.features[7]]:
        assert block.gate.proj.weight.grad.abs().sum() > 0
    assert model.gate.proj.weight.grad.abs().sum() > 0  # s0 reaches the stage-3 scores through eq. 4


def test_train_mode_with_stochastic_depth_is_finite():
    torch.manual_seed(0)
    model = create_model("spt_t", depths=(1, 1, 2, 2), drop_path=0.5).train()
    maps, info = model(torch.randn(2, 3, 256, 320), generator=torch.Generator().manual_seed(0))
    sum(m.square().mean() for m in maps.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert all(float(r.min()) > 0.0 for r in info.ratio.values())
