"""PEP 562 lazy exports: a package names what it offers and from which submodule, and each name is
imported on first use, so importing the package (and a CLI's ``--help``) does not import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """-> the ``(__getattr__, __dir__)`` of ``package`` whose ``exports`` map a name to the submodule
    that defines it; a name, once imported, is cached in the package's ``namespace`` (its globals)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
