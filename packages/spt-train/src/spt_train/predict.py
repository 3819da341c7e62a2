"""Run a trained detector on a split: a predictions file (COCO results json with the ground truth's
own image and category ids), the selection metrics of App. B.3, and the scores of
:func:`spt_train.evaluation.evaluate_predictions` on it.

Legend: D detections of an image, K classes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from tqdm import tqdm

from spt_data.io import atomic_write_text
from spt_models.detection import batch_select_labels
from spt_models.masks import fit_grid

from .config import RunConfig, to_dict
from .data import DetectionDataset, collate
from .distributed import pick_device
from .engine import build_model, make_dataset, to_device
from .evaluation import SelectionMeter, evaluate_predictions, json_safe

log = logging.getLogger(__name__)


class AuxRecorder:
    """Forward hook on the detector's backbone: keeps the selection record of the last forward."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.aux = None
        backbone.register_forward_hook(self)

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.aux = output[1]


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


@torch.no_grad()
def predict(config: RunConfig, checkpoint: str | Path, split: str = "val") -> tuple[list[dict], dict]:
    """-> (COCO results of every image of ``split``, selection metrics per stride)."""
    device = pick_device(config.device)
    dataset = make_dataset(config, split)
    model = build_model(config, dataset.num_classes)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "model" not in state:
        raise ValueError(f"{checkpoint}: not a spt-train checkpoint (no 'model' entry)")
    saved = state.get("config", {}).get("model")
    if saved is not None and saved != to_dict(config)["model"]:
        diff = sorted(
            k
            for k in set(saved) | set(to_dict(config)["model"])
            if saved.get(k) != to_dict(config)["model"].get(k)
        )
        raise ValueError(
            f"{checkpoint}: checkpoint of another model: model.{diff[0]} differs from the config"
        )
    model.load_state_dict(state["model"])
    model.to(device).eval()
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
    """Every SPA block's keep mask against the labels of its stride (SPT); other models: nothing."""
    if aux is None or labels is None or not hasattr(aux, "keep") or not hasattr(aux, "strides"):
        return
    for keep, stride in zip(aux.keep, aux.strides):
        label = fit_grid(labels[stride], tuple(keep.shape[1:]))
        meter.update(f"stride{stride}", keep.cpu(), label.cpu(), aux.valid[stride].cpu())


def evaluate_checkpoint(
    config: RunConfig, checkpoint: str | Path, out: str | Path, metric: str = "coco", split: str = "val"
) -> dict[str, Any]:
    """Predict ``split``, write ``<out stem>_predictions.json`` beside ``out``, score it, add the
    selection metrics and provenance; write ``out`` (JSON, atomic) -> the metrics."""
    out = Path(out)
    results, selection = predict(config, checkpoint, split)
    predictions = out.with_name(out.stem + "_predictions.json")
    atomic_write_text(predictions, json.dumps(results))
    split_config = getattr(config.data, split)
    metrics = evaluate_predictions(split_config.records, predictions, metric)
    metrics["selection"] = json_safe(selection)
    metrics["checkpoint"] = str(checkpoint)
    metrics["config"] = to_dict(config)
    atomic_write_text(out, json.dumps(metrics, indent=1))
    return metrics
