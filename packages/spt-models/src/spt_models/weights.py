"""Loading torchvision Swin weights (``swin_t/s/b`` state dicts) from a user-given file.

Nothing is downloaded: the user saves a torchvision state dict (``torch.save(swin_t(weights=
"DEFAULT").state_dict(), path)``) and passes the path. Keys keep torchvision's layout
(``features.N...``), so no renaming happens. Dropped with a log line: the classification ``head``
and final ``norm``, and ``attn.relative_position_index`` buffers the model does not have (SPA
blocks compute offsets from true positions). A model may declare keys a Swin checkpoint does not
provide (``model.fresh_keys()``: SPT's gates and extra blocks); those keep their initialisation and
are logged. Anything else missing, unexpected, or of the wrong shape is an error naming the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("head.", "norm.")  # torchvision's classification head and final LayerNorm
WRAPPER_KEYS = ("model", "state_dict")  # training checkpoints that wrap the state dict


@dataclass(frozen=True)
class LoadReport:
    """loaded: keys copied from the file; fresh: model keys left at their init; ignored: file keys dropped."""

    loaded: list[str]
    fresh: list[str]
    ignored: list[str]


def load_swin_weights(model: nn.Module, source: str | Path | Mapping[str, Tensor]) -> LoadReport:
    """Copy a torchvision Swin state dict (a file path, or the mapping itself) into ``model``.

    Raises ValueError naming missing keys (not in ``model.fresh_keys()``), unexpected keys and
    shape mismatches; the model is left untouched then.
    """
    name, state = _read(source)
    own = model.state_dict()
    ignored = [k for k in state if k.startswith(CLASSIFIER_PREFIXES)]
    ignored += [k for k in state if k.endswith("attn.relative_position_index") and k not in own]
    state = {k: v for k, v in state.items() if k not in set(ignored)}

    may_be_fresh = set(model.fresh_keys()) if hasattr(model, "fresh_keys") else set()
    missing = [k for k in own if k not in state and k not in may_be_fresh]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(keys)}): {_listing(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if keys
        ]
        raise ValueError(f"{name}: does not fit {type(model).__name__}: " + "; ".join(problems))

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
    return LoadReport(loaded=list(state), fresh=fresh, ignored=ignored)


def _read(source: str | Path | Mapping[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """-> (a name for messages, the state dict)."""
    if isinstance(source, Mapping):
        name, state = "state dict", source
    else:
        name = str(source)
        state = torch.load(Path(source), map_location="cpu", weights_only=True)
    for key in WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            log.info("%s: using the state dict under key %r", name, key)
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{name}: expected a state dict (str -> Tensor), got {type(state).__name__}")
    return name, dict(state)


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
