"""ViT-S/16 with and without ground-truth selection: all-selected equals the plain model,
unselected tokens pass through bit-identical and cannot influence the selected ones, the padded
batch equals running each image's selection alone, and a forward/backward smoke test."""

import pytest
import torch
from torch.testing import assert_close

import spt_models.vit  # noqa: F401  (registers vit_s16)
from spt_models import count_macs, count_params, create_model

SMALL = dict(depth=2, drop_path=0.0)


def _model(**overrides):
    torch.manual_seed(0)
    return create_model("vit_s16", **{**SMALL, **overrides}).eval()


def test_vit_s16_is_registered_with_vit_s_dims():
    model = create_model("vit_s16")
    assert (len(model.blocks), model.blocks[0].attn.num_heads, model.norm.normalized_shape) == (12, 6, (384,))
    assert count_params(model) == 21_665_664  # timm vit_small_patch16_224 without its 1000-class head


def test_all_selected_equals_no_selection():
    model = _model()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        cls_a, tok_a = model(x)
        cls_b, tok_b = model(x, torch.ones(2, 6, 8, dtype=torch.bool))
    assert_close(cls_b, cls_a, atol=1e-5, rtol=0)
    assert_close(tok_b, tok_a, atol=1e-5, rtol=0)


def test_unselected_tokens_pass_through_and_do_not_influence_selected_ones():
    model = _model()
    x = torch.randn(2, 3, 96, 128)
    keep = torch.rand(2, 6, 8, generator=torch.Generator().manual_seed(0)) < 0.4
    keep[1] = False
    keep[1, 2, 3] = True  # image 1 selects a single token
    with torch.no_grad():
        cls, tokens = model(x, keep)
        untouched = model.norm(model.embed(x))[:, 1:].reshape(2, 6, 8, -1)
        assert torch.equal(tokens[~keep], untouched[~keep])  # skipped every block
        y = x.clone()
        r, c = (~keep[0]).nonzero()[0].tolist()
        y[0, :, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] += 5.0  # change an unselected patch
        cls_y, tokens_y = model(y, keep)
    assert_close(cls_y, cls, atol=1e-6, rtol=0)
    assert_close(tokens_y[keep], tokens[keep], atol=1e-6, rtol=0)
    assert not torch.allclose(model(y)[0], model(x)[0])  # without selection it does matter


def test_padded_batch_equals_each_image_alone():
    model = _model()
    x = torch.randn(2, 3, 64, 64)
    keep = torch.zeros(2, 4, 4, dtype=torch.bool)
    keep[0, :3] = True  # 12 tokens
    keep[1, 1, 1:3] = True  # 2 tokens: padded to 13 slots with the cls
    with torch.no_grad():
        cls, tokens = model(x, keep)
        for b in range(2):
            seq = model.embed(x[b : b + 1])
            sel = torch.cat([torch.tensor([True]), keep[b].flatten()])
            sub = seq[:, sel]
            for block in model.blocks:
                sub = block(sub)  # plain attention among the image's own selection
            sub = model.norm(sub)
            assert_close(cls[b], sub[0, 0], atol=1e-5, rtol=0)
            assert_close(tokens[b][keep[b]], sub[0, 1:], atol=1e-5, rtol=0)


def test_selection_reduces_macs():
    model = _model()
    x = torch.randn(1, 3, 224, 224)
    keep = torch.zeros(1, 14, 14, dtype=torch.bool)
    keep[0, :7] = True
    assert count_macs(model, x, keep=keep) < 0.55 * count_macs(model, x)


def test_bad_keep_is_an_error():
    with pytest.raises(ValueError, match=r"keep must be a \[1, 4, 4\] bool mask"):
        _model()(torch.randn(1, 3, 64, 64), torch.ones(1, 4, 5, dtype=torch.bool))
