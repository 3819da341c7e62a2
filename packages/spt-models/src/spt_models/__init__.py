"""Swin and Select and Pack Transformer (SPT) backbones, the baselines (DynamicSwin, SparseViT, DAT,
ViT), detectors and the VOC classifier on any of them, a model registry, Swin weight loading and
profiling. ``create_model("spt_t")``; ``create_detector("spt_t", head="mask_rcnn", num_classes=10)``;
``list_models()``; ``load_swin_weights(model, path)``.

One backbone contract (:mod:`spt_models.backbone`): ``forward(x, valid=None, generator=None) ->
(maps, aux)``, maps the ordered dict ``stage1..stage4`` of NHWC maps (``model.feature_info``), aux
the model's selection record (SPT :class:`SelectionInfo`, DynamicSwin :class:`PruningInfo`,
SparseViT :class:`WindowSelection`: each with ``ratio`` ``{stride: [B]}`` and ``losses(labels)``)
or None (Swin, DAT); timm's ``forward_intermediates(x, indices, output_fmt="NCHW")``. ``vit_s16``
is the classifier's single-scale backbone and returns ``(cls, tokens)``."""

from .backbone import STAGE_NAMES, Backbone, SelectionRecord
from .classifier import Classifier, create_classifier
from .dat import DAT_S, DAT_T, DATBackbone
from .detection import build_detector, create_detector
from .dynamicswin import DYNAMICSWIN_B, DYNAMICSWIN_S, DYNAMICSWIN_T, DynamicSwinBackbone, PruningInfo
from .masks import random_keep, random_stage_keep, token_grid, token_valid
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
    "load_swin_weights",
    "measure_fps",
    "random_keep",
    "random_stage_keep",
    "register_model",
    "token_grid",
    "token_valid",
]
__version__ = "0.1.0"
