"""A pretrained start (paper: ImageNet Swin weights; demo: a Swin-T classifier trained on other
synthetic scenes): ``spt-train backbone`` writes a trained run's backbone as a torchvision-layout
state dict, and ``model.weights`` loads it into Swin, DynamicSwin and SPT, whose gates and extra
blocks start fresh."""

import logging

import pytest
import torch

from spt_train.cli import main
from spt_train.config import load_config
from spt_train.engine import build_model, fit

TINY = {"embed_dim": 16, "depths": [1, 1, 2, 2], "heads": [1, 2, 4, 8]}


@pytest.fixture
def pretrained(write_config, tmp_path):
    """A tiny Swin-T classifier trained 2 steps, and its backbone written by ``spt-train backbone``."""
    spec = {"name": "swin_t", "head": "classifier", "detector": {}, "backbone": TINY}
    path = write_config("pretrain", model=spec, epochs=1, max_steps=2)
    checkpoint = fit(load_config(path))
    out = tmp_path / "backbone.pth"
    assert main(["backbone", str(path), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return out, torch.load(checkpoint, weights_only=False)["model"]


@pytest.mark.parametrize("name", ["swin_t", "dynamicswin_t", "spt_t"])
def test_a_pretrained_backbone_lands_in_every_t_model(pretrained, write_config, name, caplog):
    out, trained = pretrained
    state = torch.load(out, weights_only=True)  # tensors only: the file a user's ImageNet weights are
    assert state and all(k.startswith("features.") for k in state)
    assert all(torch.equal(v, trained[f"backbone.{k}"]) for k, v in state.items())
    backbone = {**TINY, "pruning_loc": [1], "keep_ratio": [0.7]} if name == "dynamicswin_t" else TINY
    path = write_config(name, model={"name": name, "backbone": backbone, "weights": str(out)})
    with caplog.at_level(logging.INFO):
        model = build_model(load_config(path), 11)
    own = model.backbone.body.state_dict()
    loaded = [k for k in state if k in own]
    assert len(loaded) >= len(state) - 8  # all but Swin's relative_position_index buffers SPA lacks
    assert all(torch.equal(own[k], state[k]) for k in loaded)
    fresh = [k for k in own if k not in state]
    if name == "spt_t":  # the gates and the 4 extra stage-3 blocks (SPT-T/16) start fresh, and say so
        assert any(".gate." in k for k in fresh) and any(k.startswith("features.5.2.") for k in fresh)
        assert "keys of SPTBackbone stay freshly initialised" in caplog.text
    else:  # Swin: nothing; DynamicSwin: its score predictors and fast MLP
        assert fresh == (model.backbone.body.fresh_keys() if name == "dynamicswin_t" else [])


def test_backbone_of_a_file_that_is_not_a_checkpoint_is_named(write_config, tmp_path, capsys):
    path = write_config("run")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    assert main(["backbone", str(path), "--checkpoint", str(bad), "--out", str(tmp_path / "b.pth")]) == 2
    assert capsys.readouterr().err.startswith(f"spt-train backbone: error: {bad}: not a readable torch file")
    assert not (tmp_path / "b.pth").exists()
