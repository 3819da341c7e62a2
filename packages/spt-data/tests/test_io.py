"""Atomic outputs: an exception while writing leaves neither a partial file nor a temp file."""

from __future__ import annotations

import pytest

from spt_data.io import atomic_path, atomic_write_json


def test_failed_write_leaves_old_file(tmp_path):
    dest = tmp_path / "out.json"
    atomic_write_json(dest, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("interrupted")
    assert dest.read_text() == '{"v": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_nan_never_reaches_a_file(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"v": float("nan")})
    assert list(tmp_path.iterdir()) == []
