"""MACs (torchvision's published Swin-T figure; SPT against spa-core's closed forms), params, FPS."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spa_core import spa_block_macs, swin_block_macs
from spt_models import count_macs, count_params, create_model, measure_fps, random_stage_keep


def test_swin_t_macs_at_224_match_torchvisions_published_figure(tv_swin_t):
    """torchvision publishes 4.491 GFLOPS (its "FLOPS" are MACs) for swin_t at 224x224."""
    x = torch.randn(1, 3, 224, 224)
    macs = count_macs(create_model("swin_t"), x)
    assert macs / 1e9 == pytest.approx(4.49, rel=0.01)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tv_swin_t.features(x)
    assert macs == counter.get_total_flops() // 2  # the backbone is torchvision's `features`


def test_count_params_is_torchvision_without_the_classifier(tv_swin_t):
    classifier = sum(p.numel() for n, p in tv_swin_t.named_parameters() if n.startswith(("head.", "norm.")))
    assert count_params(create_model("swin_t")) == count_params(tv_swin_t) - classifier
    model = create_model("swin_t", depths=(1, 1, 1, 1))
    model.features[0].requires_grad_(False)
    frozen = sum(p.numel() for p in model.features[0].parameters())
    assert count_params(model, trainable_only=True) == count_params(model) - frozen


def _stage_geometry(height, width):
    """(C, h, w) of stages 3 and 4 of a Swin-T / SPT-T for an input of height x width (multiples of 32)."""
    return [(384, height // 16, width // 16), (768, height // 32, width // 32)]


@pytest.mark.parametrize("ratio,mlp", [(1.0, "all"), (0.25, "all"), (0.25, "selected")])
def test_spt_macs_follow_the_closed_forms(ratio, mlp):
    """count_macs(SPT-T/12 with fixed-ratio keep masks) == Swin-T's count with every stage-3/4 Swin
    block replaced by spa-core's SPA block formula (with the containers actually used) + the s0 gate."""
    H, W = 160, 224
    x = torch.randn(1, 3, H, W)
    keep = random_stage_keep(1, H, W, ratio, generator=torch.Generator().manual_seed(0))
    model = create_model("spt_t12", selection="given", mlp=mlp)
    macs = count_macs(model, x, keep=keep)
    with torch.no_grad():
        _, info = model.eval()(x, keep=keep)
    expected = count_macs(create_model("swin_t"), x)
    (c3, h3, w3), (c4, h4, w4) = _stage_geometry(H, W)
    for containers, stride, kept in zip(info.num_containers, info.strides, info.keep):
        c, h, w = (c3, h3, w3) if stride == 16 else (c4, h4, w4)
        spa = spa_block_macs(1, h, w, c, 7, containers, mlp=mlp, num_selected=int(kept.sum()))
        expected += spa - swin_block_macs(1, h, w, c, 7)
    expected += (H // 8) * (W // 8) * 192  # the stage-2 gate, Linear(192, 1) on every H/8 token
    assert macs == expected
    selected = round(ratio * h3 * w3)
    assert info.num_containers[0] == -(-selected // 49)


def test_count_macs_counts_cpu_sdpa_attention():
    """The sdpa backend (fused on CPU, uncounted by torch) is counted like the explicit reference."""
    x = torch.randn(1, 3, 224, 224)
    sdpa = count_macs(create_model("spt_t12"), x)
    reference = count_macs(create_model("spt_t12", backend="reference"), x)
    assert sdpa == reference


def test_count_macs_restores_the_mode():
    model = create_model("swin_t", depths=(1, 1, 1, 1)).train()
    count_macs(model, torch.randn(1, 3, 64, 64))
    assert model.training


def test_measure_fps_reports_the_median_of_repeats():
    model = create_model("swin_t", depths=(1, 1, 1, 1)).train()
    result = measure_fps(model, torch.randn(2, 3, 64, 64), warmup=1, repeats=3)
    assert len(result.times_s) == 3 and result.median_s == sorted(result.times_s)[1]
    assert result.fps == pytest.approx(2 / result.median_s)
    assert model.training
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_fps(model, torch.randn(1, 3, 64, 64), repeats=0)
