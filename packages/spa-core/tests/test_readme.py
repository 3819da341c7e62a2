"""The README's "Use SPA in your model" example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_example_runs(capsys):
    if not README.exists():
        pytest.skip("README.md is not beside packages/ (package installed alone)")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "SPABlock" in b)
    assert len(example.strip().splitlines()) <= 12
    exec(compile(example, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"tensor\(\[0\.\d+, 0\.\d+\]\) \d+", printed), printed
