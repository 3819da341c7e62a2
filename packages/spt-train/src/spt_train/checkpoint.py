"""A run's files: checkpoints (atomic, checked when read), RNG states, and the lock on ``out_dir``.

A checkpoint is a dict: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts), ``rng``
(one entry per process, rank order), ``epoch``, ``batch`` (the next batch of ``epoch``), ``step``
and the resolved ``config``. :func:`read_checkpoint` turns a truncated, empty or foreign file into a
one-line :class:`RunError` that says what the file is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import random
import re
import socket
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spt_data.io import atomic_path

from .config import ModelConfig, RunConfig, RunError, to_dict
from .distributed import Dist

log = logging.getLogger(__name__)

TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "epoch", "batch", "step", "config")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file of this process beside ``path``, then a rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(
    path: str | Path, keys: tuple[str, ...] = ("model",), mmap: bool = False
) -> dict[str, Any]:
    """Load a spt-train checkpoint on the CPU; a file that is not one (empty, truncated, corrupt, a
    bare state dict, another torch object) raises :class:`RunError` saying what it is. ``mmap``:
    tensors stay on disk until read (for a look at its ``config`` only)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise RunError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        reason = str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__
        raise RunError(f"{path}: not a readable torch file (truncated or corrupt: {reason})") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise RunError(f"{path}: not a spt-train checkpoint: {describe(state)}, no {missing[0]!r} entry")
    return state


def describe(obj: Any) -> str:
    """A short description of a loaded torch object, for errors."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a state dict of {len(obj)} tensors (first key {next(iter(obj))!r})"
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return f"a dict with keys {keys[:6]}{' ...' if len(keys) > 6 else ''}"
    return f"a {type(obj).__name__}"


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """``model.load_state_dict(weights)``, with a mismatch said in one line naming the first key."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} missing (first {missing[0]!r})" if missing else "",
            f"{len(unexpected)} unexpected (first {unexpected[0]!r})" if unexpected else "",
            f"{len(shapes)} of another shape (first {shapes[0]!r}: {list(weights[shapes[0]].shape)} in the "
            f"file, {list(own[shapes[0]].shape)} in the model)"
            if shapes
            else "",
        ]
        raise RunError(
            f"{path}: weights of another model than the config builds: {', '.join(p for p in parts if p)} keys"
        )
    model.load_state_dict(weights)


def epoch_checkpoints(out_dir: Path) -> list[Path]:
    """The ``epoch_N.pt`` files in ``out_dir``, oldest (smallest N) first."""
    found = [
        (int(m.group(1)), p)
        for p in out_dir.glob("epoch_*.pt")
        if (m := re.fullmatch(r"epoch_(\d+)\.pt", p.name))
    ]
    return [p for _, p in sorted(found)]


def prune_epochs(out_dir: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` ``epoch_N.pt`` of ``out_dir`` (None: keep every one)."""
    if keep is not None:
        for path in epoch_checkpoints(out_dir)[:-keep]:
            path.unlink()


def intact_epoch(out_dir: Path) -> Path | None:
    """The newest ``epoch_N.pt`` in ``out_dir`` that reads as a training checkpoint, or None."""
    for path in reversed(epoch_checkpoints(out_dir)):
        try:
            read_checkpoint(path, TRAINING_KEYS)
        except RunError:
            continue
        return path
    return None


def read_resume(path: Path) -> dict[str, Any]:
    """``last.pt`` to resume from; a damaged one raises :class:`RunError` naming the newest intact
    ``epoch_N.pt`` beside it and how to resume from that (we never fall back silently: the steps
    since that epoch would be lost without the user knowing, and a damaged file is worth a look)."""
    try:
        return read_checkpoint(path, TRAINING_KEYS)
    except RunError as e:
        epoch = intact_epoch(path.parent)
        hint = (
            f"{epoch} is intact: resume from it with `cp {epoch} {path}`, or start over with --no-resume"
            if epoch is not None
            else f"no intact epoch_N.pt beside it: start over with --no-resume (or delete {path.parent})"
        )
        raise RunError(f"{e}; {hint}") from None


def check_resumable(saved: dict[str, Any], config: RunConfig, path: Path) -> None:
    """A checkpoint resumes only the run it came from: same model and same training data/schedule."""
    now = to_dict(config)
    defaults = to_dict(RunConfig(data=None, out_dir=""))["train"]  # keys added since it was written
    saved = {**saved, "model": saved_model_config(saved["model"]), "train": {**defaults, **saved["train"]}}
    for section in ("model", "data", "train"):
        for key in sorted(set(saved[section]) | set(now[section])):
            if key in ("epochs", "max_steps", "log_steps", "num_workers", "checkpoint_steps", "keep_epochs"):
                continue  # may change on resume (a longer run, another logging pace)
            if saved[section].get(key) != now[section].get(key):
                raise ValueError(
                    f"{path}: checkpoint of another run: {section}.{key} was "
                    f"{saved[section].get(key)!r}, the config says {now[section].get(key)!r} "
                    f"(train in another out_dir, or delete {path.parent} to start this run over)"
                )


def saved_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``model`` config with the keys added since it was written at their defaults
    (``gt_select``), so older checkpoints still resume and evaluate."""
    return {**dataclasses.asdict(ModelConfig()), **model}


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng(d: Dist) -> list[dict[str, Any]]:
    """Every process's RNG states (rank order), so each resumes its own stream. A collective: every
    rank calls it at the same step."""
    mine = rng_state()
    if d.world == 1:
        return [mine]
    out: list[Any] = [None] * d.world
    torch.distributed.all_gather_object(out, mine)
    return out


class RunLock:
    """``out_dir/.lock`` holding ``pid host``, so a second fit on the same ``out_dir`` stops at once.
    A lock left by a dead process of this host is taken over with a warning."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".lock"
        self.held = False

    def acquire(self) -> None:
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if host == socket.gethostname() and pid is not None and not _alive(pid):
                    log.warning("%s: removing the lock of pid %d, which has ended", self.path, pid)
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunError(
                    f"{self.path.parent}: another fit is running there (pid {pid} on {host}, lock "
                    f"{self.path}); wait for it, train in another out_dir, or delete the lock if that "
                    "process is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return
        raise RunError(f"{self.path}: could not take the lock")

    def _owner(self) -> tuple[int | None, str]:
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None, "an unknown host"

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
