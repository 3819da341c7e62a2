"""load_swin_weights: torchvision and official Swin layouts from a file, clear errors naming the file
and the first mismatched key."""

import argparse

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.testing import assert_close
from torchvision.models.swin_transformer import SwinTransformer

from spt_models import create_model, load_swin_weights

TINY = {"embed_dim": 32, "depths": (2, 2, 2, 2), "heads": (1, 2, 4, 8)}
TINY_OVERRIDES = {  # per model, what its tiny build needs beyond TINY
    "swin_t": {},
    "dynamicswin_t": {"pruning_loc": (1,), "keep_ratio": (0.7,)},
    "spt_t": {},  # stage 3: 2 Swin-weighted SPA blocks + 4 extra (fresh)
    "dat_t": {"groups": (2, 4)},  # stages 3, 4: block 1 deformable (Swin attention weights renamed)
}

# Names of microsoft/Swin-Transformer ``models/swin_transformer.py`` (SwinTransformer: patch_embed,
# layers[i] = BasicLayer(blocks, downsample at the end of stage i < 3), norm, head) -> torchvision's,
# written from the two codes, not from spt_models.weights. Each in its state-dict order.
OFFICIAL_EMBED = {
    "patch_embed.proj.weight": "features.0.0.weight",
    "patch_embed.proj.bias": "features.0.0.bias",
    "patch_embed.norm.weight": "features.0.2.weight",
    "patch_embed.norm.bias": "features.0.2.bias",
}
OFFICIAL_BLOCK = {  # layers.{i}.blocks.{j}.<key> -> features.{2i+1}.{j}.<value>; None: the official index buffer
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.relative_position_bias_table": "attn.relative_position_bias_table",
    "attn.relative_position_index": None,
    "attn.qkv.weight": "attn.qkv.weight",
    "attn.qkv.bias": "attn.qkv.bias",
    "attn.proj.weight": "attn.proj.weight",
    "attn.proj.bias": "attn.proj.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.0.weight",  # official Mlp(fc1, act, fc2); torchvision MLP(Linear, GELU, Dropout, Linear, Dropout)
    "mlp.fc1.bias": "mlp.0.bias",
    "mlp.fc2.weight": "mlp.3.weight",
    "mlp.fc2.bias": "mlp.3.bias",
}
OFFICIAL_MERGE = {  # layers.{i}.downsample.<key> -> features.{2i+2}.<value>
    "reduction.weight": "reduction.weight",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
OFFICIAL_HEAD = {
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
    "head.weight": "head.weight",
    "head.bias": "head.bias",
}


def official_index(window: int) -> Tensor:
    """The official ``relative_position_index`` [M*M, M*M]: for query a and key b of a window,
    ``(y_a - y_b + M - 1) * (2M - 1) + (x_a - x_b + M - 1)``."""
    y, x = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    y, x = y.flatten(), x.flatten()
    return (y[:, None] - y[None, :] + window - 1) * (2 * window - 1) + x[:, None] - x[None, :] + window - 1


def official_file(tv: nn.Module, depths: tuple[int, ...], window: int = 7, image: int = 224) -> dict:
    """A release file of microsoft/Swin-Transformer (``{"model": state}``) holding the weights of the
    torchvision Swin ``tv``, as the official model trained at ``image`` pixels saves them: a block at
    an odd index shifts (and has an ``attn_mask`` buffer) iff its stage's side exceeds the window."""
    theirs = tv.state_dict()
    state = {k: theirs[v] for k, v in OFFICIAL_EMBED.items()}
    for i, depth in enumerate(depths):
        side = image // 4 // 2**i
        for j in range(depth):
            if j % 2 == 1 and side > window:
                windows = (side // window) ** 2
                state[f"layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(windows, window**2, window**2)
            for key, ours in OFFICIAL_BLOCK.items():
                value = official_index(window) if ours is None else theirs[f"features.{2 * i + 1}.{j}.{ours}"]
                state[f"layers.{i}.blocks.{j}.{key}"] = value
        if i < len(depths) - 1:
            for key, ours in OFFICIAL_MERGE.items():
                state[f"layers.{i}.downsample.{key}"] = theirs[f"features.{2 * i + 2}.{ours}"]
    state |= {k: theirs[v] for k, v in OFFICIAL_HEAD.items()}
    return {"model": state}


def tiny_torchvision(strong_init, embed_dim: int = 32, depths: tuple[int, ...] = (2, 2, 2, 2)) -> nn.Module:
    """A torchvision Swin of TINY's dims (or wider / deeper), seeded O(1) random weights."""
    torch.manual_seed(0)
    heads = [embed_dim // 32 * h for h in TINY["heads"]]
    model = SwinTransformer([4, 4], embed_dim, list(depths), heads, [7, 7], stochastic_depth_prob=0.2)
    return strong_init(model).eval()


@pytest.fixture(scope="module")
def tv_tiny(strong_init) -> nn.Module:
    return tiny_torchvision(strong_init)


@pytest.fixture(scope="module")
def tiny_files(tv_tiny, tmp_path_factory) -> dict[str, object]:
    """The same tiny weights in both layouts: {"torchvision": path, "official": path}."""
    folder = tmp_path_factory.mktemp("weights")
    files = {"torchvision": folder / "swin_tiny_tv.pth", "official": folder / "swin_tiny_official.pth"}
    torch.save(tv_tiny.state_dict(), files["torchvision"])
    torch.save(official_file(tv_tiny, TINY["depths"]), files["official"])
    return files


def tiny_model(name: str) -> nn.Module:
    torch.manual_seed(1)  # the same fresh keys in every build
    return create_model(name, **TINY, **TINY_OVERRIDES[name]).eval()


@pytest.mark.parametrize("name", ["swin_t", "dynamicswin_t", "spt_t"])
def test_both_layouts_land_the_same_tensors(name, tv_tiny, tiny_files, caplog):
    theirs = tv_tiny.state_dict()
    models = {}
    for layout, path in tiny_files.items():
        models[layout] = model = tiny_model(name)
        with caplog.at_level("INFO", logger="spt_models.weights"):
            report = load_swin_weights(model, path)
        assert report.layout == layout
        assert f"{path}: {layout} Swin layout" in caplog.text
        assert sorted(report.fresh) == sorted(model.fresh_keys())
        for key, value in model.state_dict().items():
            if key not in report.fresh:
                assert_close(value, theirs[key], rtol=0, atol=0, msg=f"{layout} {key}")
    assert all(
        torch.equal(v, models["official"].state_dict()[k])
        for k, v in models["torchvision"].state_dict().items()
    )


def test_new_gates_extra_blocks_and_predictors_are_reported_fresh(tiny_files, caplog):
    spt = tiny_model("spt_t")
    with caplog.at_level("INFO", logger="spt_models.weights"):
        fresh = load_swin_weights(spt, tiny_files["official"]).fresh
    own = spt.state_dict()
    gates = {k for k in own if k.startswith(("gate.", "gate_norm.")) or ".gate.proj." in k}
    extra = {
        k for k in own if k.startswith(("features.5.2.", "features.5.3.", "features.5.4.", "features.5.5."))
    }
    assert len(gates) == 2 * (1 + 1 + 6 + 2) and set(fresh) == gates | extra  # gate, gate_norm, 8 blocks
    assert (
        f"{tiny_files['official']}: {len(fresh)} keys of SPTBackbone stay freshly initialised" in caplog.text
    )
    dynamic = tiny_model("dynamicswin_t")
    fresh = load_swin_weights(dynamic, tiny_files["official"]).fresh
    predictors = {k for k in dynamic.state_dict() if k.startswith("predictors.") or ".fast_mlp." in k}
    assert any(k.startswith("predictors.0.") for k in predictors) and set(fresh) == predictors


@pytest.mark.parametrize("layout", ["torchvision", "official"])
def test_dat_takes_swin_attention_weights_in_its_deformable_blocks(layout, tv_tiny, tiny_files, caplog):
    dat = tiny_model("dat_t")
    with caplog.at_level("INFO", logger="spt_models.weights"):
        report = load_swin_weights(dat, tiny_files[layout])
    theirs, own = tv_tiny.state_dict(), dat.state_dict()
    deformable = ("features.5.1.attn.", "features.7.1.attn.")
    assert set(report.fresh) == {
        k for k in own if k.startswith(deformable) and (".conv_offset." in k or k.endswith("rpe_table"))
    }
    for prefix in deformable:
        for part in ("weight", "bias"):
            q, k, v = theirs[f"{prefix}qkv.{part}"].chunk(3)
            assert torch.equal(own[f"{prefix}proj_q.{part}"], q)
            assert torch.equal(own[f"{prefix}proj_k.{part}"], k)
            assert torch.equal(own[f"{prefix}proj_v.{part}"], v)
            assert torch.equal(own[f"{prefix}proj_out.{part}"], theirs[f"{prefix}proj.{part}"])
    assert all(torch.equal(v, theirs[k]) for k, v in own.items() if k in theirs)
    assert (
        "DATBackbone renamed or dropped 12 keys for its own blocks: features.5.1.attn.proj.bias"
        in caplog.text
    )
    with torch.no_grad():
        maps, _ = dat(torch.randn(1, 3, 64, 96))
    assert all(m.isfinite().all() for m in maps.values())


def test_official_file_drops_masks_head_norm_and_unused_indices(tiny_files, caplog):
    report = load_swin_weights(tiny_model("spt_t"), tiny_files["official"])
    assert [k for k in report.ignored if k.endswith("attn_mask")] == [
        "layers.0.blocks.1.attn_mask",
        "layers.1.blocks.1.attn_mask",
        "layers.2.blocks.1.attn_mask",
    ]  # stage 4 (7x7 at 224) never shifts in the official model
    assert {"norm.weight", "norm.bias", "head.weight", "head.bias"} <= set(report.ignored)
    assert "layers.2.blocks.0.attn.relative_position_index" in report.ignored  # SPA blocks have none


def test_official_patch_merging_order_needs_no_permutation(tiny_files):
    """The official PatchMerging concatenates x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
    (row-parity first); the loaded merge computes exactly that with the file's weights."""
    model = tiny_model("swin_t")
    load_swin_weights(model, tiny_files["official"])
    state = torch.load(tiny_files["official"], weights_only=True)["model"]
    x = torch.randn(2, 6, 10, 32)  # [B, H, W, C] stage-1 map
    merged = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    norm_w, norm_b = state["layers.0.downsample.norm.weight"], state["layers.0.downsample.norm.bias"]
    want = F.linear(
        F.layer_norm(merged, (128,), norm_w, norm_b), state["layers.0.downsample.reduction.weight"]
    )
    with torch.no_grad():
        assert_close(model.features[2](x), want, rtol=0, atol=1e-6)


def test_swin_t_from_an_official_file_equals_torchvision_swin_t(tv_swin_t, torchvision_stages, tmp_path):
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(official_file(tv_swin_t, (2, 2, 6, 2)), path)
    model = create_model("swin_t").eval()
    assert load_swin_weights(model, path).fresh == []
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, _ = model(x)
        ref = torchvision_stages(tv_swin_t, x)
    for (key, got), want in zip(ours.items(), ref):
        assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


def test_a_deeper_official_swin_names_its_first_extra_block(strong_init, tmp_path):
    """As swin_s into swin_t: stage 3 of the file has 4 blocks, the model's 2."""
    path = tmp_path / "deeper.pth"
    torch.save(official_file(tiny_torchvision(strong_init, depths=(2, 2, 4, 2)), (2, 2, 4, 2)), path)
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    # the extra blocks' relative_position_index buffers are dropped as unused, not listed
    extra = [f"features.5.2.{ours}" for ours in OFFICIAL_BLOCK.values() if ours is not None]
    assert str(err.value) == (
        f"{path}: does not fit SwinBackbone: first mismatched key 'layers.2.blocks.2.norm1.weight' "
        f"(our features.5.2.norm1.weight) is not in the model; unexpected keys (26): {', '.join(extra[:12])}, "
        "... (14 more)"
    )


def test_a_wider_official_swin_names_its_first_key(strong_init, tmp_path):
    """As swin_b into swin_t: 64 channels in the file, 32 in the model."""
    path = tmp_path / "wider.pth"
    torch.save(official_file(tiny_torchvision(strong_init, embed_dim=64), TINY["depths"]), path)
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    assert str(err.value).split("; ")[0] == (
        f"{path}: does not fit SwinBackbone: first mismatched key 'patch_embed.proj.weight' "
        "(our features.0.0.weight) has the wrong shape: file (64, 3, 4, 4) vs model (32, 3, 4, 4)"
    )


def test_another_architecture_is_named_by_its_first_key(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    assert str(err.value) == (
        f"{path}: not a Swin state dict: first key 'conv1.weight' is in neither torchvision's layout "
        "('features.N...') nor the official Swin release's ('patch_embed.*', 'layers.N...')"
    )


def test_a_truncated_file_is_named(tiny_files, tmp_path):
    path = tmp_path / "cut.pth"
    data = tiny_files["official"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    assert str(err.value) == (
        f"{path}: not a readable torch file (truncated or corrupt: PytorchStreamReader failed reading zip "
        "archive: failed finding central directory)"
    )


def test_a_training_checkpoint_with_objects_is_named(tv_tiny, tmp_path):
    """The official code's training checkpoints hold the run's config object beside ``model``."""
    path = tmp_path / "ckpt_epoch_299.pth"
    torch.save(
        {"model": official_file(tv_tiny, TINY["depths"])["model"], "config": argparse.Namespace(lr=1)}, path
    )
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    assert str(err.value) == (
        f"{path}: holds an object of type argparse.Namespace, not only tensors (a training checkpoint?): save its "
        "state dict alone, torch.save(checkpoint['model'], path)"
    )


def test_a_file_that_is_not_torch_is_named(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"not torch")
    with pytest.raises(ValueError) as err:
        load_swin_weights(tiny_model("swin_t"), path)
    assert (
        str(err.value) == f"{path}: not a readable torch file (truncated or corrupt: Unsupported operand 110)"
    )


def test_only_a_swin_layout_backbone_takes_swin_weights(tiny_files):
    vit = create_model("vit_s16", embed_dim=16, depth=1, heads=2)
    with pytest.raises(ValueError) as err:
        load_swin_weights(vit, tiny_files["torchvision"])
    assert str(err.value) == (
        f"{tiny_files['torchvision']}: Swin weights load into a Swin-layout Backbone, got VisionTransformer"
    )


def test_loads_from_a_file_and_ignores_the_classifier(tmp_path, tv_swin_t, caplog):
    path = tmp_path / "swin_t.pth"
    torch.save(tv_swin_t.state_dict(), path)
    model = create_model("swin_t")
    with caplog.at_level("INFO", logger="spt_models.weights"):
        report = load_swin_weights(model, path)
    assert sorted(report.ignored) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report.fresh == [] and report.layout == "torchvision"
    assert "head.weight" in caplog.text and str(path) in caplog.text
    for key, value in model.state_dict().items():
        assert_close(value, tv_swin_t.state_dict()[key], rtol=0, atol=0)


def test_wrapped_checkpoint_is_unwrapped(tmp_path, tv_swin_t):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": tv_swin_t.state_dict(), "epoch": 3}, path)
    model = create_model("swin_t")
    load_swin_weights(model, path)
    assert_close(model.features[7][1].mlp[3].weight, tv_swin_t.features[7][1].mlp[3].weight, rtol=0, atol=0)


def test_missing_keys_are_named(tmp_path, tv_swin_t):
    state = dict(tv_swin_t.state_dict())
    del state["features.5.3.attn.qkv.weight"], state["features.0.0.bias"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    model = create_model("swin_t")
    before = model.features[1][0].attn.qkv.weight.clone()
    with pytest.raises(ValueError) as err:
        load_swin_weights(model, path)
    assert str(err.value) == (
        f"{path}: does not fit SwinBackbone: first mismatched key 'features.0.0.bias' is missing from the "
        "file; missing keys (2): features.0.0.bias, features.5.3.attn.qkv.weight"
    )
    assert torch.equal(model.features[1][0].attn.qkv.weight, before)  # untouched on error


def test_unexpected_keys_and_shapes_are_named(torchvision_swin):
    """Swin-S weights into Swin-T: stage 3 has 18 blocks there, 6 here."""
    state = torchvision_swin("swin_s").state_dict()
    with pytest.raises(
        ValueError,
        match=r"^state dict: does not fit SwinBackbone: first mismatched key 'features\.5\.6\.norm1\.weight' is "
        r"not in the model; unexpected keys \(156\): features\.5\.6\.norm1\.weight, ",
    ):
        load_swin_weights(create_model("swin_t"), state)
    state = {k: v for k, v in state.items() if not k.startswith("features.5.")}
    state = {
        **state,
        **{k: v for k, v in create_model("swin_t").state_dict().items() if k.startswith("features.5.")},
    }
    state["features.0.0.weight"] = torch.zeros(96, 3, 2, 2)
    with pytest.raises(ValueError) as err:
        load_swin_weights(create_model("swin_t"), state)
    assert str(err.value) == (
        "state dict: does not fit SwinBackbone: first mismatched key 'features.0.0.weight' has the wrong shape: "
        "file (96, 3, 2, 2) vs model (96, 3, 4, 4); shape mismatches (1): features.0.0.weight: file "
        "(96, 3, 2, 2) vs model (96, 3, 4, 4)"
    )


def test_spt_rejects_a_swin_with_more_blocks_than_it_has(torchvision_swin):
    """Swin-S has 18 stage-3 blocks, SPT-T/16 has 10: blocks 10-17 would be lost."""
    with pytest.raises(
        ValueError, match=r"first mismatched key 'features\.5\.10\.norm1\.weight' is not in the model"
    ):
        load_swin_weights(create_model("spt_t"), torchvision_swin("swin_s").state_dict())


def test_spt_s_loads_swin_s(torchvision_swin):
    tv = torchvision_swin("swin_s")
    model = create_model("spt_s")
    report = load_swin_weights(model, tv.state_dict())
    assert {k.split(".")[2] for k in report.fresh if k.startswith("features.5.") and ".gate." not in k} == {
        "18",
        "19",
        "20",
        "21",
    }
    assert_close(
        model.features[5][17].attn.relative_position_bias_table,
        tv.features[5][17].attn.relative_position_bias_table,
    )


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pth"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match=f"{path}: expected a state dict"):
        load_swin_weights(create_model("swin_t"), path)
