import pytest
import torch
from torch.testing import assert_close

from spa_core import SPABlock


def test_flex_refuses_cpu_backward_with_a_clear_message():
    block = SPABlock(32, 2, 4, backend="flex").train()
    x = torch.randn(1, 8, 8, 32)
    with pytest.raises(
        RuntimeError, match=r"backend=.flex. has no CPU backward in torch .*; use backend=.sdpa."
    ):
        block(x, keep=torch.ones(1, 8, 8, dtype=torch.bool))


def test_flex_forward_matches_sdpa():
    torch.manual_seed(0)
    flex = SPABlock(32, 2, 4, shift=True, backend="flex").eval()
    sdpa = SPABlock(32, 2, 4, shift=True, backend="sdpa").eval()
    sdpa.load_state_dict(flex.state_dict())
    x = torch.randn(2, 8, 12, 32)
    keep = torch.rand(2, 8, 12, generator=torch.Generator().manual_seed(1)) < 0.4
    with torch.no_grad():
        assert_close(flex(x, keep=keep)[0], sdpa(x, keep=keep)[0], atol=1e-5, rtol=1e-5)
