"""Detectors on any multi-scale backbone of the registry: Faster / Mask R-CNN (torchvision's heads)
and Cascade Mask R-CNN, through an FPN, with the selection labels and image extents handed to the
backbone (:class:`SelectRCNN`)."""

from .build import HEADS, build_detector, check_detector_options, create_detector, detector_options
from .fpn import BackboneWithFPN
from .rcnn import NoResizeTransform, SelectRCNN, batch_select_labels

__all__ = [
    "HEADS",
    "BackboneWithFPN",
    "NoResizeTransform",
    "SelectRCNN",
    "batch_select_labels",
    "build_detector",
    "check_detector_options",
    "create_detector",
    "detector_options",
]
