"""VOC multi-label classifier: masked pooling, BCE, the select loss, ground-truth selection (Fig. 4)."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from spt_models import Classifier, create_classifier, create_model

TINY_SPT = {"depths": (1, 1, 2, 2), "drop_path": 0.0}


def select_labels(B: int, H: int, W: int, seed: int = 0) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: torch.rand(B, -(-H // s), -(-W // s), generator=g) < 0.3 for s in (8, 16, 32)}


def test_pooling_is_the_mean_over_real_tokens_and_loss_is_bce():
    torch.manual_seed(0)
    model = create_classifier("swin_t", 20, depths=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 3, 128, 160)
    valid = torch.tensor([[128, 160], [64, 96]])  # image 1: 2 x 3 real stage-4 tokens of 4 x 5
    labels = (torch.rand(2, 20) < 0.2).float()
    with torch.no_grad():
        logits, losses = model(x, labels=labels, valid=valid)
        maps, _ = model.backbone(x)
        pooled = torch.stack([maps["stage4"][0].mean((0, 1)), maps["stage4"][1, :2, :3].mean((0, 1))])
    assert_close(logits, model.head(model.norm(pooled)), atol=1e-5, rtol=0)
    assert_close(losses["loss_cls"], F.binary_cross_entropy_with_logits(logits, labels))
    assert set(losses) == {"loss_cls"}


def test_spt_classifier_adds_the_weighted_select_loss_and_trains_every_parameter():
    torch.manual_seed(0)
    model = create_classifier("spt_t12", 20, **TINY_SPT).train()
    x = torch.randn(2, 3, 128, 160)
    logits, losses = model(x, labels=torch.ones(2, 20), select=select_labels(2, 128, 160))
    assert set(losses) == {"loss_cls", "loss_select"} and logits.shape == (2, 20)
    sum(losses.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    _, no_labels = model(x)
    assert no_labels == {}


def test_vit_ground_truth_selection_ignores_unselected_patches():
    torch.manual_seed(0)
    model = create_classifier("vit_s16", 20, gt_select=True, depth=2).eval()
    x = torch.randn(2, 3, 128, 160)
    select = select_labels(2, 128, 160)
    select[16][:, 0, 0] = False  # patch (0, 0) is background in both images
    y = x.clone()
    y[:, :, :16, :16] += 10.0
    with torch.no_grad():
        assert_close(model(y, select=select)[0], model(x, select=select)[0], atol=1e-5, rtol=0)
        model.gt_select = False
        assert not torch.allclose(model(y)[0], model(x)[0], atol=1e-3)  # without selection it matters
    with pytest.raises(ValueError, match="gt_select=True: forward needs the selection labels"):
        model.gt_select = True
        model(x)


def test_spt_oracle_classifier_selects_exactly_the_label_positives():
    torch.manual_seed(0)
    model = create_classifier("spt_t_oracle", 20, gt_select=True, **TINY_SPT).eval()
    select = select_labels(2, 128, 160)
    seen = []
    model.backbone.register_forward_hook(lambda mod, args, out: seen.append(out[1]))
    with torch.no_grad():
        model(torch.randn(2, 3, 128, 160), select=select)
    for keep, stride in zip(seen[0].keep, seen[0].strides):
        assert torch.equal(keep, select[stride])


def test_bad_classifier_arguments():
    with pytest.raises(ValueError, match="gt_select=True needs an SPT built with selection='given'"):
        Classifier(create_model("swin_t", depths=(1, 1, 1, 1)), 20, gt_select=True)
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        create_classifier("swin_t", 0, depths=(1, 1, 1, 1))
