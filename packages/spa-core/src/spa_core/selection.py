"""Hard token selection (paper eqs. 6 and 12): Gumbel-sigmoid with a straight-through gradient."""

from __future__ import annotations

import torch
from torch import Tensor


def select_tokens(
    logits: Tensor,
    *,
    threshold: float = 0.01,
    tau: float = 1.0,
    training: bool = False,
    valid: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Select tokens whose (noisy) probability exceeds ``threshold``.

    logits [...] -> (weight [...] float, keep [...] bool).

    Training: ``p = sigmoid((logits + g) / tau)`` with logistic noise ``g = log u - log(1 - u)``
    drawn from ``generator`` (the binary form of Gumbel-softmax); ``keep = p > threshold``. The
    returned ``weight`` equals ``keep`` exactly in value and carries ``dp/dlogits`` as its gradient
    (straight-through). Eval: ``keep = sigmoid(logits) > threshold``, deterministic, no gradient.
    ``valid`` (bool, same shape) marks real tokens: padding is never selected.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold should be in (0, 1), got {threshold}")
    if tau <= 0:
        raise ValueError(f"tau should be > 0, got {tau}")
    if training:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
        u = u.clamp(torch.finfo(torch.float32).tiny, 1.0 - torch.finfo(torch.float32).eps)
        noise = (torch.log(u) - torch.log1p(-u)).to(logits.dtype)
        prob = torch.sigmoid((logits + noise) / tau)
    else:
        prob = torch.sigmoid(logits)
    keep = prob > threshold
    if valid is not None:
        keep = keep & valid
    weight = keep.to(logits.dtype)
    if training:
        weight = weight + (prob - prob.detach())  # value: exactly keep; gradient: dp/dlogits
    return weight, keep
