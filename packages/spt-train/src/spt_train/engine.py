"""The training loop: ``fit(config)`` reads top to bottom, as nanoGPT's ``train.py``.

Legend: B images per process and step, W processes, K classes.

Detectors and multi-label classifiers (``model.head: classifier``, :class:`spt_models.Classifier`)
go through the same loop; :func:`batch_losses` is the one place where their batches differ.

AdamW with the Swin detection parameter groups, warm-up then step or cosine schedule (per step),
gradient clipping, AMP (bf16 where supported, fp16 with a scaler on CUDA), seeded everything, a
tqdm bar with the loss and the select ratio, metrics as JSONL (and TensorBoard when installed),
``epoch_N.pt`` at every epoch end (the newest ``keep_epochs``) plus ``last.pt`` (atomic), and
exact resume: model, optimizer, scheduler, scaler, the RNG states of torch / numpy / python and the
data position (epoch, batch).
The Gumbel noise of step t is drawn from a generator seeded by (seed, t), flips from (seed, epoch,
image), so nothing depends on where a run resumed.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from spt_data.io import check_writable
from spt_models import Classifier, create_detector, create_model, load_swin_weights
from spt_models.detection import MASK_HEADS, batch_select_labels
from spt_models.environment import pick_device

from .checkpoint import (
    RunLock,
    check_resumable,
    gather_rng,
    prune_epochs,
    read_resume,
    save_checkpoint,
    set_rng_state,
)
from .config import RunConfig, to_dict
from .data import ClassificationDataset, DetectionDataset, collate, collate_padded, seed_worker
from .distributed import Dist, cleanup, init_distributed
from .sampler import ResumableBatchSampler

log = logging.getLogger(__name__)

NO_DECAY_NAMES = ("relative_position_bias_table", "gate", "pos_embed", "cls_token")


def parameter_groups(
    model: nn.Module, weight_decay: float, lr: float, gate_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Swin detection groups: no weight decay on norms, biases (every 1-D tensor), relative-position
    tables and the selection gates; ``weight_decay`` on the rest. With ``gate_lr_scale != 1`` the
    selection gates (and their norm) form a third group at ``lr * gate_lr_scale``."""
    decay, no_decay, gates = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if gate_lr_scale != 1 and is_gate(name):
            gates.append(p)
        else:
            (no_decay if p.ndim <= 1 or any(k in name for k in NO_DECAY_NAMES) else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr": lr * gate_lr_scale})
    return groups


def is_gate(name: str) -> bool:
    """A parameter of a selection gate (eq. 11) or of the norm before the first one."""
    return ".gate." in f".{name}" or ".gate_norm." in f".{name}"


def lr_factor(step: int, total: int, config: RunConfig) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up, then step decay or cosine to 0."""
    t = config.train
    if step < t.warmup_steps:
        alpha = step / t.warmup_steps
        return t.warmup_factor * (1 - alpha) + alpha
    if t.schedule == "cosine":
        progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return t.gamma ** sum(step >= m * total for m in t.milestones)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on a CUDA device that supports it, else fp32 (None)."""
    if mode == "none" or (mode == "auto" and not (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("amp fp16 needs CUDA (its gradient scaler); use bf16 or none on CPU")
    return torch.float16 if mode == "fp16" else torch.bfloat16


def build_model(config: RunConfig, num_classes: int) -> nn.Module:
    """The run's detector or classifier; ``num_classes`` as the dataset counts it (a detector's
    K + 1 with the background, a classifier's K)."""
    m = config.model
    torch.manual_seed(config.train.seed)  # the same initial weights in every process
    if m.head == "classifier":
        model = Classifier(
            create_model(m.name, **m.backbone),
            num_classes,
            gt_select=m.gt_select,
            loss_weights={"loss_select": m.select_weight},
        )
        body = model.backbone
    else:
        model = create_detector(
            m.name,
            m.head,
            num_classes,
            backbone_kwargs=m.backbone,
            loss_weights={"loss_select": m.select_weight},
            **m.detector,
        )
        body = model.backbone.body
    if m.weights is not None:
        report = load_swin_weights(body, m.weights)
        log.info("loaded %s (%d fresh keys)", m.weights, len(report.fresh))
    return model


def make_dataset(config: RunConfig, split: str) -> DetectionDataset:
    """The split's :class:`DetectionDataset`, or :class:`ClassificationDataset` for a classifier."""
    d, head = config.data, config.model.head
    s = getattr(d, split)
    dataset = ClassificationDataset if head == "classifier" else DetectionDataset
    return dataset(
        s.records,
        s.labels,
        s.images,
        short=d.short,
        long=d.long,
        pad_to=d.pad_to,
        flip=d.flip if split == "train" else 0.0,
        masks=d.masks or head in MASK_HEADS,
        on_error=d.on_error,
        seed=config.train.seed,
    )


def make_collate(config: RunConfig) -> Callable[[list], tuple]:
    """Detector batches: lists of images (the detector pads); classifier batches: one padded tensor."""
    if config.model.head == "classifier":
        return functools.partial(collate_padded, pad_to=config.data.pad_to)
    return collate


def batch_losses(net: nn.Module, batch: tuple, device: torch.device, generator: torch.Generator) -> dict:
    """One training forward -> the weighted losses. ``batch``: a detector's ``(images, targets)``
    (:func:`collate`) or a classifier's ``(images [B, 3, H, W], valid [B, 2], targets)``
    (:func:`collate_padded`: labels [B, K] stacked from the targets, selection labels padded to
    ``{stride: [B, h_s, w_s]}`` or None without a label file)."""
    if len(batch) == 2:
        images, targets = batch
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [to_device(t, device) for t in targets]
        return net(images, targets, generator=generator)
    images, valid, targets = batch
    targets = [to_device(t, device) for t in targets]
    labels = torch.stack([t["labels"] for t in targets])  # [B, K]
    _, losses = net(
        images.to(device, non_blocking=True),
        labels=labels,
        select=batch_select_labels(targets),
        valid=valid.to(device),
        generator=generator,
    )
    return losses


class SelectRatio:
    """Forward hook on the model's backbone: the mean select ratio of the last forward (a model
    with a selection record, e.g. SPT; None for the others, ViT included)."""

    def __init__(self, backbone: nn.Module) -> None:
        self.value: float | None = None
        backbone.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        aux = output[1]  # the selection record; a ViT returns (cls, tokens) and has none
        ratios = list(aux.ratio.values()) if hasattr(aux, "ratio") else []
        self.value = float(torch.stack(ratios).mean()) if ratios else None


def fit(config: RunConfig, *, resume: bool = True, stop_after: int | None = None) -> Path:
    """Train; -> the run's ``last.pt``. ``resume``: continue from ``out_dir/last.pt`` if present.
    ``stop_after``: leave after this many steps of this call without writing anything more (a
    simulated kill; tests). ``out_dir`` is checked for writing and locked (``.lock``, rank 0) first."""
    d = init_distributed("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    out_dir = Path(config.out_dir)
    lock = RunLock(out_dir)
    try:
        device = pick_device(config.device, d.local_rank)
        if d.main:
            check_writable(out_dir / "last.pt", f"out_dir {out_dir}")
            out_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        train(config, d, device, resume, stop_after)
    finally:
        lock.release()
        cleanup(d)
    return out_dir / "last.pt"


def train(config: RunConfig, d: Dist, device: torch.device, resume: bool, stop_after: int | None) -> None:
    """:func:`fit`'s loop on this process. A stop at ``max_steps`` in the middle of an epoch is saved
    as that position (epoch, next batch), so a resume with a larger ``max_steps`` goes on from it."""
    out_dir = Path(config.out_dir)
    t = config.train
    random.seed(t.seed)
    np.random.seed(t.seed)  # noqa: NPY002

    train_set = make_dataset(config, "train")
    model = build_model(config, train_set.num_classes).to(device)
    groups = parameter_groups(model, t.weight_decay, t.lr, t.gate_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=t.betas)
    sampler = ResumableBatchSampler(
        len(train_set), t.batch_size, shuffle=True, seed=t.seed, rank=d.rank, world=d.world
    )
    total = len(sampler) * t.epochs if t.max_steps is None else min(t.max_steps, len(sampler) * t.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, config))
    dtype = amp_dtype(t.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    last = out_dir / "last.pt"
    epoch, batch, step = 0, 0, 0
    if resume and last.exists():
        saved = read_resume(last)
        check_resumable(saved["config"], config, last)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"][min(d.rank, len(saved["rng"]) - 1)])
        epoch, batch, step = saved["epoch"], saved["batch"], saved["step"]
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(step, total, config)  # the saved lr knew the old max_steps
        log.info("resumed %s at epoch %d, batch %d (step %d)", last, epoch, batch, step)
    if d.main:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    net = DistributedDataParallel(model, find_unused_parameters=False) if d.world > 1 else model
    ratio = SelectRatio(model.backbone)
    metrics = MetricsLog(out_dir, d.main)

    def save(*names: str) -> None:
        """Every rank builds the state (gathering the RNG states is a collective); rank 0 writes."""
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": gather_rng(d),
            "epoch": epoch,
            "batch": batch,
            "step": step,
            "config": to_dict(config),
        }
        if d.main:
            for name in names:
                save_checkpoint(state, out_dir / name)

    steps_here = 0

    def killed() -> bool:
        return stop_after is not None and steps_here >= stop_after

    model.train()
    while epoch < t.epochs and step < total:
        sampler.set_epoch(epoch, batch)
        train_set.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            train_set,
            batch_sampler=sampler,
            collate_fn=make_collate(config),
            num_workers=t.num_workers,
            worker_init_fn=seed_worker(t.seed + 1000 * epoch + d.rank),
            generator=torch.Generator().manual_seed(t.seed + epoch),  # leaves the global RNG alone
        )
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{t.epochs}",
            initial=batch,
            total=len(sampler),
            disable=not d.main,
        )
        for items in bar:
            noise = torch.Generator().manual_seed(t.seed * 1_000_003 + step)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                losses = batch_losses(net, items, device, noise)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step}: loss is {loss.item()} ({ {k: v.item() for k, v in losses.items()} })"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.clip_grad is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step, batch, steps_here = step + 1, batch + 1, steps_here + 1
            bar.set_postfix(
                loss=f"{loss.item():.3f}", ratio="-" if ratio.value is None else f"{ratio.value:.2f}"
            )
            if step % t.log_steps == 0 or step == total:
                metrics.write(step, epoch, scheduler.get_last_lr()[0], losses, ratio.value)
            if t.checkpoint_steps and step % t.checkpoint_steps == 0:
                save("last.pt")
            if step >= total or killed():
                break
        if batch < len(sampler):  # left mid-epoch
            if not killed():  # at max_steps: saved where it stands, a longer max_steps goes on from here
                save("last.pt")
            break
        epoch, batch = epoch + 1, 0
        save(f"epoch_{epoch}.pt", "last.pt")
        if d.main:
            prune_epochs(out_dir, t.keep_epochs)
        if killed():
            break
    metrics.close()


def to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    for k, v in target.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif k == "select":
            out[k] = {s: g.to(device, non_blocking=True) for s, g in v.items()}
        else:
            out[k] = v
    return out


class MetricsLog:
    """``metrics.jsonl`` (one line per logged step) and TensorBoard scalars when installed (main process)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled, self.file, self.board = enabled, None, None
        if not enabled:
            return
        self.file = open(out_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out_dir / "tensorboard"))
        except ImportError:
            pass
        self.start = time.perf_counter()

    def write(
        self, step: int, epoch: int, lr: float, losses: dict[str, torch.Tensor], ratio: float | None
    ) -> None:
        if not self.enabled:
            return
        row = {
            "step": step,
            "epoch": epoch,
            "lr": lr,
            "loss": float(sum(v.detach() for v in losses.values())),
        }
        row.update({k: float(v.detach()) for k, v in losses.items()})
        row["select_ratio"] = ratio
        row["time_s"] = round(time.perf_counter() - self.start, 3)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.board is not None:
            for k, v in row.items():
                if isinstance(v, float):
                    self.board.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()
