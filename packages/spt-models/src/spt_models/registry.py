"""Model registry: names -> builders (``create_model("spt_t")``), as in timm.

Builders are small functions ``builder(**overrides) -> nn.Module`` registered with
:func:`register_model`; a variant is a config (data), its builder three lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``known``, or ``; known: a, b, ...``."""
    known = sorted(known)
    near = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"


class UnknownOptionError(TypeError, ValueError):
    """A keyword option a builder does not take: a ``TypeError`` as Python's own for an unexpected
    keyword, and a ``ValueError`` as the builders' other errors. ``option`` is the unknown name,
    ``known`` the options taken (sorted)."""

    def __init__(self, owner: str, option: str, known: Iterable[str]) -> None:
        self.owner, self.option, self.known = owner, option, sorted(known)
        super().__init__(f"{owner}: unknown option {option!r}{did_you_mean(option, self.known)}")


class Registry:
    """A name -> builder map in which every name is registered once."""

    def __init__(self) -> None:
        self._builders: dict[str, Callable[..., nn.Module]] = {}

    def register(self, builder: Builder | None = None, *, name: str | None = None):
        """Decorator: ``@register`` (the function's name) or ``@register(name="...")``.

        Raises ValueError naming the model when the name is already registered.
        """

        def add(fn: Builder) -> Builder:
            key = name or fn.__name__
            if key in self._builders:
                raise ValueError(f"model {key!r} is already registered (by {self._builders[key].__module__})")
            self._builders[key] = fn
            return fn

        return add(builder) if builder is not None else add

    def create(self, name: str, **overrides) -> nn.Module:
        """Build the model registered as ``name``; ``overrides`` replace fields of its config."""
        if name not in self._builders:
            raise ValueError(f"unknown model {name!r}; known models: {', '.join(self.names())}")
        return self._builders[name](**overrides)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders


_MODELS = Registry()
_MODEL_MODULES = ("swin", "spt", "dynamicswin", "sparsevit", "dat", "vit")  # they register on import


def _import_models() -> None:
    """Import the package's model modules (once), so their builders are registered."""
    for module in _MODEL_MODULES:
        importlib.import_module(f"spt_models.{module}")


def register_model(builder: Builder | None = None, *, name: str | None = None):
    """Register a builder in the package's registry (see :meth:`Registry.register`)."""
    return _MODELS.register(builder, name=name)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model, e.g. ``create_model("spt_t", backend="reference", drop_path=0.0)``."""
    _import_models()
    return _MODELS.create(name, **overrides)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_models()
    return _MODELS.names()


def list_multiscale_models() -> list[str]:
    """The registered models that keep the backbone contract (four stage maps: detectors take them),
    i.e. all but single-scale ones (``vit_s16``); asked of each model built on the meta device."""
    with torch.device("meta"):
        return [name for name in list_models() if create_model(name).multiscale]


Config = TypeVar("Config")


def with_overrides(config: Config, **overrides) -> Config:
    """A copy of the frozen dataclass ``config`` with some fields replaced.

    Raises :class:`UnknownOptionError` naming the first unknown field and the closest known one.
    """
    known = [f.name for f in dataclasses.fields(config)]
    for name in overrides:
        if name not in known:
            raise UnknownOptionError(type(config).__name__, name, known)
    return dataclasses.replace(config, **overrides)


def build(model_cls: Callable[..., nn.Module], config, **overrides) -> nn.Module:
    """The one builder: ``model_cls(**fields of config)`` with some fields replaced by ``overrides``
    (unknown fields raise, see :func:`with_overrides`)."""
    return model_cls(**dataclasses.asdict(with_overrides(config, **overrides)))
