"""Run a trained model on a split and score it.

A detector: a predictions file (COCO results json with the ground truth's own image and category
ids), the selection metrics of App. B.3, and the scores of
:func:`spt_train.evaluation.evaluate_predictions` on it. A multi-label classifier (``model.head:
classifier``, PASCAL VOC, Tables 5 and 7, Fig. 4): VOC mAP (``VOCevalcls``) of its logits, the same
selection metrics, and the backbone's MACs per image (with a selection they depend on the image).

Legend: D detections of an image, N images, K classes, B images of a batch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from tqdm import tqdm

from spt_data.io import atomic_write_text
from spt_models import VisionTransformer, count_macs
from spt_models.detection import batch_select_labels
from spt_models.masks import fit_grid, token_valid

from .checkpoint import RunError, load_weights, read_checkpoint, saved_model
from .config import RunConfig, to_dict
from .data import DetectionDataset, collate, collate_padded
from .distributed import pick_device
from .engine import build_model, make_dataset, to_device
from .evaluation import SelectionMeter, evaluate_predictions, json_safe, multilabel_map
from .table import git_commit

log = logging.getLogger(__name__)


class AuxRecorder:
    """Forward hook on a model's backbone: ``aux`` the selection record of the last forward (SPT's
    ``SelectionInfo``, ..., or None), ``keep`` the mask a ViT was given ([B, h, w] bool or None)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.aux, self.keep = None, None
        backbone.register_forward_hook(self, with_kwargs=True)

    def __call__(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if isinstance(module, VisionTransformer):  # forward(x, keep) -> (cls, tokens)
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
    saved, now = saved_model(state.get("config", {}).get("model", {})), to_dict(config)["model"]

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
def predict(config: RunConfig, checkpoint: str | Path, split: str = "val") -> tuple[list[dict], dict]:
    """-> (COCO results of every image of ``split``, selection metrics per stride)."""
    device = pick_device(config.device)
    dataset = make_dataset(config, split)
    model = load_model(config, checkpoint, dataset.num_classes, device)
    recorder = AuxRecorder(model.backbone)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.train.batch_size, collate_fn=collate, num_workers=config.train.num_workers
    )
    results, meter = [], SelectionMeter()
    for images, targets in tqdm(loader, desc=f"predict {split}"):
        images = [im.to(device) for im in images]
        gpu_targets = [to_device(t, device) for t in targets]
        detections = model(images, gpu_targets)  # targets: only an oracle backbone reads them
        results += detections_to_results(detections, targets, dataset, config.model.head != "faster_rcnn")
        update_selection(meter, recorder.aux, batch_select_labels(gpu_targets))
    return results, meter.compute()


def update_selection(meter: SelectionMeter, aux: Any, labels: dict[int, torch.Tensor] | None) -> None:
    """Every selecting block's keep mask against the labels of its stride (SPT, a ViT's given
    selection; without labels the retention and densities are NaN); other models: nothing."""
    if aux is None or not hasattr(aux, "keep") or not hasattr(aux, "strides"):
        return
    for keep, stride in zip(aux.keep, aux.strides):
        grid = tuple(keep.shape[1:])
        label = torch.zeros_like(keep) if labels is None else fit_grid(labels[stride], grid)
        meter.update(f"stride{stride}", keep.cpu(), label.cpu(), aux.valid[stride].cpu())


def mean_select_ratio(selection: dict[str, dict[str, Any]]) -> float | None:
    """The mean over strides of the pooled select ratio (None: a model that selects nothing)."""
    ratios = [m["select_ratio"] for m in selection.values() if m["select_ratio"] is not None]
    return sum(ratios) / len(ratios) if ratios else None


@torch.no_grad()
def classify(config: RunConfig, checkpoint: str | Path, split: str = "val", macs_images: int = 16) -> dict:
    """Run a classifier on ``split`` in eval mode (deterministic: no Gumbel noise) -> ``{"logits"
    [N, K], "labels" [N, K], "difficult" [N, K], "class_names" K, "selection" per stride,
    "macs"}`` (:func:`backbone_macs` on the first ``macs_images`` images)."""
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
    logits, labels, difficult, meter = [], [], [], SelectionMeter()
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
        update_selection(meter, aux, select)
    return {
        "logits": torch.cat(logits),
        "labels": torch.cat(labels),
        "difficult": torch.cat(difficult),
        "class_names": [dataset.categories[c] for c in dataset.category_ids],
        "selection": meter.compute(),
        "macs": backbone_macs(model, dataset, config.data.pad_to, macs_images, device),
    }


def backbone_macs(model: Any, dataset: Any, pad_to: int, num_images: int, device: torch.device) -> dict:
    """Mean backbone MACs per image (G) over the first ``num_images`` images of ``dataset``, each
    alone (a batch of one, padded to ``pad_to``), in eval mode with its selection labels:
    :func:`spt_models.count_macs` of the classifier less that of its head (norm + linear)."""
    head = torch.nn.Sequential(model.norm, model.head)
    head_macs = count_macs(head, torch.zeros(1, model.head.in_features, device=device))
    per_image = []
    for i in range(min(num_images, len(dataset))):
        item = dataset[i]
        if item is None:  # a skipped image (on_error: skip)
            continue
        images, valid, targets = collate_padded([item], pad_to)
        select = batch_select_labels([to_device(t, device) for t in targets])
        macs = count_macs(model, images.to(device), select=select, valid=valid.to(device))
        per_image.append((macs - head_macs) / 1e9)
    return {
        "backbone_g": sum(per_image) / len(per_image) if per_image else None,
        "num_images": len(per_image),
        "of_images": len(dataset),
        "per_image_g": per_image,
    }


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
    selection metrics (``selection``, ``select_ratio``) and provenance (``checkpoint``, ``config``,
    ``commit``).
    """
    out = Path(out)
    split_config = getattr(config.data, split)
    if config.model.head == "classifier":
        metrics = evaluate_classifier(config, checkpoint, split, macs_images)
    else:
        results, selection = predict(config, checkpoint, split)
        predictions = out.with_name(out.stem + "_predictions.json")
        atomic_write_text(predictions, json.dumps(results))
        metrics = evaluate_predictions(split_config.records, predictions, metric)
        metrics["selection"] = json_safe(selection)
        metrics["select_ratio"] = mean_select_ratio(metrics["selection"])
    metrics["checkpoint"] = str(checkpoint)
    changes = model_changes(read_checkpoint(checkpoint), config)
    metrics["evaluated_at"] = {key: now for key, (_, now) in changes.items()}  # settings not trained at
    metrics["config"] = to_dict(config)
    metrics["commit"] = git_commit()
    atomic_write_text(out, json.dumps(metrics, indent=1))
    return metrics


def evaluate_classifier(config: RunConfig, checkpoint: str | Path, split: str, macs_images: int) -> dict:
    """-> ``{"metric": "voc_cls", "gt", "num_images", "notes", "cls": {"mAP", "per_class",
    "num_positive"} (fractions in [0, 1], VOCevalcls all-point AP over the logits, difficult
    classes left out), "selection", "select_ratio", "macs": {"backbone_g", ...}}``, JSON-ready."""
    run = classify(config, checkpoint, split, macs_images)
    selection = json_safe(run["selection"])
    macs = run["macs"]
    notes = [
        f"macs.backbone_g: mean backbone MACs (G) per image over the first {macs['num_images']} of "
        f"{macs['of_images']} {split} images, each alone in eval mode (spt_models.count_macs)"
    ]
    if not selection:
        notes.append("no selection metrics: the model selects no tokens")
    return json_safe(
        {
            "metric": "voc_cls",
            "gt": str(getattr(config.data, split).records),
            "num_images": len(run["logits"]),
            "notes": notes,
            "cls": multilabel_map(
                run["logits"], run["labels"], difficult=run["difficult"], class_names=run["class_names"]
            ),
            "selection": selection,
            "select_ratio": mean_select_ratio(selection),
            "macs": macs,
        }
    )


def format_classification(metrics: dict[str, Any]) -> str:
    """Classifier metrics -> the text the CLI prints: mAP, per-class AP and the backbone MACs."""
    cls, macs = metrics["cls"], metrics["macs"]
    rows = [f"{'class':<20}{'AP':>8}{'num_pos':>9}"]
    for name, ap in cls["per_class"].items():
        rows.append(f"{name:<20}{_fmt(ap):>8}{cls['num_positive'][name]:>9d}")
    head = f"VOC multi-label mAP {_fmt(cls['mAP'])} on {metrics['gt']} ({metrics['num_images']} images)"
    tail = f"backbone MACs {_fmt(macs['backbone_g'])} G per image (first {macs['num_images']} images)"
    return "\n".join([head, *rows, tail])


def _fmt(value: float | None) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"
