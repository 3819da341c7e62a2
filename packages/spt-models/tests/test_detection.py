"""Detectors on every backbone: train steps with padded batches and selection labels, every
parameter reached, eval detections, full-size parameter counts, label alignment with spt-data."""

import pytest
import torch

from spt_models import SPTBackbone, count_params, create_detector, list_multiscale_models
from spt_models.detection import HEADS, batch_select_labels, check_detector_options, detector_options
from spt_models.registry import UnknownOptionError

MULTI_SCALE = list_multiscale_models()
SIZES = [(256, 320), (200, 288)]  # image 1 is padded inside the batch (valid smaller than the batch)


def target(h: int, w: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 20:120, 10:100] = 1
    masks[1, 150:190, 200:260] = 1
    return {
        "boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [200.0, 150.0, 260.0, 190.0]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "select": {s: torch.rand(-(-h // s), -(-w // s), generator=g) < 0.3 for s in (8, 16, 32)},
    }


def batch():
    images = [
        torch.rand(3, h, w, generator=torch.Generator().manual_seed(i)) for i, (h, w) in enumerate(SIZES)
    ]
    return images, [target(h, w, i) for i, (h, w) in enumerate(SIZES)]


FEW_ROIS = {  # a few RoIs per image keep the CPU test fast; the heads' code paths are the same
    "faster_rcnn": {
        "rpn_post_nms_top_n_train": 64,
        "rpn_post_nms_top_n_test": 64,
        "box_batch_size_per_image": 32,
    },
    "mask_rcnn": {
        "rpn_post_nms_top_n_train": 64,
        "rpn_post_nms_top_n_test": 64,
        "box_batch_size_per_image": 32,
    },
    "cascade_mask_rcnn": {
        "rpn_post_nms_top_n_train": 64,
        "rpn_post_nms_top_n_test": 64,
        "batch_size_per_image": 32,
    },
}


def train_step(name: str, head: str) -> None:
    torch.manual_seed(0)
    kwargs = {"backbone_kwargs": {"drop_path": 0.0}, **FEW_ROIS[head]}
    model = create_detector(name, head, num_classes=3, **kwargs).train()
    images, targets = batch()
    losses = model(images, targets, generator=torch.Generator().manual_seed(0))
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    expected |= {"loss_mask"} if "mask" in head else set()
    expected |= {"loss_select"} if isinstance(model.backbone.body, SPTBackbone) else set()
    expected |= {"loss_ratio"} if name.startswith("dynamicswin") else set()
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient (DDP find_unused_parameters=False would fail): {missing[:8]}"
    model.eval()
    with torch.no_grad():
        detections = model(images, targets)  # targets: the oracle reads its selection from them
    assert len(detections) == 2
    for det, (h, w) in zip(detections, SIZES):
        assert det["boxes"].shape[1] == 4 and det["scores"].shape == det["labels"].shape
        assert bool((det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all())
        if "mask" in head:
            assert det["masks"].shape[1:] == (1, h, w)


@pytest.mark.slow
@pytest.mark.parametrize("name", MULTI_SCALE)
def test_mask_rcnn_train_step_and_eval_on_every_backbone(name):
    train_step(name, "mask_rcnn")


# one backbone per code path (the S/B variants differ in depth and width only, and every backbone
# runs under Mask R-CNN above, whose RPN, box head and FPN are Faster R-CNN's)
T_SIZE = [
    "swin_t",
    "spt_t",
    "spt_t12",
    "spt_t_fixed",
    "spt_t_oracle",
    "dynamicswin_t",
    "sparsevit_t",
    "dat_t",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", T_SIZE)
def test_faster_rcnn_train_step_and_eval(name):
    train_step(name, "faster_rcnn")


@pytest.mark.parametrize("name", ["swin_t", "spt_t"])
def test_cascade_mask_rcnn_train_step_and_eval(name):
    train_step(name, "cascade_mask_rcnn")


def test_without_labels_the_select_loss_is_absent_not_an_error():
    model = create_detector("spt_t12", "faster_rcnn", num_classes=3, backbone_kwargs={"depths": (1, 1, 2, 2)})
    images, targets = batch()
    for t in targets:
        del t["select"]
    losses = model.train()(images, targets)
    assert "loss_select" not in losses and all(torch.isfinite(v) for v in losses.values())
    targets[0]["select"] = target(*SIZES[0], 0)["select"]
    with pytest.raises(ValueError, match=r"targets \[1\] have no 'select' labels while others have"):
        model(images, targets)


def test_select_weight_is_alpha():
    torch.manual_seed(0)
    images, targets = batch()
    losses = {}
    for alpha in (0.01, 1.0):
        torch.manual_seed(0)
        model = create_detector(
            "spt_t12",
            "faster_rcnn",
            3,
            backbone_kwargs={"depths": (1, 1, 2, 2)},
            loss_weights={"loss_select": alpha},
        ).train()
        losses[alpha] = model(images, targets, generator=torch.Generator().manual_seed(0))["loss_select"]
    torch.testing.assert_close(losses[1.0] * 0.01, losses[0.01])


def test_batch_select_labels_pads_each_image_with_negatives():
    a = {"boxes": torch.zeros(0, 4), "select": {16: torch.ones(2, 3, dtype=torch.bool)}}
    b = {"boxes": torch.zeros(0, 4), "select": {16: torch.ones(3, 2, dtype=torch.bool)}}
    out = batch_select_labels([a, b])
    assert out[16].shape == (2, 3, 3)
    assert out[16][0].sum() == 6 and not out[16][0, 2].any() and not out[16][1, :, 2].any()
    assert batch_select_labels([{"boxes": torch.zeros(0, 4)}]) is None


def test_labels_line_up_with_spt_data_for_the_resized_frame():
    """A box at a known position: spt-data's labels for the resized frame are the labels the SPT's
    selection loss compares with its stride-16 scores, cell for cell."""
    spt_data = pytest.importorskip("spt_data")
    import numpy as np

    record = spt_data.Record.build(
        image_id="a",
        image_path="a.jpg",
        width=640,
        height=400,
        boxes=np.array([[320.0, 160.0, 400.0, 240.0]]),
        category_ids=[3],
        category_names=("car",),
    )
    frame = spt_data.resize_policy(640, 400, short=200, long=400)  # scale 0.5: 320 x 200, padded 320 x 224
    labels = spt_data.selection_labels(record, frame)
    grid16 = torch.from_numpy(labels[16])
    # the box lands on pixels [160, 200) x [80, 120) of the frame: cells 10..12 x 5..7 at stride 16
    expected = torch.zeros_like(grid16)
    expected[5:8, 10:13] = True
    assert torch.equal(grid16, expected)
    model = create_detector("spt_t12", "faster_rcnn", 3, backbone_kwargs={"depths": (1, 1, 2, 2)}).train()
    seen = {}
    original = type(model.backbone.body.features[5][0]).forward

    def spy(block, x, *args, **kwargs):
        seen.setdefault("grid", x.shape[1:3])
        return original(block, x, *args, **kwargs)

    image = torch.rand(3, frame.out_h, frame.out_w)
    t = {"boxes": torch.tensor([[160.0, 80.0, 200.0, 120.0]]), "labels": torch.tensor([1])}
    t["select"] = {s: torch.from_numpy(v) for s, v in labels.items()}
    batched = batch_select_labels([t])
    assert torch.equal(batched[16][0], grid16)
    type(model.backbone.body.features[5][0]).forward = spy
    try:
        model([image], [t])
    finally:
        type(model.backbone.body.features[5][0]).forward = original
    assert tuple(seen["grid"]) == tuple(grid16.shape)  # the stage-3 token grid is the label grid


PAPER_PARAMS_M = {  # paper Tables 1-2 (#Params), 91 torchvision classes
    ("swin_t", "mask_rcnn"): 48,
    ("swin_s", "mask_rcnn"): 69,
    ("spt_t", "mask_rcnn"): 55,
    ("spt_s", "mask_rcnn"): 76,
}


@pytest.mark.parametrize(("name", "head"), list(PAPER_PARAMS_M))
def test_mask_rcnn_params_match_the_paper(name, head):
    with torch.device("meta"):
        model = create_detector(name, head, num_classes=91)
    assert abs(count_params(model) / 1e6 - PAPER_PARAMS_M[name, head]) < 1.0


def test_cascade_params_differ_from_the_paper_by_mmdetections_extra_heads():
    """Cascade Mask R-CNN + Swin-B: paper 145 M. mmdetection's (the paper's) has class-specific box
    regression for 80 classes and a mask head per stage: 3 x 15,618,449 + 3 x 2,643,280 head
    parameters against our 3 x 15,304,799 (class-agnostic, 91 classes) + 2,646,107 (one mask head).
    + SPT-B: paper 153 M, i.e. 8 M over Swin-B; our SPT-B adds 4 full SPA blocks at C = 512 (12.6 M)
    and the gates, so it lands 4.6 M above the paper (the paper's +8 M is 2.5 such blocks)."""
    with torch.device("meta"):
        swin_b = create_detector("swin_b", "cascade_mask_rcnn", num_classes=91)
        spt_b = create_detector("spt_b", "cascade_mask_rcnn", num_classes=91)
    mmdet_extra = 3 * 15_618_449 + 3 * 2_643_280 - (3 * 15_304_799 + 2_646_107)
    assert abs((count_params(swin_b) + mmdet_extra) / 1e6 - 145) < 1.0
    fresh = spt_b.backbone.body.fresh_keys()  # gates + the 4 extra stage-3 blocks: what Swin-B lacks
    params = dict(spt_b.backbone.body.named_parameters())
    assert count_params(spt_b) - count_params(swin_b) == sum(params[k].numel() for k in fresh if k in params)
    assert abs((count_params(spt_b) + mmdet_extra) / 1e6 - (153 + 4.6)) < 0.1


def test_fpn_width_and_anchor_sizes_are_options():
    with torch.device("meta"):
        model = create_detector(
            "swin_t", "faster_rcnn", 11, fpn_channels=64, anchor_sizes=(8, 16, 32, 64, 128)
        )
    assert model.backbone.out_channels == 64 and model.rpn.anchor_generator.sizes[0] == (8,)
    with pytest.raises(
        ValueError, match=r"anchor_sizes needs one size per FPN level P2-P6 \(5\), got \[8, 16\]"
    ):
        create_detector("swin_t", "faster_rcnn", 11, anchor_sizes=(8, 16))


@pytest.mark.parametrize(
    ("head", "option", "message"),
    [
        (
            "faster_rcnn",
            "fpn_chanels",
            "faster_rcnn: unknown option 'fpn_chanels' (did you mean 'fpn_channels'?)",
        ),
        (
            "mask_rcnn",
            "anchor_size",
            "mask_rcnn: unknown option 'anchor_size' (did you mean 'anchor_sizes'?)",
        ),
        (
            "faster_rcnn",
            "box_batch_size_per_imag",
            "faster_rcnn: unknown option 'box_batch_size_per_imag' (did you mean 'box_batch_size_per_image'?)",
        ),
        (  # torchvision's name; the cascade's heads take their own
            "cascade_mask_rcnn",
            "box_score_thresh",
            "cascade_mask_rcnn: unknown option 'box_score_thresh' (did you mean 'score_thresh'?)",
        ),
    ],
)
def test_an_unknown_detector_option_is_refused_with_did_you_mean(head, option, message):
    """torchvision's ``**kwargs`` would swallow a misspelt option and build another model."""
    with pytest.raises(UnknownOptionError) as err:
        create_detector("swin_t", head, 3, **{option: 8})
    assert str(err.value) == message and err.value.option == option
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    with pytest.raises(UnknownOptionError, match="did you mean"):
        check_detector_options(head, [option])


def test_every_listed_detector_option_is_taken():
    """``detector_options`` is what the builders accept: each torchvision option name reaches them."""
    for head in HEADS:
        options = detector_options(head)
        assert {"fpn_channels", "anchor_sizes", "loss_weights"} <= set(options)
        assert not set(options) & {"min_size", "max_size", "num_classes", "backbone", "self"}
    assert "box_batch_size_per_image" in detector_options("faster_rcnn")
    assert "mask_head" in detector_options("mask_rcnn") and "mask_head" not in detector_options("faster_rcnn")
    assert "batch_size_per_image" in detector_options("cascade_mask_rcnn")
    assert "box_batch_size_per_image" not in detector_options("cascade_mask_rcnn")
    with torch.device("meta"):
        create_detector("swin_t", "faster_rcnn", 3, box_detections_per_img=7, rpn_nms_thresh=0.6)
