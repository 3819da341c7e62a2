"""SPABlock invariants: backends agree, images are independent, unselected tokens skip attention."""

import pytest
import torch
from torch.testing import assert_close

from spa_core import SPABlock

C, HEADS, M = 32, 2, 4  # L = 16


MODES = [("all", "selected"), ("selected", "selected"), ("all", "all")]  # (mlp, gate)
MODE_IDS = [f"mlp={m}-gate={g}" for m, g in MODES]


def make_block(
    shift: bool = False,
    backend: str = "sdpa",
    layout: str = "packed",
    mlp: str = "all",
    gate: str = "selected",
) -> SPABlock:
    torch.manual_seed(0)
    return SPABlock(C, HEADS, M, shift=shift, backend=backend, layout=layout, mlp=mlp, gate=gate)


def random_keep(shape, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < ratio


def selections():
    """(name, x shape, keep, valid) covering the edge cases of packing."""
    B, H, W = 3, 8, 12  # N = 96 = 6 containers per image
    full = torch.ones(B, H, W, dtype=torch.bool)
    one = torch.zeros(B, H, W, dtype=torch.bool)
    one[1, 3, 5] = True
    multiple = torch.zeros(B, H, W, dtype=torch.bool)
    multiple[:, :4, :8] = True  # 32 tokens per image: exactly 2 containers each, 6 in all
    spanning = torch.zeros(B, H, W, dtype=torch.bool)
    spanning[0, :3, :] = True  # 36 tokens: image 0 ends inside container 3, image 1 starts there
    spanning[1, 2:5, 3:9] = True
    mixed = torch.zeros(B, H, W, dtype=torch.bool)  # mixed image sizes inside a padded batch
    mixed[0, :5, :7] = True
    mixed[1] = True
    mixed[2, :8, :3] = True
    return [
        ("empty", (B, H, W), torch.zeros(B, H, W, dtype=torch.bool), None),
        ("one-token", (B, H, W), one, None),
        ("all", (B, H, W), full, None),
        ("multiple-of-L", (B, H, W), multiple, None),
        ("spanning", (B, H, W), spanning, None),
        ("random-30%", (B, H, W), random_keep((B, H, W), 0.3, 0), None),
        ("mixed-sizes", (B, H, W), full, mixed),
        ("not-window-multiple", (2, 7, 10), random_keep((2, 7, 10), 0.5, 1), None),
    ]


CASES = selections()


@pytest.mark.parametrize("mlp,gate", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("name,shape,keep,valid", CASES, ids=[c[0] for c in CASES])
def test_sdpa_equals_reference_outputs_and_gradients(name, shape, keep, valid, shift, mlp, gate):
    results = []
    for backend in ("sdpa", "reference"):
        block = make_block(shift, backend, mlp=mlp, gate=gate).train()
        x = torch.randn(*shape, C, generator=torch.Generator().manual_seed(2), requires_grad=True)
        out, sel = block(x, keep=keep, valid=valid)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = {n: p.grad for n, p in block.named_parameters()}
        results.append((out, x.grad, grads, sel))
    (out_s, gx_s, gp_s, sel_s), (out_r, gx_r, gp_r, _) = results
    assert torch.isfinite(out_s).all() and torch.isfinite(gx_s).all()
    assert_close(out_s, out_r, atol=1e-5, rtol=1e-5)
    assert_close(gx_s, gx_r, atol=1e-5, rtol=1e-5)
    for n in gp_s:
        assert_close(gp_s[n], gp_r[n], atol=1e-5, rtol=1e-5, msg=n)
    expected_keep = keep if valid is None else keep & valid
    assert torch.equal(sel_s.keep, expected_keep)
    assert sel_s.num_containers == -(-int(expected_keep.sum()) // (M * M))


@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("shift", [False, True])
def test_images_are_independent(shift, layout):
    """Changing image 1's tokens (which share containers with image 0) never changes image 0."""
    block = make_block(shift, layout=layout).eval()
    x = torch.randn(2, 8, 12, C)
    keep = random_keep((2, 8, 12), 0.45, 3)  # 43 / 96 kept in image 0: the boundary is mid-container
    y = x.clone()
    y[1] = torch.randn(8, 12, C) * 5
    with torch.no_grad():
        out_x, _ = block(x, keep=keep)
        out_y, _ = block(y, keep=keep)
        alone, _ = block(x[:1], keep=keep[:1])
    assert int(keep[0].sum()) % (M * M) != 0
    assert_close(out_x[0], out_y[0], atol=1e-6, rtol=0)
    assert_close(out_x[0], alone[0], atol=1e-6, rtol=0)
    assert not torch.allclose(out_x[1], out_y[1])


def test_padded_layout_is_each_image_packed_alone():
    """The padded baseline starts every image on a container boundary: image b of the batch gets
    what packing image b alone gives, and every image gets the batch max of containers."""
    x = torch.randn(3, 8, 12, C)
    keep = random_keep((3, 8, 12), 0.3, 4)
    packed, padded = make_block(True, layout="packed").eval(), make_block(True, layout="padded").eval()
    with torch.no_grad():
        out, sel = padded(x, keep=keep)
        for b in range(3):
            assert_close(out[b], packed(x[b : b + 1], keep=keep[b : b + 1])[0][0], atol=1e-5, rtol=0)
        _, sel_packed = packed(x, keep=keep)
    assert sel.num_containers == 3 * -(-int(keep.flatten(1).sum(1).max()) // (M * M))
    assert sel_packed.num_containers == -(-int(keep.sum()) // (M * M)) < sel.num_containers


@pytest.mark.parametrize("shift", [False, True])
def test_unselected_tokens_get_exactly_the_mlp_update(shift):
    block = make_block(shift).train()
    x = torch.randn(2, 8, 12, C)
    keep = random_keep((2, 8, 12), 0.4, 5)
    out, _ = block(x, keep=keep)
    expected = x + block.mlp(block.norm2(x))
    assert torch.equal(out[~keep], expected[~keep])
    assert not torch.allclose(out[keep], expected[keep])


@pytest.mark.parametrize("mlp,gate", MODES, ids=MODE_IDS)
def test_mlp_selected_leaves_unselected_tokens_untouched_and_gate_all_gates_their_mlp_input(mlp, gate):
    block = make_block(True, mlp=mlp, gate=gate).train()
    x = torch.randn(2, 8, 12, C)
    keep = random_keep((2, 8, 12), 0.4, 5)
    out, sel = block(x, keep=keep)
    if mlp == "selected":
        expected = x
    elif gate == "all":
        expected = x + block.mlp(block.norm2(x) * torch.sigmoid(sel.logits).unsqueeze(-1))
    else:
        expected = x + block.mlp(block.norm2(x))
    assert torch.equal(out[~keep], expected[~keep])
    assert not torch.allclose(out[keep], expected[keep])


@pytest.mark.parametrize("gate", ["selected", "all"])
def test_gate_all_lets_the_task_loss_reach_a_dropped_tokens_score(gate):
    """Eq. 5 on every token: with gate='all' the loss has a gradient at unselected tokens' scores;
    with gate='selected' only selected tokens' scores get one (a given keep: no straight-through)."""
    block = make_block(mlp="all", gate=gate).train()
    keep = random_keep((2, 8, 12), 0.4, 7)
    out, sel = block(torch.randn(2, 8, 12, C), keep=keep)
    sel.logits.retain_grad()
    out.square().mean().backward()
    assert (sel.logits.grad[keep] != 0).all()
    dropped = sel.logits.grad[~keep]
    assert (dropped != 0).all() if gate == "all" else (dropped == 0).all()


@pytest.mark.parametrize("mlp,gate", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_no_nan_with_empty_selection_and_padding(backend, mlp, gate):
    block = make_block(True, backend, mlp=mlp, gate=gate).train()
    x = torch.randn(2, 7, 10, C, requires_grad=True)
    valid = torch.zeros(2, 7, 10, dtype=torch.bool)
    valid[0, :3, :2] = True  # image 1 is all padding
    for keep in (torch.zeros(2, 7, 10, dtype=torch.bool), torch.ones(2, 7, 10, dtype=torch.bool)):
        out, sel = block(x, keep=keep, valid=valid)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
        assert not sel.keep[1].any() and not (sel.keep[0] & ~valid[0]).any()
        assert torch.isfinite(sel.ratio(valid)[0])


@pytest.mark.parametrize("mlp", ["all", "selected"])
def test_empty_selection_returns_input_plus_mlp_or_the_input(mlp):
    block = make_block(mlp=mlp).eval()
    x = torch.randn(2, 8, 12, C)
    with torch.no_grad():
        out, sel = block(x, keep=torch.zeros(2, 8, 12, dtype=torch.bool))
    assert sel.num_containers == 0
    assert torch.equal(out, x + block.mlp(block.norm2(x)) if mlp == "all" else x)


@pytest.mark.parametrize("mlp,gate", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("shift", [False, True])
def test_empty_selection_still_gives_every_parameter_a_zero_gradient(shift, mlp, gate):
    """DDP with find_unused_parameters=False needs every parameter in the graph, even when a
    background-only batch selects nothing."""
    block = make_block(shift, mlp=mlp, gate=gate).train()
    x = torch.randn(2, 8, 8, C)
    out, sel = block(x, keep=torch.zeros(2, 8, 8, dtype=torch.bool))
    out.sum().backward()
    assert sel.num_containers == 0
    for name, p in block.named_parameters():
        assert p.grad is not None, name
    assert block.attn.qkv.weight.grad.abs().sum() == 0
    if mlp == "selected":
        assert all(p.grad.abs().sum() == 0 for p in [*block.mlp.parameters(), *block.norm2.parameters()])


def test_gate_learns_through_straight_through_selection():
    """Gradient reaches the gate from the straight-through mask (not only from eq. 5's scaling)."""
    block = make_block().train()
    x = torch.randn(2, 8, 12, C)
    out, sel = block(x, generator=torch.Generator().manual_seed(0))
    out.square().mean().backward()
    assert block.gate.proj.weight.grad.abs().sum() > 0
    assert sel.keep.any()


def test_eval_selection_is_deterministic_and_training_reproducible_by_seed():
    block = make_block()
    with torch.no_grad():
        block.gate.proj.bias.fill_(-4.6)  # sigmoid ~ 0.01: about half the tokens pass in training
    x = torch.randn(2, 8, 12, C)
    block.eval()
    with torch.no_grad():
        first = block(x)[1].keep
        assert all(torch.equal(first, block(x)[1].keep) for _ in range(3))
    block.train()
    with torch.no_grad():
        a = block(x, generator=torch.Generator().manual_seed(7))[1].keep
        b = block(x, generator=torch.Generator().manual_seed(7))[1].keep
        c = block(x, generator=torch.Generator().manual_seed(8))[1].keep
        torch.manual_seed(3)
        d = block(x)[1].keep
        torch.manual_seed(3)
        e = block(x)[1].keep
    assert torch.equal(a, b) and torch.equal(d, e)
    assert not torch.equal(a, c)
    assert 0.1 < a.float().mean() < 0.9


def test_score_up_is_max_pooled_into_the_selection():
    block = make_block().eval()
    with torch.no_grad():
        block.gate.proj.weight.zero_()
        block.gate.proj.bias.fill_(-10.0)  # the gate alone selects nothing
    finer = torch.full((1, 16, 23), -10.0)
    finer[0, 5, 9] = 10.0  # pools to (2, 4)
    with torch.no_grad():
        _, sel = block(torch.randn(1, 8, 12, C), score_up=finer)
    assert sel.keep.sum() == 1 and sel.keep[0, 2, 4]
    assert sel.logits[0, 2, 4] == 10.0


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        SPABlock(C, HEADS, M, backend="xformers")
    with pytest.raises(ValueError, match="layout must be 'packed' or 'padded', got 'ragged'"):
        SPABlock(C, HEADS, M, layout="ragged")
    with pytest.raises(ValueError, match="mlp must be 'all' or 'selected', got 'some'"):
        SPABlock(C, HEADS, M, mlp="some")
    with pytest.raises(ValueError, match="gate must be 'selected' or 'all', got 'none'"):
        SPABlock(C, HEADS, M, gate="none")
    with pytest.raises(ValueError, match="gate='all' gates the MLP input of unselected tokens"):
        SPABlock(C, HEADS, M, mlp="selected", gate="all")
    with pytest.raises(ValueError, match="dim must be divisible by num_heads, got dim=32, num_heads=3"):
        SPABlock(C, 3, M)
    with pytest.raises(
        ValueError, match=r"finer score map \(1, 4, 4\) pools to \(1, 2, 2\), expected \(1, 8, 12\)"
    ):
        make_block()(torch.randn(1, 8, 12, C), score_up=torch.zeros(1, 4, 4))


@pytest.mark.parametrize("mlp", ["all", "selected"])
def test_bf16_autocast_forward_backward_is_finite_and_close_to_fp32(mlp):
    block = make_block(True, mlp=mlp).train()
    x = torch.randn(2, 8, 12, C, requires_grad=True)
    keep = random_keep((2, 8, 12), 0.5, 6)
    reference, _ = block(x, keep=keep)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = block(x, keep=keep)
    out.float().sum().backward()
    assert out.dtype == torch.float32  # the residual stream stays fp32
    assert torch.isfinite(x.grad).all()
    assert_close(out, reference, atol=0.1, rtol=0.05)
