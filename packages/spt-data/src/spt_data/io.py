"""Atomic outputs: write to a temporary file in the destination folder, then ``os.replace``.

An interrupted run leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "read_versioned_parquet",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON (allow_nan=False: NaN never reaches a file) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def read_versioned_parquet(
    path: str | os.PathLike[str], *, kind: str, version: int, columns: list[str], what: str
) -> tuple[pa.Table, dict[str, str]]:
    """Read a Parquet file this package wrote and check its ``spt_data.kind``, its
    ``spt_data.schema_version`` and its columns -> (table, metadata); ``what`` names the kind in
    errors ("records", "selection-label"). Raises :class:`DataError` naming the file."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found" if not Path(path).exists() else f"{path}: not a file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: cannot read Parquet: {e}") from e
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    found_kind, found_version = meta.get("spt_data.kind"), meta.get("spt_data.schema_version")
    if found_kind != kind:
        raise DataError(f"{path}: not a {what} file (spt_data.kind={found_kind!r}, expected {kind!r})")
    if found_version != str(version):
        raise DataError(f"{path}: {what} schema version {found_version!r}, this reader needs {version}")
    missing = [n for n in columns if n not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    return table, meta


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`DataError` unless a new file can be created at ``path`` (its folder existing
    or creatable, and taking a file): checked before any work, by writing a probe file."""
    parent = Path(path).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"cannot write {what}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".spt-probe.", dir=parent)
    except OSError as e:
        raise DataError(f"cannot write {what}: folder {parent} is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
