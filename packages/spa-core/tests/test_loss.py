"""Eq. 10: selection_loss against a hand computation; gradients reach every gate."""

import math

import pytest
import torch

from spa_core import SPABlock, selection_loss


def bce(logit: float, label: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(p) + (1.0 - label) * math.log(1.0 - p))


def test_selection_loss_equals_hand_computation():
    # block 0: 1 image 1x3, last token is padding; block 1: 2 images 1x1, no valid mask
    logits = [torch.tensor([[[0.0, 2.0, 9.0]]]), torch.tensor([[[-1.0]], [[3.0]]])]
    labels = [torch.tensor([[[True, False, True]]]), torch.tensor([[[1.0]], [[0.0]]])]
    valid = [torch.tensor([[[True, True, False]]]), None]
    expected = (bce(0.0, 1) + bce(2.0, 0)) / 2 + (bce(-1.0, 1) + bce(3.0, 0)) / 2
    loss = selection_loss(logits, labels, valid)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_block_without_real_tokens_contributes_zero_and_no_nan():
    logits = [torch.zeros(1, 2, 2, requires_grad=True)]
    loss = selection_loss(logits, [torch.ones(1, 2, 2)], [torch.zeros(1, 2, 2, dtype=torch.bool)])
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits[0].grad).all()


def test_gradient_reaches_every_gate():
    torch.manual_seed(0)
    blocks = [SPABlock(16, 2, 4, shift=i % 2 == 1).train() for i in range(3)]
    x = torch.randn(2, 8, 8, 16)
    logits = []
    for block in blocks:
        x, sel = block(x, score_up=None)
        logits.append(sel.logits)
    labels = [torch.rand(2, 8, 8) > 0.5 for _ in logits]
    selection_loss(logits, labels).backward()
    for block in blocks:
        assert block.gate.proj.weight.grad is not None and block.gate.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "logits,labels,valid,message",
    [
        (
            [torch.zeros(1, 2, 2)],
            [],
            None,
            "one labels (and valid) map per logits map, got 1 logits, 0 labels",
        ),
        ([torch.zeros(1, 2, 2)], [torch.zeros(1, 2, 3)], None, "block 0: labels (1, 2, 3)"),
        ([], [], None, "at least one block's logits"),
    ],
)
def test_bad_arguments(logits, labels, valid, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        selection_loss(logits, labels, valid)
