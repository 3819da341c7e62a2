"""The detector heads, defined once (no torch here: the CLIs' ``--head`` choices and spt-train's
config import them, and a test checks the workflow schema's head enums against them)."""

HEADS = ("faster_rcnn", "mask_rcnn", "cascade_mask_rcnn")  # build_detector's heads
MASK_HEADS = ("mask_rcnn", "cascade_mask_rcnn")  # the heads that predict instance masks
