"""Every registered backbone: the one contract, forward + backward in train mode at 2x3x256x320 on CPU."""

import pytest
import torch

from spt_models import create_model
from spt_models.vit import VisionTransformer

# one model per code path (S/B variants differ in depth and width only; test_detection.py trains
# every registered backbone under Mask R-CNN)
BACKBONES = [
    "swin_t",
    "spt_t",
    "spt_t12",
    "spt_t_fixed",
    "spt_t_oracle",
    "dynamicswin_t",
    "sparsevit_t",
    "dat_t",
]
VALID = torch.tensor([[256, 320], [200, 150]])  # image 1 is padded inside the batch


def labels_for(strides) -> dict[int, torch.Tensor]:
    return {
        s: torch.rand(2, 256 // s, 320 // s, generator=torch.Generator().manual_seed(s)) < 0.3
        for s in strides
    }


def run(model: torch.nn.Module, x: torch.Tensor):
    """The contract: ``model(x, valid=..., generator=...) -> (maps, aux)`` for every backbone."""
    generator = torch.Generator().manual_seed(0)
    if model.needs_keep:
        return model(x, valid=VALID, generator=generator, keep=labels_for((16, 32)))
    return model(x, valid=VALID, generator=generator)


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    """drop_path=0 so that no residual branch is dropped for the whole (tiny) batch by chance."""
    torch.manual_seed(0)
    model = create_model(name, drop_path=0.0).train()
    x = torch.randn(2, 3, 256, 320)
    maps, aux = run(model, x)
    assert len(maps) == len(model.feature_info) == 4
    for info_i, (key, fmap) in zip(model.feature_info, maps.items()):
        stride = info_i["reduction"]
        assert key == info_i["name"]
        assert fmap.shape == (2, 256 // stride, 320 // stride, info_i["num_chs"]), key
        assert torch.isfinite(fmap).all(), key
    loss = sum(m.float().square().mean() for m in maps.values())
    if aux is not None:
        for stride, ratio in aux.ratio.items():
            assert ratio.shape == (2,) and bool(((ratio >= 0) & (ratio <= 1)).all()), stride
        losses = aux.losses(labels_for((8, 16, 32)))
        assert set(losses) <= {"loss_select", "loss_ratio"} and all(
            torch.isfinite(v) for v in losses.values()
        )
        loss = loss + sum(losses.values())
    loss.backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)}
    assert not missing, f"{name}: no gradient for {sorted(missing)[:10]}"
    nonfinite = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"{name}: non-finite gradient in {nonfinite[:10]}"


def test_vit_forward_backward_with_and_without_ground_truth_selection():
    model = create_model("vit_s16", drop_path=0.0).train()
    assert isinstance(model, VisionTransformer)
    x = torch.randn(2, 3, 256, 320)
    keep = torch.rand(2, 16, 20, generator=torch.Generator().manual_seed(0)) < 0.4
    for k in (None, keep):
        model.zero_grad()
        cls, tokens = model(x, keep=k)
        assert cls.shape == (2, 384) and tokens.shape == (2, 16, 20, 384)
        (cls.square().mean() + tokens.square().mean()).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_fixed_ratio_spt_keeps_ceil_ratio_per_image():
    model = create_model("spt_t_fixed", keep_ratio=0.3, depths=(1, 1, 2, 2), extra_blocks=0).eval()
    valid = torch.tensor([[256, 320], [200, 150]])  # image 1 is padded inside the batch
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, 256, 320), valid=valid)
    for keep, stride in zip(info.keep, info.strides):
        real = info.valid[stride].flatten(1).sum(1)
        assert keep.flatten(1).sum(1).tolist() == torch.ceil(real * 0.3).long().tolist()
        assert not (keep & ~info.valid[stride]).any()


def test_oracle_selects_exactly_the_label_positives():
    model = create_model("spt_t_oracle", depths=(1, 1, 2, 2), extra_blocks=0).eval()
    labels = {
        s: torch.rand(2, 256 // s, 320 // s, generator=torch.Generator().manual_seed(s)) < 0.3
        for s in (16, 32)
    }
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, 256, 320), keep=labels)
    assert len(info.keep) == 4
    for keep, stride in zip(info.keep, info.strides):
        assert torch.equal(keep, labels[stride])


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
