"""Swin and Select and Pack Transformer (SPT) backbones, the baselines (DynamicSwin, SparseViT, DAT,
ViT), a model registry, Swin weight loading and profiling. ``create_model("spt_t")``;
``list_models()``; ``load_swin_weights(model, path)``.

Output contract: a backbone's forward returns ``maps`` (an ordered dict ``stage1..stage4`` of NHWC
maps, described by ``model.feature_info``), or ``(maps, info)`` for the models that select tokens
(SPT: :class:`SelectionInfo`, DynamicSwin: :class:`PruningInfo`, SparseViT:
:class:`WindowSelection`); :func:`split_output` returns ``(maps, info or None)`` for any of them.
``vit_s16`` is the classifier's single-scale backbone and returns ``(cls, tokens)``."""

from .dat import DAT_S, DAT_T, DATBackbone
from .dynamicswin import DYNAMICSWIN_B, DYNAMICSWIN_S, DYNAMICSWIN_T, DynamicSwinBackbone, PruningInfo
from .masks import random_keep, random_stage_keep, token_grid, token_valid
from .outputs import split_output
from .profiling import Throughput, count_macs, count_params, measure_fps
from .registry import Registry, build, create_model, list_models, register_model
from .sparsevit import SPARSEVIT_B, SPARSEVIT_S, SPARSEVIT_T, SparseViTBackbone, WindowSelection
from .spt import SPT_B, SPT_S, SPT_T12, SPT_T16, SelectionInfo, SPTBackbone, SPTConfig
from .swin import SWIN_B, SWIN_S, SWIN_T, SwinBackbone, SwinConfig
from .vit import VIT_S16, VisionTransformer
from .weights import LoadReport, load_swin_weights

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
    "SWIN_B",
    "SWIN_S",
    "SWIN_T",
    "VIT_S16",
    "DATBackbone",
    "DynamicSwinBackbone",
    "LoadReport",
    "PruningInfo",
    "Registry",
    "SPTBackbone",
    "SPTConfig",
    "SelectionInfo",
    "SparseViTBackbone",
    "SwinBackbone",
    "SwinConfig",
    "Throughput",
    "VisionTransformer",
    "WindowSelection",
    "build",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_swin_weights",
    "measure_fps",
    "random_keep",
    "random_stage_keep",
    "register_model",
    "split_output",
    "token_grid",
    "token_valid",
]
__version__ = "0.1.0"
