"""Detectors on any multi-scale backbone of the registry: Faster / Mask R-CNN (torchvision's heads)
and Cascade Mask R-CNN, through an FPN, with the selection labels and image extents handed to the
backbone (:class:`SelectRCNN`).

``HEADS`` (and ``MASK_HEADS``) are imported at once and without torch; the other names on first use
(PEP 562), so ``from spt_models.detection import HEADS`` is fast (the CLIs' ``--help``)."""

from .._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
