"""Our Swin equals torchvision's for the same weights; feature_info and stochastic depth."""

import pytest
import torch
from torch.testing import assert_close

from spt_models import create_model, load_swin_weights


def _compare(name: str, tv_model: torch.nn.Module, size: tuple[int, int], torchvision_stages) -> None:
    model = create_model(name).eval()
    load_swin_weights(model, tv_model.state_dict())
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, aux = model(x)
        ref = torchvision_stages(tv_model, x)
    assert aux is None
    assert list(ours) == ["stage1", "stage2", "stage3", "stage4"]
    for (key, got), want, info in zip(ours.items(), ref, model.feature_info):
        assert got.shape == want.shape, key
        assert got.shape[-1] == info["num_chs"]
        assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, key=key: f"{name} {key} at {size}: {m}")


@pytest.mark.parametrize("size", [(224, 224), (250, 330)])
def test_swin_t_equals_torchvision_features(tv_swin_t, torchvision_stages, size):
    _compare("swin_t", tv_swin_t, size, torchvision_stages)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_s", "swin_b"])
def test_swin_s_b_equal_torchvision_features(torchvision_swin, torchvision_stages, name):
    _compare(name, torchvision_swin(name), (224, 224), torchvision_stages)


def test_feature_info_channels_and_strides_match_outputs():
    model = create_model("swin_t", depths=(1, 1, 1, 1)).eval()
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [
        (96, 4),
        (192, 8),
        (384, 16),
        (768, 32),
    ]
    with torch.no_grad():
        out, _ = model(torch.randn(1, 3, 128, 96))
    for info, x in zip(model.feature_info, out.values()):
        assert x.shape == (1, 128 // info["reduction"], 96 // info["reduction"], info["num_chs"])


def test_drop_path_rates_spread_linearly_like_torchvision(tv_swin_t):
    tv = tv_swin_t
    ours = create_model("swin_t")
    want = [b.stochastic_depth.p for i in (1, 3, 5, 7) for b in tv.features[i]]
    got = [b.stochastic_depth.p for i in (1, 3, 5, 7) for b in ours.features[i]]
    assert got == pytest.approx(want)
    assert got[0] == 0.0 and got[-1] == pytest.approx(0.2)


def test_state_dict_keys_are_torchvisions_features(tv_swin_t):
    ours = set(create_model("swin_t").state_dict())
    theirs = {k for k in tv_swin_t.state_dict() if k.startswith("features.")}
    assert ours == theirs
