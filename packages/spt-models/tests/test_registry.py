"""Registry: names, duplicates, unknown names, overrides."""

import pytest
from torch import nn

from spt_models import Registry, SPTBackbone, SwinBackbone, create_model, list_models, register_model


def test_registering_a_known_name_raises_and_keeps_the_original():
    with pytest.raises(ValueError, match="model 'swin_t' is already registered"):

        @register_model
        def swin_t(**overrides) -> nn.Module:
            return nn.Identity()

    assert isinstance(create_model("swin_t", depths=(1, 1, 1, 1)), SwinBackbone)


def test_fresh_registry_register_create_duplicate():
    registry = Registry()

    @registry.register(name="tiny")
    def build(width: int = 2) -> nn.Module:
        return nn.Linear(width, width)

    assert registry.names() == ["tiny"] and "tiny" in registry
    assert registry.create("tiny", width=3).in_features == 3
    with pytest.raises(ValueError, match="model 'tiny' is already registered"):
        registry.register(build, name="tiny")


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match="unknown model 'swin_x'; known models: " + ", ".join(list_models())):
        create_model("swin_x")


def test_overrides_replace_config_fields_and_unknown_fields_raise():
    model = create_model("spt_t", depths=(1, 1, 2, 1), extra_blocks=1, window=4)
    assert isinstance(model, SPTBackbone)
    assert len(model.features[5]) == 3 and model.features[5][0].window_size == 4
    with pytest.raises(
        ValueError,
        match=r"^SwinConfig: unknown option 'backend'; known: depths, drop_path, embed_dim, heads, mlp_ratio, patch_size, window$",
    ):
        create_model("swin_t", backend="reference")
    with pytest.raises(
        TypeError, match=r"^SwinConfig: unknown option 'embed_dm' \(did you mean 'embed_dim'\?\)$"
    ):
        create_model("swin_t", embed_dm=8)
