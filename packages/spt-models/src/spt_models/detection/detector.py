"""``build_detector(backbone, head, num_classes)`` and ``create_detector(name, head, num_classes)``.

Heads: ``faster_rcnn`` and ``mask_rcnn`` (torchvision's, with their defaults) and
``cascade_mask_rcnn`` (:class:`~spt_models.detection.cascade.CascadeRoIHeads`), all on an FPN
(P2-P6, 256 channels) and torchvision's RPN. ``num_classes`` counts the background, as in
torchvision (COCO: 91).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from ..backbone import Backbone
from ..registry import UnknownOptionError, create_model
from .fpn import BackboneWithFPN
from .heads import HEADS
from .rcnn import IMAGENET_MEAN, IMAGENET_STD, NoResizeTransform, SelectRCNN

RESIZE_KEYS = ("min_size", "max_size", "fixed_size", "_skip_resize")
OWN_OPTIONS = ("loss_weights", "fpn_channels", "anchor_sizes", "image_mean", "image_std")


def keyword_names(fn: Callable[..., Any]) -> set[str]:
    """The parameters of ``fn`` that can be passed by keyword (not ``*args`` / ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds}


def detector_options(head: str) -> list[str]:
    """The keyword options :func:`build_detector` takes for ``head``, sorted: its own
    (``fpn_channels``, ...), then torchvision's ``FasterRCNN`` / ``MaskRCNN`` options (``rpn_*``,
    ``box_*``, ``mask_*``) or, for ``cascade_mask_rcnn``, the ``rpn_*`` options and
    :class:`~spt_models.detection.cascade.CascadeRoIHeads`' own."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    rpn = {k for k in keyword_names(FasterRCNN.__init__) if k.startswith("rpn_")}
    if head == "cascade_mask_rcnn":
        from .cascade import CascadeRoIHeads

        options = rpn | (keyword_names(CascadeRoIHeads.__init__) - {"num_classes", "out_channels"})
    else:
        options = keyword_names((MaskRCNN if head == "mask_rcnn" else FasterRCNN).__init__)
        options -= {"backbone", "num_classes"}
    return sorted((options | set(OWN_OPTIONS)) - {"self", *RESIZE_KEYS})


def check_detector_options(head: str, options: Iterable[str]) -> None:
    """Refuse option names :func:`build_detector` does not take for ``head`` (torchvision's
    ``**kwargs`` would swallow them silently) without building anything: a ValueError for the resize
    options, :class:`~spt_models.registry.UnknownOptionError` (did you mean ...) for an unknown one."""
    options = list(options)
    known = detector_options(head)
    resize = sorted(set(options) & set(RESIZE_KEYS))
    if resize:
        raise ValueError(
            f"{resize}: the detector does not resize; resize in the dataset (spt-data resize_policy)"
        )
    for name in options:
        if name not in known:
            raise UnknownOptionError(head, name, known)


def build_detector(
    backbone: Backbone,
    head: str,
    num_classes: int,
    *,
    loss_weights: dict[str, float] | None = None,
    fpn_channels: int = 256,
    anchor_sizes: tuple[int, ...] | None = None,
    image_mean: tuple[float, ...] = IMAGENET_MEAN,
    image_std: tuple[float, ...] = IMAGENET_STD,
    **kwargs: Any,
) -> SelectRCNN:
    """``backbone`` (any multi-scale backbone of the registry) + FPN + ``head``.

    loss_weights: weights of the backbone's auxiliary losses (default ``{"loss_select": 0.01}``, the
    paper's alpha). fpn_channels: the FPN's width (paper: 256; smaller for CPU demos). anchor_sizes:
    one anchor size per FPN level P2-P6 (torchvision: 32, 64, 128, 256, 512), aspect ratios 0.5, 1, 2.
    kwargs: torchvision's ``FasterRCNN`` / ``MaskRCNN`` options (``rpn_*``, ``box_*``); for
    ``cascade_mask_rcnn`` the ``rpn_*`` options go to the RPN and the others to
    :class:`~spt_models.detection.cascade.CascadeRoIHeads`. An unknown option raises
    :class:`~spt_models.registry.UnknownOptionError` (see :func:`detector_options`).
    """
    check_detector_options(head, kwargs)
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    body = BackboneWithFPN(backbone, fpn_channels)
    if anchor_sizes is not None:
        if len(anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs one size per FPN level P2-P6 (5), got {list(anchor_sizes)}")
        sizes = tuple((int(s),) for s in anchor_sizes)
        kwargs["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    if head == "cascade_mask_rcnn":
        from .cascade import CascadeRoIHeads

        rpn_kwargs = {k: v for k, v in kwargs.items() if k.startswith("rpn_")}
        template = FasterRCNN(body, num_classes, **rpn_kwargs)
        head_kwargs = {k: v for k, v in kwargs.items() if k not in rpn_kwargs}
        roi_heads = CascadeRoIHeads(num_classes, out_channels=fpn_channels, **head_kwargs)
    else:
        template = (MaskRCNN if head == "mask_rcnn" else FasterRCNN)(body, num_classes, **kwargs)
        roi_heads = template.roi_heads
    transform = NoResizeTransform(image_mean, image_std)
    return SelectRCNN(body, template.rpn, roi_heads, transform, loss_weights=loss_weights)


def create_detector(
    name: str,
    head: str = "mask_rcnn",
    num_classes: int = 91,
    *,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> SelectRCNN:
    """``build_detector(create_model(name, **backbone_kwargs), head, num_classes, **kwargs)``, e.g.
    ``create_detector("spt_t", head="mask_rcnn", num_classes=11)``. An option it does not take
    (:func:`detector_options`) raises before anything is built."""
    check_detector_options(head, kwargs)
    backbone = create_model(name, **(backbone_kwargs or {}))
    if not backbone.multiscale:
        raise ValueError(f"{name!r} is a single-scale model; detectors need a multi-scale backbone")
    return build_detector(backbone, head, num_classes, **kwargs)
