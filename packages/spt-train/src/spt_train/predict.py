"""Run a trained model on a split and score it.

A detector: a predictions file (COCO results json with the ground truth's own image and category
ids), the selection metrics of App. B.3, and the scores of
:func:`spt_train.evaluation.evaluate_predictions` on it. A multi-label classifier (``model.head:
classifier``, PASCAL VOC, Tables 5 and 7, Fig. 4): VOC mAP (``VOCevalcls``) of its logits and the
same selection metrics. Both: the backbone's MACs per image (with a selection they depend on the
image) and, for SPT, every gate's AUROC against its stride's selection labels
(:func:`update_gates`).

Legend: D detections of an image, N images, K classes, B images of a batch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from tqdm import tqdm

from spa_core import SPABlock
from spt_data.io import atomic_write_text
from spt_models import count_macs
from spt_models.detection import batch_select_labels
from spt_models.environment import pick_device
from spt_models.masks import fit_grid, token_valid

from .checkpoint import RunError, load_weights, read_checkpoint, saved_model_config
from .config import RunConfig, to_dict
from .data import DetectionDataset, collate, collate_padded
from .engine import build_model, make_dataset, to_device
from .evaluation import AurocMeter, SelectionMeter, evaluate_predictions, json_safe, multilabel_map
from .table import git_commit

log = logging.getLogger(__name__)


class AuxRecorder:
    """Forward hook on a model's backbone: ``aux`` the selection record of the last forward (SPT's
    ``SelectionInfo``, ..., or None), ``keep`` the mask a ViT was given ([B, h, w] bool or None)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.aux, self.keep = None, None
        # vit_s16 (a classifier's backbone) returns (cls, tokens); a Backbone or a detector's FPN
        # wrapper (maps, aux)
        self.single_scale = not backbone.multiscale
        backbone.register_forward_hook(self, with_kwargs=True)

    def __call__(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self.single_scale:  # forward(x, keep) -> (cls, tokens)
            self.aux, self.keep = None, args[1] if len(args) > 1 else kwargs.get("keep")
        else:
            self.aux = output[1]


@dataclass
class GivenSelection:
    """A ViT's ground-truth selection in the shape of SPT's record: keep [[B, h, w]] at ``strides``,
    valid ``{stride: [B, h, w]}`` real tokens."""

    keep: list[torch.Tensor]
    strides: list[int]
    valid: dict[int, torch.Tensor]


def detections_to_results(
    detections: list[dict[str, torch.Tensor]], targets: list[dict], dataset: DetectionDataset, masks: bool
) -> list[dict[str, Any]]:
    """Detections in the frame -> COCO results in the image's own pixels, named by the ground
    truth's own ids (``image_id`` the record's id, ``category_id`` the dataset's category id)."""
    out = []
    for det, target in zip(detections, targets):
        record = dataset.records[target["index"]]
        sx, sy = target["scale"]
        boxes = det["boxes"].float().cpu() / torch.tensor([sx, sy, sx, sy])  # [D, 4] xyxy in the image
        image_id: Any = int(record.image_id) if record.image_id.isdigit() else record.image_id
        rles = _rles(det, record) if masks and "masks" in det else None
        for j, (box, score, label) in enumerate(
            zip(boxes.tolist(), det["scores"].tolist(), det["labels"].tolist())
        ):
            x1, y1, x2, y2 = box
            item = {
                "image_id": image_id,
                "category_id": dataset.category_ids[label - 1],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
            if rles is not None:
                item["segmentation"] = rles[j]
            out.append(item)
    return out


def _rles(det: dict[str, torch.Tensor], record: Any) -> list[dict]:
    """[D, 1, h, w] mask probabilities in the frame -> COCO RLE at the image's size (threshold 0.5)."""
    m = det["masks"].float().cpu()
    if m.numel() == 0:
        return []
    full = torch.nn.functional.interpolate(m, size=(record.height, record.width), mode="bilinear")[:, 0] > 0.5
    out = []
    for bitmap in full.numpy():
        rle = mask_utils.encode(np.asfortranarray(bitmap.astype(np.uint8)))
        out.append({"size": rle["size"], "counts": rle["counts"].decode("ascii")})
    return out


def load_model(config: RunConfig, checkpoint: str | Path, num_classes: int, device: torch.device) -> Any:
    """The model the config builds with the checkpoint's weights, in eval mode on ``device``.

    The config may differ from the checkpoint's in keys that leave every weight's shape alone
    (inference settings: ``model.backbone.threshold``, ``tau``, a fixed model's ``keep_ratio``):
    the model is evaluated at the config's setting. A key that changes the weights is refused,
    naming it."""
    state = read_checkpoint(checkpoint)
    changes = model_changes(state, config)
    model = build_model(config, num_classes)
    try:
        load_weights(model, state["model"], checkpoint)
    except RunError as e:
        if not changes:
            raise
        raise RunError(
            f"{checkpoint}: checkpoint of another model: {next(iter(changes))} differs from the config "
            f"and changes the weights ({str(e).split(': ', 2)[-1]})"
        ) from None
    for key, (trained, now) in changes.items():
        log.info("%s: evaluated at %s=%r (trained at %r)", checkpoint, key, now, trained)
    return model.to(device).eval()


def model_changes(state: dict[str, Any], config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted ``model.*`` keys whose value differs between a checkpoint's config and ``config`` ->
    (the checkpoint's value, the config's), in key order."""
    saved, now = saved_model_config(state.get("config", {}).get("model", {})), to_dict(config)["model"]

    def diff(a: Any, b: Any, where: str) -> dict[str, tuple[Any, Any]]:
        if isinstance(a, dict) and isinstance(b, dict):
            return {
                k: v
                for key in sorted(set(a) | set(b))
                for k, v in diff(a.get(key), b.get(key), f"{where}.{key}").items()
            }
        return {} if a == b else {where: (a, b)}

    return diff(saved, now, "model") if "config" in state else {}


@torch.no_grad()
def predict(
    config: RunConfig, checkpoint: str | Path, split: str = "val", macs_images: int = 16
) -> tuple[list[dict], dict]:
    """-> (COCO results of every image of ``split``, ``{"selection": per stride, "gate_auroc",
    "gate_auroc_exact", "gate_auroc_error", "select_threshold", "macs"}`` (:func:`selection_report`,
    :func:`backbone_macs` on the first ``macs_images`` images))."""
    device = pick_device(config.device)
    dataset = make_dataset(config, split)
    model = load_model(config, checkpoint, dataset.num_classes, device)
    recorder = AuxRecorder(model.backbone)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.train.batch_size, collate_fn=collate, num_workers=config.train.num_workers
    )
    results, meter, gates = [], SelectionMeter(), AurocMeter()
    for images, targets in tqdm(loader, desc=f"predict {split}"):
        images = [im.to(device) for im in images]
        gpu_targets = [to_device(t, device) for t in targets]
        detections = model(images, gpu_targets)  # targets: only an oracle backbone reads them
        results += detections_to_results(detections, targets, dataset, config.model.head != "faster_rcnn")
        update_selection(meter, recorder.aux, batch_select_labels(gpu_targets), gates)
    report = selection_report(meter, gates, model)
    report["macs"] = backbone_macs(model, dataset, config.data.pad_to, macs_images, device)
    return results, report


def update_selection(
    meter: SelectionMeter,
    aux: Any,
    labels: dict[int, torch.Tensor] | None,
    gates: AurocMeter | None = None,
) -> None:
    """Every selecting block's keep mask against the labels of its stride (SPT, a ViT's given
    selection; without labels the retention and densities are NaN); other models: nothing.
    ``gates``: also every gate's scores (:func:`update_gates`; with labels only)."""
    if aux is None or not hasattr(aux, "keep") or not hasattr(aux, "strides"):
        return
    for keep, stride in zip(aux.keep, aux.strides):
        grid = tuple(keep.shape[1:])
        label = torch.zeros_like(keep) if labels is None else fit_grid(labels[stride], grid)
        meter.update(f"stride{stride}", keep.cpu(), label.cpu(), aux.valid[stride].cpu())
    if gates is not None and labels is not None and hasattr(aux, "logits") and hasattr(aux, "score0"):
        update_gates(gates, aux, labels)


def update_gates(gates: AurocMeter, aux: Any, labels: dict[int, torch.Tensor]) -> None:
    """SPT's gate scores against the selection labels of their stride, real tokens only: s0
    (``aux.score0``, the first gate, key ``"s0"``, in no group) and every SPA block's eq.-4 score
    logits (``aux.logits``: what the block thresholds, ``sigmoid(logit) > threshold``; key
    ``"stride<s>.<i>"``, block i of stride s in forward order, group ``"stride<s>"``). Labels are
    fitted to each grid as eq. 10's targets (:meth:`spt_models.spt.SelectionInfo.losses`)."""
    scored = [("s0", aux.score0, aux.stride0, None)]
    index: Counter[int] = Counter()
    for logits, stride in zip(aux.logits, aux.strides):
        scored.append((f"stride{stride}.{index[stride]}", logits, stride, f"stride{stride}"))
        index[stride] += 1
    for key, logits, stride, group in scored:
        if stride in labels:
            label = fit_grid(labels[stride], tuple(logits.shape[1:]))
            gates.update(key, logits.float().cpu(), label.cpu(), aux.valid[stride].cpu(), group=group)


def selection_report(meter: SelectionMeter, gates: AurocMeter, model: torch.nn.Module) -> dict[str, Any]:
    """-> ``{"selection": {"stride<s>": SelectionMeter's metrics + "auroc" (the stride's blocks'
    pooled gate AUROC, when scored)}, "gate_auroc": {"s0" | "stride<s>.<i>": AUROC}, "gate_auroc_exact",
    "gate_auroc_error", "select_threshold"}``; the gate keys are absent for a model without gates
    (or a split without labels), ``select_threshold`` is None for a model that does not threshold."""
    selection = meter.compute()
    report: dict[str, Any] = {"selection": selection, "select_threshold": select_threshold(model)}
    if not gates.keys:  # nothing scored
        return report
    scores = gates.compute()
    for group, value in scores["groups"].items():
        if group in selection:
            selection[group]["auroc"] = value
    report.update(
        gate_auroc=scores["keys"], gate_auroc_exact=scores["exact"], gate_auroc_error=scores["error"]
    )
    return report


def select_threshold(model: torch.nn.Module) -> float | None:
    """The threshold the model's SPA blocks select with (None: no SPA block, or a fixed keep ratio)."""
    for module in model.modules():
        if isinstance(module, SPABlock):
            return None if module.keep_ratio is not None else float(module.threshold)
    return None


def mean_select_ratio(selection: dict[str, dict[str, Any]]) -> float | None:
    """The mean over strides of the pooled select ratio (None: a model that selects nothing)."""
    ratios = [m["select_ratio"] for m in selection.values() if m["select_ratio"] is not None]
    return sum(ratios) / len(ratios) if ratios else None


@torch.no_grad()
def classify(config: RunConfig, checkpoint: str | Path, split: str = "val", macs_images: int = 16) -> dict:
    """Run a classifier on ``split`` in eval mode (deterministic: no Gumbel noise) -> ``{"logits"
    [N, K], "labels" [N, K], "difficult" [N, K], "class_names" K, "selection" per stride,
    "gate_auroc", "gate_auroc_exact", "gate_auroc_error", "select_threshold"}`` (:func:`selection_report`)
    and ``"macs"`` (:func:`backbone_macs` on the first ``macs_images`` images)."""
    device = pick_device(config.device)
    dataset = make_dataset(config, split)
    model = load_model(config, checkpoint, dataset.num_classes, device)
    recorder = AuxRecorder(model.backbone)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.train.batch_size,
        collate_fn=functools.partial(collate_padded, pad_to=config.data.pad_to),
        num_workers=config.train.num_workers,
    )
    logits, labels, difficult, meter, gates = [], [], [], SelectionMeter(), AurocMeter()
    for images, valid, targets in tqdm(loader, desc=f"classify {split}"):
        targets = [to_device(t, device) for t in targets]
        select, valid = batch_select_labels(targets), valid.to(device)
        out, _ = model(images.to(device), select=select, valid=valid)  # [B, K]
        logits.append(out.float().cpu())
        labels.append(torch.stack([t["labels"] for t in targets]).cpu())
        difficult.append(torch.stack([t["difficult"] for t in targets]).cpu())
        aux = recorder.aux
        if recorder.keep is not None:  # a ViT given the stride-16 labels
            p, keep = model.backbone.patch_size, recorder.keep
            aux = GivenSelection([keep], [p], {p: token_valid(valid, tuple(keep.shape[1:]), p)})
        update_selection(meter, aux, select, gates)
    return {
        "logits": torch.cat(logits),
        "labels": torch.cat(labels),
        "difficult": torch.cat(difficult),
        "class_names": [dataset.categories[c] for c in dataset.category_ids],
        **selection_report(meter, gates, model),
        "macs": backbone_macs(model, dataset, config.data.pad_to, macs_images, device),
    }


def backbone_macs(model: Any, dataset: Any, pad_to: int, num_images: int, device: torch.device) -> dict:
    """Backbone MACs per image (G) over the first ``num_images`` images of ``dataset``, each alone
    (a batch of one) in eval mode with its own selection (and its selection labels, which only an
    oracle backbone reads), counted by :func:`spt_models.count_macs` (MATH attention backend, so
    CPU attention is counted) -> ``{"backbone_g": mean, "backbone_p10_g", "backbone_p90_g"
    (numpy's linear percentiles), "num_images", "of_images", "per_image_g"}`` (None without images).

    A classifier: the image padded to ``pad_to``, the whole model less its head (norm + linear). A
    detector: the image in its own frame as the detector batches it (normalised, padded to a
    multiple of 32, its real extent as ``valid``), the backbone without its FPN (``backbone.body``:
    what ``spt-train bench`` counts as the backbone)."""
    detector = hasattr(model, "roi_heads")
    if not detector:
        head = torch.nn.Sequential(model.norm, model.head)
        head_macs = count_macs(head, torch.zeros(1, model.head.in_features, device=device))
    per_image = []
    for i in range(min(num_images, len(dataset))):
        item = dataset[i]
        if item is None:  # a skipped image (on_error: skip)
            continue
        if detector:
            macs = _detector_backbone_macs(model, item, device)
        else:
            images, valid, targets = collate_padded([item], pad_to)
            select = batch_select_labels([to_device(t, device) for t in targets])
            macs = count_macs(model, images.to(device), select=select, valid=valid.to(device)) - head_macs
        per_image.append(macs / 1e9)
    p10, p90 = np.percentile(per_image, [10, 90]).tolist() if per_image else (None, None)
    return {
        "backbone_g": sum(per_image) / len(per_image) if per_image else None,
        "backbone_p10_g": p10,
        "backbone_p90_g": p90,
        "num_images": len(per_image),
        "of_images": len(dataset),
        "per_image_g": per_image,
    }


def _detector_backbone_macs(model: Any, item: tuple[torch.Tensor, dict], device: torch.device) -> int:
    """MACs of a detector's backbone body on one dataset item: the detector's own batching and
    backbone forward (oracle keep masks included) with its FPN swapped out for the count."""
    image, target = item
    batch, _ = model.transform([image.to(device)])  # normalised, padded to a multiple of 32
    valid = torch.tensor(batch.image_sizes, device=device)  # [1, 2] real (h, w)
    select = batch_select_labels([to_device(target, device)])
    wrapper, fpn = model.backbone, model.backbone.fpn
    wrapper.fpn = torch.nn.Identity()  # BackboneWithFPN.forward then returns the body's maps (NCHW views)
    try:
        return count_macs(wrapper, batch.tensors, valid=valid, select=select)
    finally:
        wrapper.fpn = fpn


def evaluate_checkpoint(
    config: RunConfig,
    checkpoint: str | Path,
    out: str | Path,
    metric: str = "coco",
    split: str = "val",
    macs_images: int = 16,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split``; write ``out`` (JSON, atomic) -> the metrics.

    A detector: predict, write ``<out stem>_predictions.json`` beside ``out``, score it with
    ``metric``. A classifier: :func:`evaluate_classifier` (``metric`` does not apply). Both add the
    selection metrics (``selection``, ``select_ratio``, ``select_threshold``), for SPT the gate
    AUROCs (``gate_auroc``, ``selection.stride<s>.auroc``, ``gate_auroc_exact``,
    ``gate_auroc_error``), the backbone MACs per image of the first ``macs_images`` images
    (``macs``: mean, p10, p90, per image) and provenance (``checkpoint``, ``evaluated_at``,
    ``config``, ``commit``). Layout of the gate AUROCs (threshold-free: does the gate rank the
    object tokens of its stride's selection labels above the others, over real tokens pooled over
    the split's images; null where a block saw no positive or no negative token):

    - ``gate_auroc``: ``{"s0": ..., "stride16.0": ..., ..., "stride32.1": ...}`` one per gate in
      forward order: s0 (the first gate, at its stride, e.g. 8) and block i of each SPA stride;
    - ``selection.stride<s>.auroc``: the pooled tokens of every block of stride s;
    - ``gate_auroc_exact``: true when every score was kept (exact Mann-Whitney U), false past
      :class:`~spt_train.evaluation.AurocMeter`'s token budget (histogram of the logits), then
      ``gate_auroc_error`` bounds the difference to the exact value (else 0.0).
    """
    out = Path(out)
    split_config = getattr(config.data, split)
    if config.model.head == "classifier":
        metrics = evaluate_classifier(config, checkpoint, split, macs_images)
    else:
        results, report = predict(config, checkpoint, split, macs_images)
        predictions = out.with_name(out.stem + "_predictions.json")
        atomic_write_text(predictions, json.dumps(results))
        metrics = evaluate_predictions(split_config.records, predictions, metric)
        metrics.update(json_safe(report))
        metrics["select_ratio"] = mean_select_ratio(metrics["selection"])
        metrics["notes"] += report_notes(metrics, split)
    metrics["checkpoint"] = str(checkpoint)
    changes = model_changes(read_checkpoint(checkpoint, mmap=True), config)  # its config only
    metrics["evaluated_at"] = {key: now for key, (_, now) in changes.items()}  # settings not trained at
    metrics["config"] = to_dict(config)
    metrics["commit"] = git_commit()
    atomic_write_text(out, json.dumps(metrics, indent=1))
    return metrics


def evaluate_classifier(config: RunConfig, checkpoint: str | Path, split: str, macs_images: int) -> dict:
    """-> ``{"metric": "voc_cls", "gt", "num_images", "notes", "cls": {"mAP", "per_class",
    "num_positive"} (fractions in [0, 1], VOCevalcls all-point AP over the logits, difficult
    classes left out), "selection", "select_ratio", "select_threshold", "macs": {"backbone_g",
    ...}}`` and for SPT the gate AUROCs (see :func:`evaluate_checkpoint`), JSON-ready."""
    run = classify(config, checkpoint, split, macs_images)
    report = {k: run[k] for k in ("selection", "select_threshold", "macs") if k in run}
    report.update({k: v for k, v in run.items() if k.startswith("gate_auroc")})
    metrics = json_safe(
        {
            "metric": "voc_cls",
            "gt": str(getattr(config.data, split).records),
            "num_images": len(run["logits"]),
            "notes": [],
            "cls": multilabel_map(
                run["logits"], run["labels"], difficult=run["difficult"], class_names=run["class_names"]
            ),
            **report,
        }
    )
    metrics["select_ratio"] = mean_select_ratio(metrics["selection"])
    metrics["notes"] = report_notes(metrics, split)
    return metrics


def report_notes(metrics: dict[str, Any], split: str) -> list[str]:
    """What the MACs were measured on, and what the selection and gate metrics are not."""
    macs = metrics["macs"]
    notes = [
        f"macs.backbone_g: mean backbone MACs (G) per image over the first {macs['num_images']} of "
        f"{macs['of_images']} {split} images, each alone in eval mode with its own selection "
        "(spt_models.count_macs); backbone_p10_g, backbone_p90_g: their 10th and 90th percentiles"
    ]
    if not metrics["selection"]:
        notes.append("no selection metrics: the model selects no tokens")
    if metrics.get("gate_auroc_exact") is False:
        notes.append(
            "gate_auroc: from histograms of the gate logits (too many tokens to keep every score), "
            f"within {metrics['gate_auroc_error']:.2g} of the exact values"
        )
    return notes


def format_classification(metrics: dict[str, Any]) -> str:
    """Classifier metrics -> the text the CLI prints: mAP, per-class AP and the backbone MACs."""
    cls, macs = metrics["cls"], metrics["macs"]
    rows = [f"{'class':<20}{'AP':>8}{'num_pos':>9}"]
    for name, ap in cls["per_class"].items():
        rows.append(f"{name:<20}{_fmt(ap):>8}{cls['num_positive'][name]:>9d}")
    head = f"VOC multi-label mAP {_fmt(cls['mAP'])} on {metrics['gt']} ({metrics['num_images']} images)"
    return "\n".join([head, *rows, format_macs(macs)])


def format_macs(macs: dict[str, Any]) -> str:
    """``metrics["macs"]`` -> one line: mean backbone GMACs per image, p10 and p90."""
    spread = ""
    if macs.get("backbone_p10_g") is not None:
        spread = f", p10 {_fmt(macs['backbone_p10_g'])}, p90 {_fmt(macs['backbone_p90_g'])}"
    return f"backbone MACs {_fmt(macs['backbone_g'])} G per image{spread} (first {macs['num_images']} images)"


def _fmt(value: float | None) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"
