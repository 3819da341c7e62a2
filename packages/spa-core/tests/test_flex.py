import pytest
import torch
from torch.testing import assert_close

from spa_core import SPABlock
from spa_core.attention import resolve_backend

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the flex GPU path needs CUDA")


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


def test_auto_backend_is_flex_on_cuda_only_and_without_dropout():
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    assert resolve_backend("auto", torch.device("cuda")) == "flex"
    assert resolve_backend("auto", torch.device("cuda"), dropout=0.1) == "sdpa"
    assert resolve_backend("reference", torch.device("cuda")) == "reference"
    block = SPABlock(32, 2, 4, backend="auto").train()  # CPU: sdpa, so training works
    out, _ = block(torch.randn(1, 8, 8, 32), keep=torch.ones(1, 8, 8, dtype=torch.bool))
    out.sum().backward()


@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("mlp", ["all", "selected"])
def test_flex_matches_sdpa_on_cuda_forward_and_backward(dtype, tol, mlp):
    """The GPU path (compiled flex, block mask once per block call) against sdpa, to the dtype's
    tolerance, with and without bf16 autocast."""
    torch.manual_seed(0)
    blocks = {b: SPABlock(64, 4, 7, shift=True, backend=b, mlp=mlp).cuda().train() for b in ("flex", "sdpa")}
    blocks["sdpa"].load_state_dict(blocks["flex"].state_dict())
    x = torch.randn(3, 20, 27, 64, device="cuda")
    keep = torch.rand(3, 20, 27, generator=torch.Generator().manual_seed(1)).cuda() < 0.3
    results = {}
    for name, block in blocks.items():
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            out, _ = block(xi, keep=keep)
        out.float().square().mean().backward()
        results[name] = (out.float(), xi.grad, block.attn.qkv.weight.grad)
    for a, b in zip(results["flex"], results["sdpa"]):
        assert torch.isfinite(a).all()
        assert_close(a, b, atol=tol, rtol=tol)


@cuda
def test_auto_picks_flex_on_cuda_and_matches_sdpa():
    torch.manual_seed(0)
    auto = SPABlock(64, 4, 7, backend="auto").cuda().eval()
    sdpa = SPABlock(64, 4, 7, backend="sdpa").cuda().eval()
    sdpa.load_state_dict(auto.state_dict())
    x = torch.randn(2, 14, 21, 64, device="cuda")
    keep = torch.rand(2, 14, 21, device="cuda") < 0.5
    with torch.no_grad():
        assert_close(auto(x, keep=keep)[0], sdpa(x, keep=keep)[0], atol=1e-4, rtol=1e-4)
