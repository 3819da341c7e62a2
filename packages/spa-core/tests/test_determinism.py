"""Bit-identical gradients from run to run with several CPU threads (issue 18, item 7).

The relative-position-bias lookup gathers B' * L * L indices from a (2M-1)^2-row table, so every
row repeats many times over. Through ``table[index]`` its CPU backward was an accumulating
``index_put_`` that, from 32768 indices (14 containers of 49 tokens) and 2 threads on, added with
atomics in a run-dependent order: the table's gradient changed in its last bits from run to run,
and SPT's training drifted apart (Swin's one-window lookup, 2401 indices, stayed serial). Both
tests below failed on every run with that lookup (see ``attention_bias``).
"""

from contextlib import contextmanager

import torch

from spa_core import SPABlock
from spa_core.attention import packed_attention


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_packed_attention_table_gradient_is_bit_identical_across_runs():
    """24 containers of 49 tokens (57624 bias indices into 169 rows), sdpa backend: 5 backward
    passes, one table gradient."""
    g = torch.Generator().manual_seed(0)
    Bc, M, nH, d = 24, 7, 4, 8
    pos = torch.randint(0, 40, (Bc, M * M, 2), generator=g)
    group = torch.randint(0, 3, (Bc, M * M), generator=g)
    table = torch.randn((2 * M - 1) ** 2, nH, generator=g)
    q, k, v = torch.randn(3, Bc, nH, M * M, d, generator=g)
    grads = []
    with threads(2):
        for _ in range(5):
            t = table.clone().requires_grad_()
            packed_attention(q, k, v, table=t, pos=pos, group=group, window=M).square().sum().backward()
            grads.append(t.grad)
    assert all(torch.equal(grads[0], other) for other in grads[1:]), [
        float((grads[0] - other).abs().max()) for other in grads[1:]
    ]


def test_spa_block_gradients_are_bit_identical_across_runs():
    """The demo's stage 3 (4 images of 12x20 tokens, 128 channels, 4 heads: 20 containers), shifted,
    training mode: two forward + backward passes give the same gradient in every parameter."""
    x = torch.randn(4, 12, 20, 128, generator=torch.Generator().manual_seed(1))

    def grads() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        block = SPABlock(128, 4, 7, shift=True, drop_path=0.1).train()
        out, _ = block(x, generator=torch.Generator().manual_seed(2))
        out.square().mean().backward()
        return {name: p.grad for name, p in block.named_parameters()}

    with threads(2):
        first, second = grads(), grads()
    assert [name for name in first if not torch.equal(first[name], second[name])] == []
