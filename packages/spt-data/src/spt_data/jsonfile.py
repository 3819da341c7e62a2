"""Loading an annotation JSON file with errors that name the file and the position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = ["load_json"]


def load_json(path: Path, what: str = "annotation") -> Any:
    """Parse ``path`` as JSON; missing, unreadable or invalid files raise :class:`DataError`
    naming the file (``what``: the kind of file, for the message)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"{path}: {what} file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what} file: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e


def type_name(obj: Any) -> str:
    """JSON type name of a parsed value, for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(obj), "number" if isinstance(obj, int | float) else type(obj).__name__
    )
