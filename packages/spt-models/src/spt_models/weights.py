"""Loading ImageNet Swin weights (``swin_t/s/b``) from a user-given file, in either of two layouts.

Nothing is downloaded: the user passes the path of a file holding one of

- **torchvision**: ``torch.save(torchvision.models.swin_t(weights="IMAGENET1K_V1").state_dict(),
  path)``; keys ``features.N...``, our models' own layout, used as they are.
- **official**: a release file of github.com/microsoft/Swin-Transformer
  (``swin_tiny_patch4_window7_224.pth``, ...): ``{"model": state}`` with keys ``patch_embed.*``,
  ``layers.{i}.blocks.{j}.*``, ``layers.{i}.downsample.*`` (the patch merging at the end of stage
  i), ``norm.*``, ``head.*``; renamed to torchvision's by :func:`official_to_torchvision`.

The layout is told from the keys and logged. Both use the same tensors: torchvision's Swin is a
port of the official one, ``PatchMerging`` concatenates the 2x2 neighbours in the same order
(``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]``, as does timm's), so no weight is
permuted; the official ``relative_position_index`` [M*M, M*M] is torchvision's flattened, and the
official shifted blocks' ``attn_mask`` buffers are dropped (torchvision computes the mask on the fly).

Dropped with a log line: the classification ``head`` and final ``norm``, and
``attn.relative_position_index`` buffers the model does not have (SPA blocks compute offsets from
true positions). A model may declare keys a Swin checkpoint does not provide
(``model.fresh_keys()``: SPT's gates and extra blocks, DynamicSwin's predictors); those keep their
initialisation and are logged. Anything else missing, unexpected, or of the wrong shape is an error
naming the file and the first mismatched key.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .backbone import Backbone

log = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("head.", "norm.")  # the classification head and final LayerNorm (both layouts)
WRAPPER_KEYS = ("model", "state_dict")  # training checkpoints and official releases wrap the state dict
TORCHVISION, OFFICIAL = "torchvision", "official"


@dataclass(frozen=True)
class LoadReport:
    """loaded: keys copied from the file; fresh: model keys left at their init; ignored: file keys
    dropped (as the file names them); layout: ``"torchvision"`` or ``"official"``."""

    loaded: list[str]
    fresh: list[str]
    ignored: list[str]
    layout: str = TORCHVISION


def official_to_torchvision(key: str) -> str:
    """One key of an official Swin release -> torchvision's name for it.

    ``patch_embed.proj`` / ``.norm`` -> ``features.0.0`` / ``features.0.2``; ``layers.{i}.blocks.{j}``
    -> ``features.{2i+1}.{j}`` with the MLP's ``fc1`` / ``fc2`` -> ``mlp.0`` / ``mlp.3``;
    ``layers.{i}.downsample`` -> ``features.{2i+2}``; anything else (``norm.*``, ``head.*``) unchanged.
    """
    if key.startswith("patch_embed.proj."):
        return "features.0.0." + key.removeprefix("patch_embed.proj.")
    if key.startswith("patch_embed.norm."):
        return "features.0.2." + key.removeprefix("patch_embed.norm.")
    if block := re.fullmatch(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)", key):
        stage, index, rest = int(block[1]), block[2], block[3]
        rest = rest.replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")  # Mlp -> torchvision's MLP
        return f"features.{2 * stage + 1}.{index}.{rest}"
    if merge := re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key):
        return f"features.{2 * int(merge[1]) + 2}.{merge[2]}"
    return key


def load_swin_weights(model: Backbone, source: str | Path | Mapping[str, Tensor]) -> LoadReport:
    """Copy a Swin state dict (a file path, or the mapping itself; torchvision or official layout)
    into ``model``.

    Raises ValueError naming the file and the first mismatched key (then every missing key not in
    ``model.fresh_keys()``, unexpected key and shape mismatch); the model is left untouched then.
    """
    name, state = _read(source)
    if not isinstance(model, Backbone):
        raise ValueError(f"{name}: Swin weights load into a Swin-layout Backbone, got {type(model).__name__}")
    layout = _layout(name, state)
    if layout == OFFICIAL:
        state, file_key, dropped = _rename_official(state)
        log.info("%s: official Swin layout (microsoft/Swin-Transformer), keys renamed to torchvision's", name)
    else:
        file_key, dropped = {k: k for k in state}, []
        log.info("%s: torchvision Swin layout", name)
    before = set(state)
    state = model.from_swin_state(state)  # DAT: its deformable blocks' attention under its names
    if adapted := sorted(before - set(state)):
        log.info(
            "%s: %s renamed or dropped %d keys for its own blocks: %s",
            name,
            type(model).__name__,
            len(adapted),
            _listing(adapted),
        )
    own = model.state_dict()
    ignored = [k for k in state if k.startswith(CLASSIFIER_PREFIXES)]
    ignored += [k for k in state if k.endswith("attn.relative_position_index") and k not in own]
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    ignored = dropped + [file_key[k] for k in ignored]

    may_be_fresh = set(model.fresh_keys())
    missing = [k for k in own if k not in state and k not in may_be_fresh]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            _mismatch(name, type(model).__name__, file_key, state, own, missing, unexpected, mismatched)
        )

    model.load_state_dict(state, strict=False)
    fresh = [k for k in own if k not in state]
    if ignored:
        log.info("%s: ignored %d keys not used by the backbone: %s", name, len(ignored), _listing(ignored))
    if fresh:
        log.info(
            "%s: %d keys of %s stay freshly initialised: %s",
            name,
            len(fresh),
            type(model).__name__,
            ", ".join(fresh),
        )
    log.info("%s: loaded %d tensors into %s", name, len(state), type(model).__name__)
    return LoadReport(loaded=list(state), fresh=fresh, ignored=ignored, layout=layout)


def _read(source: str | Path | Mapping[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """-> (a name for messages, the state dict)."""
    if isinstance(source, Mapping):
        name, state = "state dict", source
    else:
        name = str(source)
        try:
            state = torch.load(Path(source), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
            raise _unreadable(name, e) from None
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            log.info("%s: using the state dict under key %r", name, key)
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{name}: expected a state dict (str -> Tensor), got {type(state).__name__}")
    return name, dict(state)


def _unreadable(name: str, error: Exception) -> ValueError:
    """The error for a file ``torch.load(weights_only=True)`` could not read."""
    text = str(error)
    if unsafe := re.search(r"GLOBAL (\S+) was not an allowed global", text):
        return ValueError(
            f"{name}: holds an object of type {unsafe[1]}, not only tensors (a training checkpoint?): save its "
            "state dict alone, torch.save(checkpoint['model'], path)"
        )
    if text.startswith("Weights only load failed") and "\n\n" in text:
        text = text.split("\n\n")[1]  # torch's own reason, below its advice on weights_only
    reason = text.strip().splitlines()[0].split(". ")[0] if text.strip() else type(error).__name__
    return ValueError(f"{name}: not a readable torch file (truncated or corrupt: {reason})")


def _layout(name: str, state: Mapping[str, Tensor]) -> str:
    """``"torchvision"`` if a key starts with ``features.``, ``"official"`` if one starts with
    ``patch_embed.`` or ``layers.``; ValueError naming the first key otherwise."""
    if any(k.startswith("features.") for k in state):
        return TORCHVISION
    if any(k.startswith(("patch_embed.", "layers.")) for k in state):
        return OFFICIAL
    if not state:
        raise ValueError(f"{name}: not a Swin state dict: it is empty")
    first = next(iter(state))
    raise ValueError(
        f"{name}: not a Swin state dict: first key {first!r} is in neither torchvision's layout "
        "('features.N...') nor the official Swin release's ('patch_embed.*', 'layers.N...')"
    )


def _rename_official(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """An official-layout state dict -> (the torchvision-layout state dict, ``{our key: the file's
    key}``, the dropped ``attn_mask`` keys). ``relative_position_index`` [M*M, M*M] becomes
    torchvision's flat [M**4] (the same numbers)."""
    dropped = [k for k in state if k.endswith(".attn_mask")]
    file_key = {official_to_torchvision(k): k for k in state if k not in dropped}
    renamed = {
        ours: state[k].flatten() if ours.endswith("attn.relative_position_index") else state[k]
        for ours, k in file_key.items()
    }
    return renamed, file_key, dropped


def _mismatch(
    name: str,
    model_name: str,
    file_key: dict[str, str],
    state: dict[str, Tensor],
    own: dict[str, Tensor],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    """The error message: the file, the first mismatched key (in the model's order, then the file's
    for unexpected keys) and what is wrong with it, then each kind of mismatch with its keys."""

    def shown(key: str) -> str:  # a renamed key (official layout) as the file names it, and ours
        return repr(key) if file_key.get(key, key) == key else f"{file_key[key]!r} (our {key})"

    def shapes(key: str) -> str:
        return f"file {tuple(state[key].shape)} vs model {tuple(own[key].shape)}"

    wrong_in_model = set(missing) | set(mismatched)
    first = next((k for k in own if k in wrong_in_model), None) or unexpected[0]
    if first in missing:
        why = "is missing from the file"
    elif first in mismatched:
        why = f"has the wrong shape: {shapes(first)}"
    else:
        why = "is not in the model"
    problems = [
        f"{label} ({len(keys)}): {_listing(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", [f"{k}: {shapes(k)}" for k in mismatched]),
        )
        if keys
    ]
    return f"{name}: does not fit {model_name}: first mismatched key {shown(first)} {why}; " + "; ".join(
        problems
    )


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
