import math

import pytest
import torch
from torch.testing import assert_close

from spa_core import gate_features, multiscale_score, select_tokens, select_top_ratio


def test_straight_through_weight_is_hard_with_sigmoid_gradient():
    logits = torch.randn(4, 6, 9, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    weight, keep = select_tokens(logits, threshold=0.3, tau=0.5, training=True, generator=g)
    assert torch.equal(weight.detach(), keep.float())  # exactly 0/1 in value
    weight.sum().backward()
    # recompute the same noise: the gradient is d sigmoid((l + noise) / tau) / dl
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(0))
    u = u.clamp(torch.finfo(torch.float32).tiny, 1 - torch.finfo(torch.float32).eps)
    p = torch.sigmoid((logits.detach() + torch.log(u) - torch.log1p(-u)) / 0.5)
    assert_close(logits.grad, p * (1 - p) / 0.5)
    assert torch.equal(keep, p > 0.3)


def test_eval_selection_thresholds_the_probability_without_noise():
    logits = torch.tensor([[-5.0, -4.5, -4.6, 0.0, 3.0]])  # sigmoid(-4.6) = 0.00995, sigmoid(-4.5) = 0.011
    weight, keep = select_tokens(logits, threshold=0.01)
    assert keep.tolist() == [[False, True, False, True, True]]
    assert not weight.requires_grad


def test_padding_is_never_selected_even_with_high_scores():
    logits = torch.full((2, 3, 3), 50.0)
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    valid[0, :2, :2] = True
    for training in (False, True):
        weight, keep = select_tokens(logits, training=training, valid=valid)
        assert torch.equal(keep, valid) and torch.equal(weight.detach(), valid.float())


@pytest.mark.parametrize(
    "threshold,tau,message",
    [(0.0, 1.0, "threshold must be in \\(0, 1\\), got 0.0"), (0.5, 0.0, "tau must be > 0, got 0.0")],
)
def test_bad_selection_arguments(threshold, tau, message):
    with pytest.raises(ValueError, match=message):
        select_tokens(torch.zeros(2), threshold=threshold, tau=tau)


def test_training_noise_follows_the_logistic_law():
    """P(sigmoid(s + g) > t) = sigmoid(s - logit(t)) for logistic g: the selection rate matches."""
    logits = torch.full((200_000,), 1.0)
    _, keep = select_tokens(logits, threshold=0.5, training=True, generator=torch.Generator().manual_seed(0))
    assert abs(keep.float().mean().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.005


def test_multiscale_score_takes_the_max_of_pooled_finer_scores():
    logits = torch.zeros(1, 2, 3)
    finer = torch.full((1, 4, 5), -1.0)  # odd width: ceil-mode pooling, like patch merging's padding
    finer[0, 3, 4] = 2.0
    finer[0, 0, 0] = -0.5
    out = multiscale_score(logits, finer)
    assert out.tolist() == [[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]
    assert multiscale_score(logits, None) is logits


def test_gate_features_scale_by_sigmoid():
    x, s = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4)
    assert_close(gate_features(x, s), x * torch.sigmoid(s)[..., None])


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_top_ratio_keeps_exactly_ceil_ratio_of_real_tokens_by_score(ratio):
    logits = torch.randn(3, 7, 9, generator=torch.Generator().manual_seed(0))
    valid = torch.ones(3, 7, 9, dtype=torch.bool)
    valid[1, :, 5:] = False  # 35 real tokens
    valid[2] = False
    _, keep = select_top_ratio(logits, ratio, valid=valid)
    for b in range(3):
        n = int(valid[b].sum())
        k = math.ceil(ratio * n)
        assert int(keep[b].sum()) == k
        assert not (keep[b] & ~valid[b]).any()
        if 0 < k < n:  # every kept score beats every dropped real score
            assert logits[b][keep[b]].min() > logits[b][valid[b] & ~keep[b]].max()


def test_top_ratio_in_a_block_and_bad_ratio():
    from spa_core import SPABlock

    block = SPABlock(16, 2, 4, keep_ratio=0.3).eval()
    with torch.no_grad():
        _, sel = block(torch.randn(2, 8, 10, 16))
    assert sel.keep.flatten(1).sum(1).tolist() == [24, 24]
    with pytest.raises(ValueError, match=r"keep_ratio must be in \[0, 1\], got 1.5"):
        SPABlock(16, 2, 4, keep_ratio=1.5)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\], got -0.1"):
        select_top_ratio(torch.zeros(1, 3), -0.1)
