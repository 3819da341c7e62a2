"""Cascade R-CNN RoI heads: plugged into torchvision's MaskRCNN (train step, gradients, background
images, eval outputs), per-stage IoU assignment, box coding, test-time score averaging against
mmdetection / detectron2 references, and the parameter count of the Swin config."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator

from spt_models.detection.cascade import (
    STAGE_IOU,
    STAGE_STDS,
    CascadeRoIHeads,
    average_scores,
    coder_weights,
    refine_boxes,
    sample_stage,
)

NUM_CLASSES = 5
H, W = 128, 160
C = 16  # tiny channel width for the fast model tests


class TinyBackbone(nn.Module):
    """images [B, 3, H, W] -> {"0".."3": [B, C, H / 4 / 2^l, W / 4 / 2^l]} (an FPN stand-in)."""

    out_channels = C

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, C, 4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(C, C, 3, stride=2, padding=1) for _ in range(3))

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = F.relu(self.stem(x))
        out = OrderedDict([("0", x)])
        for i, down in enumerate(self.downs):
            x = F.relu(down(x))
            out[str(i + 1)] = x
        return out


def tiny_heads(**kwargs) -> CascadeRoIHeads:
    return CascadeRoIHeads(
        NUM_CLASSES,
        out_channels=C,
        conv_channels=C,
        representation_size=32,
        mask_channels=C,
        batch_size_per_image=64,
        **kwargs,
    )


def tiny_mask_rcnn() -> MaskRCNN:
    torch.manual_seed(0)
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    model = MaskRCNN(
        TinyBackbone(),
        NUM_CLASSES,
        min_size=H,
        max_size=W,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=64,
        rpn_post_nms_top_n_train=32,
        rpn_pre_nms_top_n_test=64,
        rpn_post_nms_top_n_test=32,
    )
    model.roi_heads = tiny_heads()
    return model


def target(boxes: list[list[float]], labels: list[int]) -> dict[str, Tensor]:
    """Boxes [G, 4] with filled-rectangle masks [G, H, W]."""
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros(len(boxes), H, W, dtype=torch.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, b.int().tolist()):
        m[y1:y2, x1:x2] = 1
    return {"boxes": b, "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


TWO_OBJECTS = target([[10, 20, 60, 90], [70, 30, 150, 120]], [1, 3])
ONE_OBJECT = target([[40, 40, 100, 100]], [2])
NO_OBJECT = target([], [])


@pytest.mark.parametrize(
    "targets",
    [[TWO_OBJECTS, ONE_OBJECT], [TWO_OBJECTS, NO_OBJECT], [NO_OBJECT, NO_OBJECT]],
    ids=["objects", "one-background-image", "all-background"],
)
def test_train_step_losses_finite_and_roi_heads_get_gradients(targets):
    model = tiny_mask_rcnn().train()
    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    losses = model(list(images), targets)
    expected = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert set(losses) == expected
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), f"{name} = {value}"
    sum(losses.values()).backward()
    for name, p in model.roi_heads.named_parameters():
        assert p.grad is not None, f"roi_heads.{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"roi_heads.{name} has a non-finite gradient"
    if any(len(t["boxes"]) for t in targets):  # positives exist: mask and box losses are not zero
        assert losses["loss_mask"] > 0 and losses["loss_box_reg"] > 0


def test_eval_detections_have_consistent_shapes():
    model = tiny_mask_rcnn().eval()
    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        detections = model(list(images))
    assert len(detections) == 2
    for det in detections:
        D = det["boxes"].shape[0]
        assert 0 < D <= model.roi_heads.detections_per_img
        assert det["boxes"].shape == (D, 4)
        assert det["labels"].shape == (D,) and det["labels"].dtype == torch.int64
        assert ((det["labels"] >= 1) & (det["labels"] < NUM_CLASSES)).all()
        assert det["scores"].shape == (D,) and (det["scores"] > model.roi_heads.score_thresh).all()
        assert det["masks"].shape == (D, 1, H, W)  # pasted by GeneralizedRCNN.transform
        assert (det["boxes"][:, 2:] <= torch.tensor([W, H])).all() and (det["boxes"] >= 0).all()


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train-no-gt"])
def test_no_proposals(training):
    heads = tiny_heads().train(training)
    features = {str(lvl): torch.randn(1, C, H // 4 >> lvl, W // 4 >> lvl) for lvl in range(4)}
    detections, losses = heads(features, [torch.zeros(0, 4)], [(H, W)], [NO_OBJECT] if training else None)
    if training:
        assert detections == [] and set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
        assert all(v == 0 for v in losses.values())
    else:
        (det,) = detections
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)
        assert det["masks"].shape == (0, 1, 28, 28) and losses == {}


def test_stage_assignment_follows_stage_iou():
    """Proposals at IoU 0.55 and 0.65 to the gt: stage 1 (0.5) takes both, stage 2 (0.6) one,
    stage 3 (0.7) none. The gt itself, added to the proposals, is positive at every stage."""
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    proposals = torch.tensor([[0.0, 0.0, 55.0, 100.0], [0.0, 0.0, 65.0, 100.0], [200.0, 200.0, 250.0, 250.0]])
    for iou, expected_pos in zip(STAGE_IOU, ([1, 1, 0], [0, 1, 0], [0, 0, 0])):
        s = sample_stage(
            [proposals, proposals],
            [gt, torch.zeros(0, 4)],
            [torch.tensor([4]), torch.zeros(0, dtype=torch.int64)],
            iou_thresh=iou,
            batch_size_per_image=512,
            positive_fraction=0.25,
        )
        order = s.boxes[0][:, 2].argsort()  # the sampler shuffles; sort by x2: 55, 65, 100 (gt), 250
        assert s.is_gt[0][order].tolist() == [False, False, True, False]
        assert (s.labels[0][order] > 0).tolist() == [*expected_pos[:2], True, False]
        assert s.labels[0][order][2] == 4 and s.matched_idxs[0].tolist() == [0] * 4
        assert s.labels[1].tolist() == [0, 0, 0] and not s.is_gt[1].any()  # background-only image


def test_sampler_caps_rois_and_positive_fraction():
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    proposals = torch.cat([gt.repeat(40, 1), torch.tensor([[200.0, 200.0, 250.0, 250.0]]).repeat(40, 1)])
    s = sample_stage(
        [proposals],
        [gt],
        [torch.tensor([1])],
        iou_thresh=0.5,
        batch_size_per_image=32,
        positive_fraction=0.25,
    )
    assert len(s.boxes[0]) == 32 and (s.labels[0] > 0).sum() == 8


def test_stage_coder_weights_are_inverse_stds():
    assert coder_weights(STAGE_STDS[0]) == (10.0, 10.0, 5.0, 5.0)  # torchvision's Faster R-CNN default
    with pytest.raises(ValueError, match=r"4 positive numbers, got \(0.1, 0.0, 0.2, 0.2\)"):
        coder_weights((0.1, 0.0, 0.2, 0.2))


@pytest.mark.parametrize("stds", STAGE_STDS, ids=["stage1", "stage2", "stage3"])
def test_class_agnostic_box_coding_round_trip(stds):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 100
    proposals = torch.cat([xy, xy + 5 + torch.rand(20, 2, generator=g) * 50], dim=1)  # [N, 4]
    gt = proposals + torch.randn(20, 4, generator=g) * 3
    coder = det_utils.BoxCoder(coder_weights(stds))
    deltas = coder.encode_single(gt, proposals)  # [N, 4]
    big = (1000, 1000)  # no clipping
    decoded = refine_boxes(deltas, [proposals[:12], proposals[12:]], coder, [big, big])
    torch.testing.assert_close(torch.cat(decoded), gt, atol=1e-3, rtol=0)
    assert not refine_boxes(deltas.requires_grad_(), [proposals], coder, [big])[0].requires_grad
    # the encoding scales with 1/std: stage deltas are the stage-1 deltas times std1/std
    ref = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(gt, proposals)
    torch.testing.assert_close(deltas, ref / torch.tensor(stds), atol=1e-4, rtol=1e-4)


STAGE_LOGITS = torch.tensor(
    [[0.0, 2.0, -1.0, 0.5, 1.0], [1.0, -2.0, 3.0, 0.0, 0.0], [-1.0, 0.5, 0.5, 4.0, -3.0]]
)


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("logits", F.softmax(STAGE_LOGITS.mean(0), -1)),  # mmdetection: mean of cls_score, then softmax
        ("probs", F.softmax(STAGE_LOGITS, -1).mean(0)),  # detectron2: mean of the softmaxes
    ],
)
def test_test_time_scores_average_the_stages(mode, reference):
    """Stage classifiers forced to fixed logits (weights 0, biases set): every detection's score is
    the reference average for its class, boxes are the proposal (zero box deltas)."""
    heads = tiny_heads(score_average=mode, score_thresh=0.0).eval()
    with torch.no_grad():
        for predictor, logits in zip(heads.box_predictors, STAGE_LOGITS):
            predictor.cls_score.weight.zero_()
            predictor.cls_score.bias.copy_(logits)
            predictor.bbox_pred.weight.zero_()
            predictor.bbox_pred.bias.zero_()
        features = {str(lvl): torch.randn(1, C, H // 4 >> lvl, W // 4 >> lvl) for lvl in range(4)}
        proposal = torch.tensor([[10.0, 20.0, 70.0, 90.0]])
        (det,), _ = heads(features, [proposal], [(H, W)])
    assert sorted(det["labels"].tolist()) == [1, 2, 3, 4]
    torch.testing.assert_close(det["scores"], reference[det["labels"]], atol=1e-6, rtol=0)
    torch.testing.assert_close(det["boxes"], proposal.expand(4, 4))
    assert det["scores"].tolist() == sorted(det["scores"].tolist(), reverse=True)


def test_score_average_modes_differ_and_reject_unknown():
    stage_logits = list(STAGE_LOGITS[:, None])  # 3 x [1, K]
    assert not torch.allclose(average_scores(stage_logits, "logits"), average_scores(stage_logits, "probs"))
    with pytest.raises(ValueError, match=r"score average must be one of \('logits', 'probs'\), got 'max'"):
        average_scores(stage_logits, "max")


def test_test_time_boxes_are_refined_by_every_stage_in_turn():
    """Stage s predicts the constant deltas d_s (weights 0): the output box is the proposal decoded
    by stage 1's coder, then stage 2's, then stage 3's."""
    deltas = torch.tensor([[0.5, -0.3, 0.2, 0.1], [-0.2, 0.4, -0.1, 0.3], [0.3, 0.1, 0.2, -0.2]])
    heads = tiny_heads(score_thresh=0.0).eval()
    with torch.no_grad():
        for predictor, d in zip(heads.box_predictors, deltas):
            predictor.bbox_pred.weight.zero_()
            predictor.bbox_pred.bias.copy_(d)
        features = {str(lvl): torch.randn(1, C, H // 4 >> lvl, W // 4 >> lvl) for lvl in range(4)}
        expected = torch.tensor([[30.0, 40.0, 90.0, 100.0]])
        for d, stds in zip(deltas, STAGE_STDS):
            expected = det_utils.BoxCoder(coder_weights(stds)).decode_single(d[None], expected)
        (det,), _ = heads(features, [torch.tensor([[30.0, 40.0, 90.0, 100.0]])], [(H, W)])
    assert len(det["boxes"]) == NUM_CLASSES - 1  # one box, every foreground class
    torch.testing.assert_close(det["boxes"], expected.expand(NUM_CLASSES - 1, 4), atol=1e-4, rtol=0)
    assert not torch.allclose(expected, torch.tensor([[30.0, 40.0, 90.0, 100.0]]), atol=1)


def _conv_fc_head(conv: int, fc: int, c: int = 256, roi: int = 7) -> int:
    """4 x (conv 3x3 without bias + BatchNorm weight/bias) + fc from the flattened RoI."""
    return 4 * (c * conv * 9 + 2 * conv) + (conv * roi * roi * fc + fc)


def _predictor(fc: int, k: int) -> int:
    return (fc * k + k) + (fc * 4 + 4)  # class scores + class-agnostic deltas


@pytest.mark.parametrize(
    ("box_head", "expected"),
    [
        ("4conv1fc", 3 * (_conv_fc_head(256, 1024) + _predictor(1024, 91))),
        ("2fc", 3 * ((256 * 49 * 1024 + 1024) + (1024 * 1024 + 1024) + _predictor(1024, 91))),
    ],
)
def test_box_head_parameter_count(box_head, expected):
    """91 classes: 4conv1fc 45,914,397 (the Swin cascade config, default), 2fc 41,979,165."""
    assert expected == {"4conv1fc": 45_914_397, "2fc": 41_979_165}[box_head]
    with torch.device("meta"):
        heads = CascadeRoIHeads(91, box_head=box_head, mask=False)
    assert sum(p.numel() for p in heads.parameters()) == expected


def test_mask_head_parameter_count():
    """torchvision mask head: 4 x conv 3x3 256 (with bias) + deconv 2x2 256 + 1x1 conv to 91 classes."""
    with torch.device("meta"):
        heads = CascadeRoIHeads(91, mask=True)
    mask = 4 * (256 * 256 * 9 + 256) + (256 * 256 * 4 + 256) + (256 * 91 + 91)
    assert mask == 2_646_107
    assert sum(p.numel() for p in heads.parameters()) == 45_914_397 + mask


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage_iou": (0.5, 0.6)}, "one entry per stage, got 2, 3 and 3"),
        ({"stage_iou": (0.5, 0.6, 1.5)}, r"stage_iou must be in \(0, 1\], got \(0.5, 0.6, 1.5\)"),
        ({"box_head": "3fc"}, r"box_head must be one of \('4conv1fc', '2fc'\), got '3fc'"),
        ({"score_average": "max"}, "score_average must be one of"),
    ],
)
def test_constructor_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_heads(**kwargs)


def test_training_target_errors_name_the_image():
    heads = tiny_heads().train()
    features = {str(lvl): torch.randn(2, C, H // 4 >> lvl, W // 4 >> lvl) for lvl in range(4)}
    no_masks = {k: v for k, v in ONE_OBJECT.items() if k != "masks"}
    with pytest.raises(ValueError, match=r"target of image 1 lacks \['masks'\]"):
        heads(features, [torch.zeros(0, 4)] * 2, [(H, W)] * 2, [ONE_OBJECT, no_masks])
    with pytest.raises(ValueError, match="needs one target per image"):
        heads(features, [torch.zeros(0, 4)] * 2, [(H, W)] * 2, None)
