"""Detectors on any multi-scale backbone of the registry: Faster / Mask R-CNN (torchvision's heads)
and Cascade Mask R-CNN, through an FPN, with the selection labels and image extents handed to the
backbone (:class:`SelectRCNN`).

``HEADS`` (and ``MASK_HEADS``) are imported at once and without torch; the other names on first use
(PEP 562), so ``from spt_models.detection import HEADS`` is fast (the CLIs' ``--help``)."""

import importlib

from .heads import HEADS, MASK_HEADS

_EXPORTS = {
    "build_detector": "detector",
    "check_detector_options": "detector",
    "create_detector": "detector",
    "detector_options": "detector",
    "BackboneWithFPN": "fpn",
    "NoResizeTransform": "rcnn",
    "SelectRCNN": "rcnn",
    "batch_select_labels": "rcnn",
}

__all__ = [
    "HEADS",
    "MASK_HEADS",
    "BackboneWithFPN",
    "NoResizeTransform",
    "SelectRCNN",
    "batch_select_labels",
    "build_detector",
    "check_detector_options",
    "create_detector",
    "detector_options",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
