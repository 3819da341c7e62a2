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
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if training:
        noise_device = (
            generator.device if generator is not None else logits.device
        )  # a CPU generator works for CUDA
        u = torch.rand(logits.shape, generator=generator, device=noise_device, dtype=torch.float32).to(
            logits.device
        )
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


def select_top_ratio(
    logits: Tensor, ratio: float, *, training: bool = False, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Keep exactly ``ceil(ratio * n_b)`` top-scored tokens of each image b (n_b its real tokens):
    the fixed-ratio baseline of App. B.4. logits [B, ...] -> (weight [B, ...], keep [B, ...] bool).

    In training ``weight`` carries sigmoid's gradient straight through, as in :func:`select_tokens`.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    B = logits.shape[0]
    flat = logits.detach().reshape(B, -1)
    real = torch.ones_like(flat, dtype=torch.bool) if valid is None else valid.reshape(B, -1)
    count = torch.ceil(real.sum(1) * ratio).long()  # [B]
    order = flat.masked_fill(~real, float("-inf")).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(flat.shape[1], device=flat.device).expand(B, -1)
    )
    keep = ((rank < count.unsqueeze(1)) & real).view_as(logits)
    weight = keep.to(logits.dtype)
    if training:
        prob = torch.sigmoid(logits)
        weight = weight + (prob - prob.detach())
    return weight, keep
