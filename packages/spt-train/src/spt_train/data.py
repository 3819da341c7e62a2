"""Datasets over spt-data outputs: records Parquet + selection-label Parquet + images.

Legend: K classes, G instances of an image, h_s, w_s its label grid at stride s.

Every image is resized to the frame spt-data's ``resize_policy`` gives (``short``, ``long``,
``pad_to``: the parameters the labels were made with, checked against the label file), so the
stored selection labels are the labels of the image the model sees. Horizontal flips use spt-data's
``hflip_grid`` for the labels. The detector pads the batch; the dataset never pads.

A label file must have been made from the dataset's records (spt-data's fingerprint of their
content, image sizes included: ``labels_source_problem``); a file written before labels kept it is
used with a warning. With ``on_error="skip"`` a batch whose every image was skipped stops with a
:class:`DataError` naming the records file (an empty batch cannot train a detector).

Training targets leave out crowd and ignore instances (torchvision's heads cannot use them; they
stay in the selection labels and in evaluation); the count is logged once per dataset.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from spt_data import (
    DataError,
    Frame,
    hflip_grid,
    labels_source_problem,
    read_labels,
    read_records,
    resize_policy,
)
from spt_data.records import Record

log = logging.getLogger(__name__)

__all__ = ["ClassificationDataset", "DetectionDataset", "ImageError", "collate", "collate_padded"]

_warned_unbound: set[str] = set()  # label files without a records fingerprint, warned about once


class ImageError(DataError):
    """A missing or unreadable image; the message names the file and the record."""


class DetectionDataset(torch.utils.data.Dataset):
    """Item ``i`` -> (image [3, out_h, out_w] float in [0, 1], target) or None (a skipped image).

    target: ``boxes`` [G, 4] float xyxy in the frame, ``labels`` [G] int64 in 1..K (contiguous
    over the dataset's sorted category ids, 0 is background), ``masks`` [G, out_h, out_w] uint8 (with
    ``masks=True``), ``select`` ``{stride: [h_s, w_s] bool}`` (with a label file), ``index`` (i),
    ``scale`` [2] (out_w / width, out_h / height) to map detections back to the image.

    Flips (training, probability ``flip``) are drawn from a generator seeded by (seed, epoch, i),
    so they do not depend on workers or on where a run resumed: call :meth:`set_epoch`.
    """

    def __init__(
        self,
        records: str | Path,
        labels: str | Path | None = None,
        images: str | Path | None = None,
        *,
        short: int | None = 800,
        long: int | None = 1333,
        pad_to: int = 32,
        flip: float = 0.0,
        masks: bool = False,
        on_error: str = "raise",
        seed: int = 0,
    ) -> None:
        dataset = read_records(records)
        self.path, self.records = Path(records), dataset.records
        self.format, self.categories = dataset.format, dataset.categories  # {id: name}
        self.category_ids = sorted(dataset.categories)
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}  # category id -> 1..K
        self.images = Path(images) if images is not None else None
        self.short, self.long, self.pad_to = short, long, pad_to
        self.flip, self.masks, self.on_error, self.seed = flip, masks, on_error, seed
        self.epoch, self.skipped = 0, 0
        self.last_skip = ""  # the message of the last skipped image
        self.labels = read_labels(labels) if labels is not None else None
        self.strides: tuple[int, ...] = ()
        if self.labels is not None:
            self._check_labels(Path(labels))
        dropped = sum(int((r.iscrowd | r.ignore).sum()) for r in self.records)
        if dropped:
            log.info("%s: %d crowd/ignore instances are not training targets", self.path, dropped)

    @property
    def num_classes(self) -> int:
        """K + 1 (background), as torchvision counts."""
        return len(self.category_ids) + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frame(self, record: Record) -> Frame:
        return resize_policy(
            record.width, record.height, short=self.short, long=self.long, pad_to=self.pad_to
        )

    def image_path(self, record: Record) -> Path:
        return self.images / record.image_path if self.images is not None else Path(record.image_path)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]] | None:
        record = self.records[index]
        frame = self.frame(record)
        image = self._load(record, frame)
        if image is None:
            return None
        target = self._target(record, frame, index)
        rng = random.Random(hash((self.seed, self.epoch, index)))
        if self.flip and rng.random() < self.flip:
            image, target = hflip(image, target, frame)
        return image, target

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, dict[str, Any]] | None]:
        """The items of a batch (the DataLoader's batched fetch); DataError if every one was skipped."""
        items, first = [], ""
        for i in indices:
            items.append(self[i])
            if items[-1] is None and not first:
                first = self.last_skip
        if indices and all(item is None for item in items):
            raise DataError(
                f"{self.path}: all {len(items)} images of a batch were skipped (on_error: skip), "
                f"the batch is empty; the first: {first}"
            )
        return items

    def _load(self, record: Record, frame: Frame) -> Tensor | None:
        """The resized image [3, out_h, out_w] float in [0, 1]; a bad file raises or, with
        ``on_error="skip"``, is logged, counted and returns None."""
        path = self.image_path(record)
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (record.width, record.height):
                    raise OSError(
                        f"size {img.size[0]}x{img.size[1]}, the record says {record.width}x{record.height}"
                    )
                img = img.resize((frame.out_w, frame.out_h), Image.BILINEAR)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as e:
            err = ImageError(f"{path}: image {record.image_id!r} (record {record.source_index}): {e}")
            if self.on_error == "raise":
                raise err from None
            self.skipped, self.last_skip = self.skipped + 1, str(err)
            log.warning("skipped image: %s", err)
            return None
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)  # [3, h, w]

    def _target(self, record: Record, frame: Frame, index: int) -> dict[str, Any]:
        keep = ~(record.iscrowd | record.ignore)  # [G_all] training instances
        sx, sy = frame.out_w / record.width, frame.out_h / record.height
        boxes = torch.as_tensor(record.boxes[keep], dtype=torch.float32).reshape(-1, 4)  # [G, 4]
        boxes = boxes * torch.tensor([sx, sy, sx, sy])
        labels = torch.tensor([self.label_of[int(c)] for c in record.category_ids[keep]], dtype=torch.int64)
        target: dict[str, Any] = {"boxes": boxes, "labels": labels, "index": index, "scale": (sx, sy)}
        if self.masks:
            target["masks"] = frame_masks(record, keep, frame)
        if self.labels is not None:
            target["select"] = {
                s: torch.from_numpy(self.labels.grid(record.image_id, s)) for s in self.strides
            }
        return target

    def _check_labels(self, path: Path) -> None:
        params = self.labels.params
        want = {"short": self.short, "long": self.long, "pad_to": self.pad_to}
        got = {k: params.get(k) for k in want}
        if got != want:
            raise DataError(
                f"{path}: labels were made for frame {got}, the dataset resizes to {want}; "
                "make the labels with the same --short/--long/--pad-to"
            )
        problem = labels_source_problem(self.labels, self.records, self.path)
        if problem:
            raise DataError(problem)
        if self.labels.records_fingerprint is None and str(path) not in _warned_unbound:
            _warned_unbound.add(str(path))
            log.warning(
                "%s: labels of an older spt-data keep no fingerprint of their records, so they are not "
                "checked against %s; remake them with spt-data labels --records %s to check",
                path,
                self.path,
                self.path,
            )
        self.strides = tuple(params.get("strides", (8, 16, 32)))
        have = set(self.labels.keys())
        missing = [r.image_id for r in self.records if (r.image_id, self.strides[0]) not in have]
        if missing:
            raise DataError(
                f"{path}: no labels for {len(missing)} image(s) of {self.path}, e.g. {missing[0]!r}"
            )


class ClassificationDataset(DetectionDataset):
    """Multi-label classification (PASCAL VOC, Tables 5 and 7) over the same records and labels.

    Item ``i`` -> (image [3, out_h, out_w], target) with ``labels`` [K] float multi-hot (a class with
    an instance that is neither crowd nor ignore), ``difficult`` [K] bool (a class present only as
    ignore/difficult instances: left out of its AP, as VOC's devkit does), ``select`` and ``index``.
    """

    @property
    def num_classes(self) -> int:
        """K: a multi-label classifier has no background class."""
        return len(self.category_ids)

    def _target(self, record: Record, frame: Frame, index: int) -> dict[str, Any]:
        K = len(self.category_ids)
        labels, seen = torch.zeros(K), torch.zeros(K, dtype=torch.bool)
        for cid, crowd, ignore in zip(record.category_ids, record.iscrowd, record.ignore):
            k = self.label_of[int(cid)] - 1
            seen[k] = True
            if not (crowd or ignore):
                labels[k] = 1.0
        target: dict[str, Any] = {"labels": labels, "difficult": seen & (labels == 0), "index": index}
        target["boxes"] = torch.zeros(0, 4)  # flips mirror boxes; a classifier has none
        if self.labels is not None:
            target["select"] = {
                s: torch.from_numpy(self.labels.grid(record.image_id, s)) for s in self.strides
            }
        return target


def collate_padded(batch: list, pad_to: int = 32) -> tuple[Tensor, Tensor, list[dict[str, Any]]]:
    """Items -> (images [B, 3, H, W] zero-padded right/bottom to a multiple of ``pad_to``, valid [B, 2]
    real (height, width), targets); skipped items (None) are left out."""
    images, targets = collate(batch)
    if not images:
        return torch.zeros(0, 3, pad_to, pad_to), torch.zeros(0, 2, dtype=torch.long), []
    H = -(-max(im.shape[1] for im in images) // pad_to) * pad_to
    W = -(-max(im.shape[2] for im in images) // pad_to) * pad_to
    out = images[0].new_zeros(len(images), 3, H, W)
    for b, im in enumerate(images):
        out[b, :, : im.shape[1], : im.shape[2]] = im
    valid = torch.tensor([[im.shape[1], im.shape[2]] for im in images])
    return out, valid, targets


def frame_masks(record: Record, keep: np.ndarray, frame: Frame) -> Tensor:
    """Instance masks of the kept instances resized (nearest) to the frame -> [G, out_h, out_w] uint8."""
    out = torch.zeros(int(keep.sum()), frame.out_h, frame.out_w, dtype=torch.uint8)
    for j, mask in enumerate(m for m, k in zip(record.masks, keep) if k):
        if mask is None:  # box-only instance: its box as the mask
            continue
        bitmap = Image.fromarray(mask.decode(record.height, record.width).astype(np.uint8))
        out[j] = torch.from_numpy(np.asarray(bitmap.resize((frame.out_w, frame.out_h), Image.NEAREST)))
    return out


def hflip(image: Tensor, target: dict[str, Any], frame: Frame) -> tuple[Tensor, dict[str, Any]]:
    """Mirror image [3, h, w], boxes, masks and selection labels (spt-data's ``hflip_grid``)."""
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = frame.out_w - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    if "select" in target:
        target["select"] = {
            s: torch.from_numpy(hflip_grid(g.numpy(), frame.out_w, s)) for s, g in target["select"].items()
        }
    return image.flip(-1), target


def collate(batch: list) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """A list of dataset items -> (images, targets); skipped items (None) are left out."""
    kept = [item for item in batch if item is not None]
    return [image for image, _ in kept], [target for _, target in kept]


def seed_worker(seed: int) -> Callable[[int], None]:
    """DataLoader ``worker_init_fn``: numpy and python RNGs of each worker seeded from ``seed``."""

    def init(worker_id: int) -> None:
        np.random.seed((seed + worker_id) % 2**32)  # noqa: NPY002 (the global RNG third-party code uses)
        random.seed(seed + worker_id)

    return init
