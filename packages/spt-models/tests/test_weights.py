"""load_swin_weights: from a file, clear errors naming missing / unexpected / mismatched keys."""

import pytest
import torch
from torch.testing import assert_close

from spt_models import create_model, load_swin_weights


def test_loads_from_a_file_and_ignores_the_classifier(tmp_path, tv_swin_t, caplog):
    path = tmp_path / "swin_t.pth"
    torch.save(tv_swin_t.state_dict(), path)
    model = create_model("swin_t")
    with caplog.at_level("INFO", logger="spt_models.weights"):
        report = load_swin_weights(model, path)
    assert sorted(report.ignored) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report.fresh == []
    assert "head.weight" in caplog.text and str(path) in caplog.text
    for key, value in model.state_dict().items():
        assert_close(value, tv_swin_t.state_dict()[key], rtol=0, atol=0)


def test_wrapped_checkpoint_is_unwrapped(tmp_path, tv_swin_t):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": tv_swin_t.state_dict(), "epoch": 3}, path)
    model = create_model("swin_t")
    load_swin_weights(model, path)
    assert_close(model.features[7][1].mlp[3].weight, tv_swin_t.features[7][1].mlp[3].weight, rtol=0, atol=0)


def test_missing_keys_are_named(tmp_path, tv_swin_t):
    state = dict(tv_swin_t.state_dict())
    del state["features.5.3.attn.qkv.weight"], state["features.0.0.bias"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    model = create_model("swin_t")
    before = model.features[1][0].attn.qkv.weight.clone()
    with pytest.raises(ValueError) as err:
        load_swin_weights(model, path)
    message = str(err.value)
    assert message.startswith(f"{path}: does not fit SwinBackbone: missing keys (2): ")
    assert "features.0.0.bias" in message and "features.5.3.attn.qkv.weight" in message
    assert "unexpected" not in message
    assert torch.equal(model.features[1][0].attn.qkv.weight, before)  # untouched on error


def test_unexpected_keys_and_shapes_are_named(torchvision_swin):
    """Swin-S weights into Swin-T: stage 3 has 18 blocks there, 6 here."""
    state = torchvision_swin("swin_s").state_dict()
    with pytest.raises(ValueError, match=r"unexpected keys \(\d+\): features\.5\.6\.norm1\.weight"):
        load_swin_weights(create_model("swin_t"), state)
    state = {k: v for k, v in state.items() if not k.startswith("features.5.")}
    state = {
        **state,
        **{k: v for k, v in create_model("swin_t").state_dict().items() if k.startswith("features.5.")},
    }
    state["features.0.0.weight"] = torch.zeros(96, 3, 2, 2)
    with pytest.raises(
        ValueError,
        match=r"shape mismatches \(1\): features\.0\.0\.weight: file \(96, 3, 2, 2\) vs model \(96, 3, 4, 4\)",
    ):
        load_swin_weights(create_model("swin_t"), state)


def test_spt_rejects_a_swin_with_more_blocks_than_it_has(torchvision_swin):
    """Swin-S has 18 stage-3 blocks, SPT-T/16 has 10: blocks 10-17 would be lost."""
    with pytest.raises(ValueError, match=r"unexpected keys \(\d+\): features\.5\.10\."):
        load_swin_weights(create_model("spt_t"), torchvision_swin("swin_s").state_dict())


def test_spt_s_loads_swin_s(torchvision_swin):
    tv = torchvision_swin("swin_s")
    model = create_model("spt_s")
    report = load_swin_weights(model, tv.state_dict())
    assert {k.split(".")[2] for k in report.fresh if k.startswith("features.5.") and ".gate." not in k} == {
        "18",
        "19",
        "20",
        "21",
    }
    assert_close(
        model.features[5][17].attn.relative_position_bias_table,
        tv.features[5][17].attn.relative_position_bias_table,
    )


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pth"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match=f"{path}: expected a state dict"):
        load_swin_weights(create_model("swin_t"), path)
