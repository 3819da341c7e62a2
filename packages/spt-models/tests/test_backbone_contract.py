"""The backbone contract (spt_models.backbone): one forward signature, fresh keys, a given selection
asked through ``needs_keep`` / ``keep_from_labels`` (not the model's type), and the ``multiscale``
capability that sets ``vit_s16`` apart."""

import inspect

import pytest
import torch
from torch import Tensor

from spt_models import Backbone, create_model, list_models, list_multiscale_models
from spt_models.dat import DATBackbone
from spt_models.detection.fpn import BackboneWithFPN
from spt_models.masks import fit_grid, token_grid
from spt_models.swin import SwinBackbone

MULTI_SCALE = [n for n in list_models() if n != "vit_s16"]
TINY_SPT = {"embed_dim": 32, "depths": (1, 1, 2, 2), "heads": (1, 2, 4, 8), "extra_blocks": 0}


def meta_model(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name)


def test_vit_s16_is_the_one_single_scale_model():
    models = {name: meta_model(name) for name in list_models()}
    assert [name for name, model in models.items() if not model.multiscale] == ["vit_s16"]
    assert all(isinstance(model, Backbone) == model.multiscale for model in models.values())
    assert list_multiscale_models() == [name for name in list_models() if name != "vit_s16"]


@pytest.mark.parametrize("name", MULTI_SCALE)
def test_every_backbone_keeps_the_contract(name):
    model = meta_model(name)
    assert list(inspect.signature(model.forward).parameters) == ["x", "valid", "generator", "keep"]
    fresh = model.fresh_keys()
    assert set(fresh) <= set(model.state_dict())
    assert bool(fresh) == name.startswith(
        ("spt", "dynamicswin", "dat")
    )  # gates, extra blocks, predictors, offsets
    assert model.needs_keep == (name == "spt_t_oracle")


def test_dense_models_share_the_base_forward():
    assert SwinBackbone.forward is DATBackbone.forward is Backbone.forward


def test_keep_from_labels_fits_the_labels_to_each_spa_grid():
    torch.manual_seed(0)
    oracle = create_model("spt_t_oracle", **TINY_SPT).eval()
    g = torch.Generator().manual_seed(0)
    labels = {s: torch.rand(2, 100 // s + 1, 130 // s + 1, generator=g) < 0.5 for s in (8, 16, 32)}
    keep = oracle.keep_from_labels(labels, 100, 130)
    assert sorted(keep) == [16, 32]
    for s, mask in keep.items():
        h, w = token_grid(100, 130, s)  # 7x8 at 16, 4x4 at 32: the labels are cropped
        assert torch.equal(mask, labels[s][:, :h, :w])
    with torch.no_grad():
        _, info = oracle(torch.randn(2, 3, 100, 130), keep=keep)
    assert all(torch.equal(k, keep[s]) for k, s in zip(info.keep, info.strides))
    with pytest.raises(ValueError) as err:
        oracle.keep_from_labels({16: labels[16]}, 100, 130)
    assert str(err.value) == "selection='given' needs selection labels at strides [16, 32], got strides [16]"
    gated = create_model("spt_t", **TINY_SPT)
    assert not gated.needs_keep and gated.keep_from_labels(labels, 100, 130) is None
    gated.selection = "given"  # as the profiler switches it to fixed-ratio masks
    assert gated.needs_keep


class RecordingSwin(SwinBackbone):
    """A Swin that records the ``keep`` its forward is given."""

    def forward(self, x, valid=None, generator=None, keep=None):
        self.received = keep
        return super().forward(x, valid, generator, keep)


class GivenSwin(RecordingSwin):
    """Not an SPT, yet it asks for a given selection at stride 32."""

    @property
    def needs_keep(self) -> bool:
        return True

    def keep_from_labels(self, labels: dict[int, Tensor], height: int, width: int) -> dict[int, Tensor]:
        return {32: fit_grid(labels[32], token_grid(height, width, 32))}


def test_fpn_asks_the_contract_not_the_type():
    tiny = {"embed_dim": 16, "depths": (1, 1, 1, 1), "heads": (1, 1, 1, 1)}
    x = torch.randn(1, 3, 64, 96)
    labels = {32: torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(1)) < 0.5}
    given = BackboneWithFPN(GivenSwin(**tiny), 8).eval()
    with pytest.raises(ValueError) as err:
        given(x)
    assert str(err.value) == "GivenSwin needs the targets' 'select' labels (a given selection), in eval too"
    with torch.no_grad():
        given(x, select=labels)
    assert torch.equal(given.body.received[32], labels[32][:, :2, :3])
    plain = BackboneWithFPN(RecordingSwin(**tiny), 8).eval()
    with torch.no_grad():
        features, aux = plain(x, select=labels)
    assert plain.body.received is None and aux is None
    assert [tuple(f.shape[2:]) for f in features.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
