"""Shared fixtures: torchvision references and gate saturation (fixtures, since tests are
imported with --import-mode=importlib and cannot import a helper module)."""

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from spa_core import Gate

TORCHVISION_SWIN = {
    "swin_t": torchvision.models.swin_t,
    "swin_s": torchvision.models.swin_s,
    "swin_b": torchvision.models.swin_b,
}


def _torchvision_stages(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of torchvision ``features[1]``, ``[3]``, ``[5]``, ``[7]`` (the four stages), NHWC."""
    outs = []
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i in (1, 3, 5, 7):
            outs.append(x)
    return outs


def _strong_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded O(1) random weights. torchvision's own init (trunc-normal 0.02 Linear weights, zero
    biases) makes every attention branch ~1e-4 of the residual stream, so a wrong attention would
    still match to 1e-5; with these weights every branch changes the output by O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5 / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _saturate_gates(model: torch.nn.Module, bias: float = 40.0) -> int:
    """Every Gate: weight 0, bias ``bias`` (sigmoid(40) == 1 in fp32). Returns how many gates."""
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    with torch.no_grad():
        for g in gates:
            g.proj.weight.zero_()
            g.proj.bias.fill_(bias)
    return len(gates)


@pytest.fixture(scope="session")
def strong_init() -> Callable[[nn.Module], nn.Module]:
    """:func:`_strong_init` for tests that build their own torchvision model."""
    return _strong_init


@pytest.fixture(scope="session")
def torchvision_swin() -> Callable[[str], torch.nn.Module]:
    """name -> torchvision Swin (``weights=None``, nothing downloaded) with seeded O(1) random
    weights (:func:`_strong_init`), eval mode."""

    def build(name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return _strong_init(TORCHVISION_SWIN[name](weights=None)).eval()

    return build


@pytest.fixture(scope="session")
def tv_swin_t(torchvision_swin) -> torch.nn.Module:
    return torchvision_swin("swin_t")


@pytest.fixture(scope="session")
def torchvision_stages():
    return _torchvision_stages


@pytest.fixture(scope="session")
def saturate_gates():
    return _saturate_gates
