"""Swin and Select and Pack Transformer (SPT) backbones, a model registry, Swin weight loading and
profiling. ``create_model("spt_t")``; ``list_models()``; ``load_swin_weights(model, path)``."""

from .masks import random_keep, random_stage_keep, token_grid, token_valid
from .profiling import Throughput, count_macs, count_params, measure_fps
from .registry import Registry, create_model, list_models, register_model
from .spt import SPT_B, SPT_S, SPT_T12, SPT_T16, SelectionInfo, SPTBackbone, SPTConfig, build_spt
from .swin import SWIN_B, SWIN_S, SWIN_T, SwinBackbone, SwinConfig, build_swin
from .weights import LoadReport, load_swin_weights

__all__ = [
    "SPT_B",
    "SPT_S",
    "SPT_T12",
    "SPT_T16",
    "SWIN_B",
    "SWIN_S",
    "SWIN_T",
    "LoadReport",
    "Registry",
    "SPTBackbone",
    "SPTConfig",
    "SelectionInfo",
    "SwinBackbone",
    "SwinConfig",
    "Throughput",
    "build_spt",
    "build_swin",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_swin_weights",
    "measure_fps",
    "random_keep",
    "random_stage_keep",
    "register_model",
    "token_grid",
    "token_valid",
]
__version__ = "0.1.0"
