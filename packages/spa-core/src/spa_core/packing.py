"""Packing selected tokens from all images of a batch into fixed-length containers.

Legend: B images, N tokens per image, C channels, L container length, B' containers, T selected
tokens. Selected tokens are taken image after image, in the order of ``keep``'s last axis, and
poured into containers of length L (the ``"packed"`` layout): only the last container is padded.
The ``"padded"`` layout is the baseline the paper improves on: every image starts a new container
and gets as many containers as the image with the most selected tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Layout = Literal["packed", "padded"]


@dataclass(frozen=True)
class PackPlan:
    """Where each selected token goes.

    index [T] long: flat index ``b * N + n`` of each selected token in ``keep`` (image-major order).
    slot [T] long: its position in the flattened containers, in ``[0, B' * L)``.
    image_id [B', L] long: the image of each slot, -1 for padding.
    length: L.
    contiguous: ``slot == arange(T)`` (the packed layout), so packing is a pad, not a scatter.
    """

    index: Tensor
    slot: Tensor
    image_id: Tensor
    length: int
    contiguous: bool

    @property
    def num_tokens(self) -> int:
        return self.index.numel()

    @property
    def num_containers(self) -> int:
        return self.image_id.shape[0]

    def to_slots(self, values: Tensor, fill: float | int = 0) -> Tensor:
        """values [T, *] -> [B', L, *], ``fill`` in padding slots."""
        total = self.num_containers * self.length
        if self.contiguous:
            pad = [0, 0] * (values.dim() - 1) + [0, total - self.num_tokens]
            out = F.pad(values, pad, value=fill)
        else:
            out = values.new_full((total, *values.shape[1:]), fill).index_copy(0, self.slot, values)
        return out.view(self.num_containers, self.length, *values.shape[1:])

    def from_slots(self, values: Tensor) -> Tensor:
        """values [B', L, *] -> [T, *], padding slots dropped."""
        flat = values.flatten(0, 1)
        return flat[: self.num_tokens] if self.contiguous else flat[self.slot]


def pack_plan(keep: Tensor, length: int, layout: Layout = "packed") -> PackPlan:
    """keep [B, N] bool -> :class:`PackPlan` with containers of ``length`` tokens."""
    if keep.dim() != 2 or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a [B, N] bool tensor, got {tuple(keep.shape)} {keep.dtype}")
    if length < 1:
        raise ValueError(f"container length must be >= 1, got {length}")
    B, N = keep.shape
    b, n = keep.nonzero(as_tuple=True)  # [T], row-major: image after image
    index = b * N + n
    T = index.numel()
    if layout == "packed":
        slot = torch.arange(T, device=keep.device)
        num_containers = -(-T // length)
    elif layout == "padded":
        counts = keep.sum(1)  # [B]
        per_image = -(-int(counts.max()) // length) if T else 0  # containers per image
        first = torch.cumsum(counts, 0) - counts  # [B] index of each image's first token
        slot = b * (per_image * length) + torch.arange(T, device=keep.device) - first[b]
        num_containers = B * per_image
    else:
        raise ValueError(f"layout must be 'packed' or 'padded', got {layout!r}")
    image_id = torch.full((num_containers * length,), -1, dtype=torch.long, device=keep.device)
    image_id[slot] = b
    return PackPlan(index, slot, image_id.view(num_containers, length), length, layout == "packed")


def pack(x: Tensor, keep: Tensor, length: int, layout: Layout = "packed") -> tuple[Tensor, PackPlan]:
    """x [B, N, C], keep [B, N] bool -> (tokens [B', L, C] zero-padded, plan)."""
    plan = pack_plan(keep, length, layout)
    return plan.to_slots(x.flatten(0, 1)[plan.index]), plan


def unpack(tokens: Tensor, plan: PackPlan, batch: int, num: int) -> Tensor:
    """tokens [B', L, C] -> [B, N, C]: selected tokens back in place, zeros elsewhere."""
    C = tokens.shape[-1]
    out = tokens.new_zeros(batch * num, C).index_copy(0, plan.index, plan.from_slots(tokens))
    return out.view(batch, num, C)
