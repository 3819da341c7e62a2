"""Swin and Select and Pack Transformer (SPT) backbones, the baselines (DynamicSwin, SparseViT, DAT,
ViT), detectors and the VOC classifier on any of them, a model registry, Swin weight loading and
profiling. ``create_model("spt_t")``; ``create_detector("spt_t", head="mask_rcnn", num_classes=10)``;
``list_models()``; ``load_swin_weights(model, path)``.

One backbone contract (:mod:`spt_models.backbone`): ``forward(x, valid=None, generator=None,
keep=None) -> (maps, aux)``, maps the ordered dict ``stage1..stage4`` of NHWC maps
(``model.feature_info``), aux the model's selection record (SPT :class:`SelectionInfo`, DynamicSwin
:class:`PruningInfo`, SparseViT :class:`WindowSelection`: each with ``ratio`` ``{stride: [B]}`` and
``losses(labels)``) or None (Swin, DAT); ``fresh_keys()``, ``needs_keep``, ``multiscale``.
``vit_s16`` is the classifier's single-scale backbone (``multiscale`` False) and returns
``(cls, tokens)``; :func:`list_multiscale_models` names the others.

Names are imported on first use (PEP 562), so importing the package does not import torch."""

import importlib

_EXPORTS = {  # name -> submodule; imported on first use, so `import spt_models` (and the CLI's --help) is fast
    "STAGE_NAMES": "backbone",
    "Backbone": "backbone",
    "SelectionRecord": "backbone",
    "Classifier": "classifier",
    "create_classifier": "classifier",
    "DAT_S": "dat",
    "DAT_T": "dat",
    "DATBackbone": "dat",
    "build_detector": "detection",
    "create_detector": "detection",
    "DYNAMICSWIN_B": "dynamicswin",
    "DYNAMICSWIN_S": "dynamicswin",
    "DYNAMICSWIN_T": "dynamicswin",
    "DynamicSwinBackbone": "dynamicswin",
    "PruningInfo": "dynamicswin",
    "random_keep": "masks",
    "random_stage_keep": "masks",
    "token_grid": "masks",
    "token_valid": "masks",
    "Throughput": "profiling",
    "count_macs": "profiling",
    "count_params": "profiling",
    "measure_fps": "profiling",
    "Registry": "registry",
    "build": "registry",
    "create_model": "registry",
    "list_models": "registry",
    "list_multiscale_models": "registry",
    "register_model": "registry",
    "SPARSEVIT_B": "sparsevit",
    "SPARSEVIT_S": "sparsevit",
    "SPARSEVIT_T": "sparsevit",
    "SparseViTBackbone": "sparsevit",
    "WindowSelection": "sparsevit",
    "SPT_B": "spt",
    "SPT_S": "spt",
    "SPT_T12": "spt",
    "SPT_T16": "spt",
    "SelectionInfo": "spt",
    "SPTBackbone": "spt",
    "SPTConfig": "spt",
    "SWIN_B": "swin",
    "SWIN_S": "swin",
    "SWIN_T": "swin",
    "SwinBackbone": "swin",
    "SwinConfig": "swin",
    "VIT_S16": "vit",
    "VisionTransformer": "vit",
    "LoadReport": "weights",
    "load_swin_weights": "weights",
}

__all__ = [
    "DAT_S",
    "DAT_T",
    "DYNAMICSWIN_B",
    "DYNAMICSWIN_S",
    "DYNAMICSWIN_T",
    "SPARSEVIT_B",
    "SPARSEVIT_S",
    "SPARSEVIT_T",
    "SPT_B",
    "SPT_S",
    "SPT_T12",
    "SPT_T16",
    "STAGE_NAMES",
    "SWIN_B",
    "SWIN_S",
    "SWIN_T",
    "VIT_S16",
    "Backbone",
    "Classifier",
    "DATBackbone",
    "DynamicSwinBackbone",
    "LoadReport",
    "PruningInfo",
    "Registry",
    "SPTBackbone",
    "SPTConfig",
    "SelectionInfo",
    "SelectionRecord",
    "SparseViTBackbone",
    "SwinBackbone",
    "SwinConfig",
    "Throughput",
    "VisionTransformer",
    "WindowSelection",
    "build",
    "build_detector",
    "count_macs",
    "count_params",
    "create_classifier",
    "create_detector",
    "create_model",
    "list_models",
    "list_multiscale_models",
    "load_swin_weights",
    "measure_fps",
    "random_keep",
    "random_stage_keep",
    "register_model",
    "token_grid",
    "token_valid",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
