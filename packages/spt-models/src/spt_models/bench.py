"""Backbone efficiency study: speed, memory and MACs of every backbone, measured in one process.

Legend: B images, H, W input pixels. Candidates are the baselines (Swin-T, DynamicSwin-T,
SparseViT-T, DAT-T) and SPT-T/12, SPT-T/16 under both readings of SPA's cost (``mlp="all"``,
``mlp="selected"``, see :mod:`spa_core.block`), each at select ratios fixed by random ``keep``
masks (seeded): 1.0, 0.5, 0.25 and ``"spread"``, a BDD-S-like batch whose images keep 0.05 .. 0.6
of their tokens (evenly spaced over the batch; a batch of one keeps the spread's mean, 0.325).

Measurements (one process, interleaved: every repeat runs every candidate once, in turn, so drift
on a shared machine hits them alike; warm-up rounds first; medians):
``fps_b{n}``   eval, no-grad forwards of a batch of n, images per second;
``step_ms``    one training step (train mode, forward + backward of ``sum(map.mean())``), batch 2;
``memory_mib`` CUDA: peak allocated during the step; CPU (no allocator statistics): the bytes
               autograd saves for backward in one step (activations), the part that grows with
               the input and the select ratio;
``macs``       FlopCounterMode // 2 of one eval forward of one image at ``macs_size``
               (:func:`~spt_models.profiling.count_macs`).

``spt-models bench``: :func:`bench_document` runs the study and returns the JSON document,
:func:`format_bench` its tables. Sizes: the document and the CLI say ``WIDTHxHEIGHT``;
:class:`Study` and :func:`run_study` take ``(height, width)`` as torch does.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .masks import random_keep, token_grid
from .profiling import MACS_COUNTING, count_macs
from .registry import create_model

log = logging.getLogger(__name__)

BASELINES = ("swin_t", "dynamicswin_t", "sparsevit_t", "dat_t")
SPT_MODELS = ("spt_t12", "spt_t")
RATIOS: tuple[float | str, ...] = (1.0, 0.5, 0.25, "spread")
SPREAD = (0.05, 0.6)  # BDD-S-like per-image select ratios: evenly spaced over the batch
REFERENCES = ("swin_t", "dynamicswin_t")  # the table's ratios are taken against these


@dataclass(frozen=True)
class Candidate:
    """One row of the study: a registered model, and for SPT its mlp reading, ratio and backend."""

    model: str
    mlp: str | None = None
    ratio: float | str | None = None
    backend: str | None = None

    @property
    def label(self) -> str:
        if self.mlp is None:
            return self.model
        ratio = self.ratio if isinstance(self.ratio, str) else f"{self.ratio:g}"
        backend = f" {self.backend}" if self.backend not in (None, "auto") else ""
        return f"{self.model} mlp={self.mlp} r={ratio}{backend}"


def candidates(
    baselines: Sequence[str] = BASELINES,
    spt_models: Sequence[str] = SPT_MODELS,
    ratios: Sequence[float | str] = RATIOS,
    mlps: Sequence[str] = ("all", "selected"),
    backends: Sequence[str] = ("auto",),
) -> list[Candidate]:
    """Every baseline once, every SPT model under every (mlp, ratio, backend)."""
    rows = [Candidate(name) for name in baselines]
    for name in spt_models:
        for backend in backends:
            for mlp in mlps:
                rows += [Candidate(name, mlp, ratio, backend) for ratio in ratios]
    return rows


def image_ratios(ratio: float | str, batch: int) -> list[float]:
    """Per-image select ratios of a batch: ``ratio`` for every image, or the spread."""
    if ratio != "spread":
        return [float(ratio)] * batch
    low, high = SPREAD
    if batch == 1:
        return [(low + high) / 2]
    return [low + (high - low) * i / (batch - 1) for i in range(batch)]


def stage_keep(
    ratios: Sequence[float], height: int, width: int, *, seed: int, device: torch.device
) -> dict[int, Tensor]:
    """{16: [B, h, w], 32: [B, h', w']} bool, image b keeping exactly ``ratios[b]`` of each stage."""
    g = torch.Generator().manual_seed(seed)
    return {
        s: torch.cat([random_keep(1, token_grid(height, width, s), r, generator=g) for r in ratios]).to(
            device
        )
        for s in (16, 32)
    }


def candidate_model(candidate: Candidate, device: torch.device, seed: int) -> nn.Module:
    """The candidate's model (random init: costs do not depend on weights); SPT selects by ``keep``."""
    torch.manual_seed(seed)
    if candidate.mlp is None:
        return create_model(candidate.model).to(device)
    return create_model(candidate.model, selection="given", mlp=candidate.mlp, backend=candidate.backend).to(
        device
    )


class Study:
    """Builds each distinct model once and runs the candidates' measurements round-robin.

    device: where to run; dtype: ``torch.bfloat16`` runs under autocast, ``torch.float32`` plain.
    size: (height, width) of the timed inputs.
    """

    def __init__(
        self,
        rows: Sequence[Candidate],
        *,
        device: torch.device,
        size: tuple[int, int],
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        self.rows, self.device, self.size, self.dtype, self.seed = list(rows), device, size, dtype, seed
        self.models: dict[tuple, nn.Module] = {}
        for c in self.rows:
            key = (c.model, c.mlp, c.backend)
            if key not in self.models:
                log.info("building %s", c.label if c.mlp is None else f"{c.model} mlp={c.mlp} {c.backend}")
                self.models[key] = candidate_model(c, device, seed)

    def model(self, c: Candidate) -> nn.Module:
        return self.models[(c.model, c.mlp, c.backend)]

    def inputs(self, c: Candidate, batch: int, size: tuple[int, int] | None = None) -> tuple[Tensor, dict]:
        """x [B, 3, H, W] and the forward's keyword arguments (SPT: the keep masks)."""
        height, width = size or self.size
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(batch, 3, height, width, generator=g).to(self.device)
        if c.mlp is None:
            return x, {}
        ratios = image_ratios(c.ratio, batch)
        return x, {"keep": stage_keep(ratios, height, width, seed=self.seed, device=self.device)}

    def _autocast(self):
        enabled = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def forward_fn(self, c: Candidate, batch: int) -> Callable[[], None]:
        model, (x, kwargs) = self.model(c), self.inputs(c, batch)

        def fn() -> None:
            model.eval()
            with torch.no_grad(), self._autocast():
                model(x, **kwargs)

        return fn

    def step_fn(self, c: Candidate, batch: int) -> Callable[[], None]:
        model, (x, kwargs) = self.model(c), self.inputs(c, batch)

        def fn() -> None:
            model.train()
            with self._autocast():
                maps, _ = model(x, **kwargs)
                loss = sum(m.float().mean() for m in maps.values())
            loss.backward()
            model.zero_grad(set_to_none=True)

        return fn

    def memory_mib(self, c: Candidate, batch: int) -> float:
        """CUDA: peak allocated bytes of one step; CPU: bytes saved for backward in one step (MiB)."""
        step = self.step_fn(c, batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            step()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return saved_activation_bytes(step) / 2**20

    def macs(self, c: Candidate, size: tuple[int, int]) -> int:
        x, kwargs = self.inputs(c, 1, size)
        return count_macs(self.model(c), x, **kwargs)

    def time_round_robin(
        self, fns: dict[str, Callable[[], None]], warmup: int, repeats: int
    ) -> dict[str, float]:
        """Median seconds of each callable, timed in interleaved rounds."""
        return time_round_robin(fns, warmup, repeats, self.device)


def saved_activation_bytes(step: Callable[[], None]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``step`` runs."""
    seen: dict[tuple, int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), t.device)] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def time_round_robin(
    fns: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each callable: ``warmup`` untimed rounds, then ``repeats`` timed ones,
    each round calling every callable once in turn (synchronizing CUDA around each call)."""
    cuda = device.type == "cuda"
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
        log.info("round %d/%d done", i + 1, warmup + repeats)
    return {k: statistics.median(v) for k, v in times.items()}


def run_study(
    study: Study,
    *,
    batches: Sequence[int] = (1, 8),
    train_batch: int = 2,
    macs_size: tuple[int, int] | None = (800, 1280),
    warmup: int = 1,
    repeats: int = 5,
) -> list[dict]:
    """All measurements of every candidate -> one dict per candidate (see the module docstring)."""
    rows = {
        c.label: {"label": c.label, "model": c.model, "mlp": c.mlp, "ratio": c.ratio, "backend": c.backend}
        for c in study.rows
    }
    for batch in batches:
        log.info("forward, batch %d: %d candidates x %d rounds", batch, len(study.rows), warmup + repeats)
        fns = {c.label: study.forward_fn(c, batch) for c in study.rows}
        for label, seconds in study.time_round_robin(fns, warmup, repeats).items():
            rows[label][f"fps_b{batch}"] = batch / seconds
    log.info(
        "training step, batch %d: %d candidates x %d rounds", train_batch, len(study.rows), warmup + repeats
    )
    fns = {c.label: study.step_fn(c, train_batch) for c in study.rows}
    for label, seconds in study.time_round_robin(fns, warmup, repeats).items():
        rows[label]["step_ms"] = seconds * 1e3
    for c in study.rows:
        rows[c.label]["memory_mib"] = study.memory_mib(c, train_batch)
        if macs_size is not None:
            log.info("MACs of %s at %dx%d", c.label, macs_size[1], macs_size[0])
            rows[c.label]["macs"] = study.macs(c, macs_size)
    return list(rows.values())


def add_ratios(rows: list[dict], references: Sequence[str] = REFERENCES) -> list[dict]:
    """Add ``{metric}/{reference}`` to every row: fps as speed-up (row / ref), step time, memory and
    MACs as cost (row / ref). References missing from ``rows`` are skipped."""
    by_label = {r["label"]: r for r in rows}
    metrics = [k for k in rows[0] if k.startswith("fps_b") or k in ("step_ms", "memory_mib", "macs")]
    for ref in references:
        if ref not in by_label:
            continue
        base = by_label[ref]
        for r in rows:
            for m in metrics:
                if m in r and base.get(m):
                    r[f"{m}/{ref}"] = r[m] / base[m]
    return rows


CUDA_SIZE, CPU_SIZE = (1280, 800), (640, 400)  # default timed input (width, height)


def bench_document(
    *,
    device: torch.device,
    baselines: Sequence[str] = BASELINES,
    spt_models: Sequence[str] = SPT_MODELS,
    ratios: Sequence[float | str] = RATIOS,
    mlps: Sequence[str] = ("all", "selected"),
    backends: Sequence[str] = ("auto",),
    size: tuple[int, int] | None = None,
    macs_size: tuple[int, int] | None = (1280, 800),
    batches: Sequence[int] = (1, 8),
    train_batch: int = 2,
    dtype: str = "auto",
    warmup: int = 1,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The study's JSON document: environment, input, the memory reading and one row per candidate
    with its ratios against the references (:func:`add_ratios`). ``size``, ``macs_size``: (width,
    height) of the timed input (default :data:`CUDA_SIZE` on CUDA, :data:`CPU_SIZE` on CPU) and of
    the MAC count (None: no MACs). ``dtype``: ``float32``, ``bfloat16`` (autocast) or ``auto``
    (bfloat16 on CUDA, float32 on CPU)."""
    from .environment import environment

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        dtype, torch.bfloat16 if device.type == "cuda" else torch.float32
    )
    width, height = size or (CUDA_SIZE if device.type == "cuda" else CPU_SIZE)
    rows = candidates(baselines, spt_models, ratios, mlps, backends)
    study = Study(rows, device=device, size=(height, width), dtype=torch_dtype, seed=seed)
    results = run_study(
        study,
        batches=batches,
        train_batch=train_batch,
        macs_size=None if macs_size is None else (macs_size[1], macs_size[0]),
        warmup=warmup,
        repeats=repeats,
    )
    return {
        "environment": environment(device),
        "input": {
            "height": height,
            "width": width,
            "batches": list(batches),
            "train_batch": train_batch,
            "macs_size": None if macs_size is None else f"{macs_size[0]}x{macs_size[1]}",
            "dtype": str(torch_dtype).removeprefix("torch."),
            "seed": seed,
        },
        "timing": {"warmup": warmup, "repeats": repeats},
        "macs_counting": MACS_COUNTING,
        "memory": (
            "peak CUDA memory allocated during one training step"
            if device.type == "cuda"
            else "bytes autograd saves for backward in one training step (CPU has no allocator statistics)"
        ),
        "rows": add_ratios(results),
    }


def format_bench(document: dict[str, Any]) -> str:
    """Two tables: absolute values, then ratios against Swin-T (/S) and DynamicSwin-T (/D), and a legend."""
    rows = document["rows"]
    fps = [k for k in rows[0] if k.startswith("fps_b") and "/" not in k]
    width = max(len(r["label"]) for r in rows)

    def cell(r: dict, key: str, scale: float = 1.0, fmt: str = "{:8.2f}") -> str:
        return fmt.format(r[key] * scale) if r.get(key) is not None else f"{'-':>8}"

    head = f"{'candidate':<{width}} {'MACs G':>8} " + " ".join(f"{k.replace('fps_', 'FPS '):>8}" for k in fps)
    lines = [head + f" {'step ms':>8} {'mem MiB':>8}"]
    for r in rows:
        values = [cell(r, "macs", 1e-9)] + [cell(r, k) for k in fps]
        lines.append(
            f"{r['label']:<{width}} " + " ".join(values) + f" {cell(r, 'step_ms', fmt='{:8.0f}')} "
            f"{cell(r, 'memory_mib', fmt='{:8.0f}')}"
        )
    metrics = ["macs", *fps, "step_ms", "memory_mib"]
    short = {
        "macs": "MAC",
        "step_ms": "step",
        "memory_mib": "mem",
        **{k: k.replace("fps_", "FPS ") for k in fps},
    }
    names = [f"{short[m]}/{ref}" for m in metrics for ref in ("S", "D")]
    lines += ["", f"{'ratios':<{width}} " + " ".join(f"{n:>9}" for n in names)]
    for r in rows:
        values = [
            f"{r[f'{m}/{ref}']:9.3f}" if f"{m}/{ref}" in r else f"{'-':>9}"
            for m in metrics
            for ref in REFERENCES
        ]
        lines.append(f"{r['label']:<{width}} " + " ".join(values))
    env, inp = document["environment"], document["input"]
    lines += [
        "",
        f"{env['device']}, torch {env['torch']}, {env['threads']} threads, {inp['dtype']}, timed input "
        f"{inp['width']}x{inp['height']}, MACs at {inp['macs_size'] or '-'}",
        "MACs G: multiply-accumulates of one eval forward of one image (FlopCounterMode / 2), in 1e9.",
        "FPS bN: images/s of eval forwards of batch N (median of interleaved repeats).",
        f"step ms: one training step (forward + backward), batch {inp['train_batch']}; mem MiB: {document['memory']}.",
        "X/S, X/D: the row's value / Swin-T's, / DynamicSwin-T's (FPS > 1 is faster; MAC, step, mem < 1 is cheaper).",
        "r=spread: per-image select ratios evenly spaced in 0.05-0.6 over the batch (batch 1: 0.325).",
    ]
    return "\n".join(lines)
