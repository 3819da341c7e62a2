"""A forced selection per stride (``keep_ratio={stride: ratio}``): every SPA block of a stride keeps
the ``ceil(ratio * n)`` top-scored of an image's n real tokens, and the cost depends on that count
only (packed containers: ``ceil(T / L)``), so it equals the cost of any other set of that size."""

import math

import pytest
import torch

from spa_core import mlp_macs
from spt_models import count_macs, create_model
from spt_models.masks import random_keep

TINY = {"embed_dim": 16, "depths": (1, 1, 2, 2), "heads": (1, 2, 4, 8), "window": 3, "drop_path": 0.0}
H, W = 96, 160  # stride 16: 6 x 10 = 60 tokens; stride 32: 3 x 5 = 15 tokens
GRID = {16: (6, 10), 32: (3, 5)}
DIMS = {16: 64, 32: 128}  # channels of stages 3 and 4
L = 9  # container length: window 3


def count(ratio: float, n: int) -> int:
    return math.ceil(ratio * n)


@pytest.mark.parametrize("train", [False, True])
def test_every_block_of_a_stride_keeps_its_ratio_of_top_scored_tokens(train):
    torch.manual_seed(0)
    model = create_model("spt_t12", keep_ratio={16: 0.3, 32: 0.6}, **TINY).train(train)
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, H, W), generator=torch.Generator().manual_seed(0))
    for keep, logits, stride in zip(info.keep, info.logits, info.strides):
        n = GRID[stride][0] * GRID[stride][1]
        k = count({16: 0.3, 32: 0.6}[stride], n)
        assert keep.flatten(1).sum(1).tolist() == [k, k]
        top = logits.flatten(1).topk(k, dim=1).indices  # the kept tokens are the top-scored ones
        assert keep.flatten(1).gather(1, top).all()


def test_a_real_extent_counts_only_real_tokens():
    model = create_model("spt_t12", keep_ratio={16: 0.5, 32: 0.5}, **TINY).eval()
    valid = torch.tensor([[96, 160], [64, 96]])  # the second image: 4 x 6 real tokens at stride 16
    with torch.no_grad():
        _, info = model(torch.randn(2, 3, H, W), valid=valid)
    assert info.keep[0].flatten(1).sum(1).tolist() == [30, 12]
    assert info.ratio[16].tolist() == [0.5, 0.5]


def test_bad_forced_ratios_are_refused_naming_the_strides():
    with pytest.raises(ValueError) as e:
        create_model("spt_t12", keep_ratio={16: 0.3}, **TINY)
    assert str(e.value) == "keep_ratio should name every SPA stride [16, 32] once, got strides [16]"
    with pytest.raises(ValueError) as e:
        create_model("spt_t12", keep_ratio={16: 0.3, 32: 0.3, 64: 0.3}, **TINY)
    assert str(e.value) == "keep_ratio should name every SPA stride [16, 32] once, got strides [16, 32, 64]"
    with pytest.raises(ValueError) as e:
        create_model("spt_t12", keep_ratio={16: 1.5, 32: 0.3}, **TINY)
    assert str(e.value) == "keep_ratio must be in [0, 1], got 1.5"
    # a single ratio still applies to every SPA block, as before
    model = create_model("spt_t12", keep_ratio=0.25, **TINY)
    assert {b.keep_ratio for stage in model.features[5:8:2] for b in stage} == {0.25}


@pytest.mark.parametrize("mlp", ["all", "selected"])
def test_cost_depends_on_the_count_only_and_grows_with_the_ratio(mlp):
    """MACs at a forced ratio == MACs of the same weights given any set of that many tokens (a
    seeded random set); the difference to ratio 0 is spa-core's closed form for those containers."""
    x = torch.randn(1, 3, H, W)
    torch.manual_seed(0)
    given = create_model("spt_t12", selection="given", mlp=mlp, **TINY)
    previous, base = -1, None
    for ratio in (0.0, 0.1, 0.25, 0.5, 0.8, 1.0):
        forced = create_model("spt_t12", keep_ratio={16: ratio, 32: ratio}, mlp=mlp, **TINY)
        forced.load_state_dict(given.state_dict())
        macs = count_macs(forced, x)
        k = {s: count(ratio, h * w) for s, (h, w) in GRID.items()}
        keep = {
            s: random_keep(1, GRID[s], k[s] / (h * w), generator=torch.Generator().manual_seed(s))
            for s, (h, w) in GRID.items()
        }
        assert {s: int(m.sum()) for s, m in keep.items()} == k
        assert macs == count_macs(given, x, keep=keep)
        base = macs if base is None else base
        blocks = {16: 2, 32: 2}  # depths[2] + extra_blocks, depths[3]
        delta = sum(
            blocks[s]
            * (math.ceil(k[s] / L) * (4 * L * C**2 + 2 * L**2 * C) + (mlp == "selected") * mlp_macs(k[s], C))
            for s, C in DIMS.items()
        )
        assert macs - base == delta
        assert macs > previous  # monotone in the ratio (each step adds containers here)
        previous = macs
