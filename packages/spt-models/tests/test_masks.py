"""Random fixed-ratio keep masks and token grids."""

import pytest
import torch

from spt_models import random_keep, random_stage_keep, token_grid


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_random_keep_has_exactly_the_ratio_per_image(ratio):
    keep = random_keep(3, (25, 40), ratio, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (3, 25, 40) and keep.dtype == torch.bool
    assert keep.flatten(1).sum(1).tolist() == [round(ratio * 1000)] * 3


def test_random_keep_is_seeded_and_differs_between_images():
    a = random_keep(2, (10, 10), 0.3, generator=torch.Generator().manual_seed(5))
    b = random_keep(2, (10, 10), 0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\], got 1.5"):
        random_keep(1, (2, 2), 1.5)


def test_stage_keep_follows_the_token_grid():
    keep = random_stage_keep(1, 800, 1280, 0.25)
    assert {s: tuple(m.shape) for s, m in keep.items()} == {16: (1, 50, 80), 32: (1, 25, 40)}
    assert token_grid(250, 330, 4) == (62, 82) and token_grid(250, 330, 32) == (8, 11)
    with pytest.raises(ValueError, match="stride must be patch_size"):
        token_grid(64, 64, 12)
