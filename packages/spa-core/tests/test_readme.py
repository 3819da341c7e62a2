"""The READMEs' examples run as written: the repository's "Use SPA in your model" and spa-core's
"Swap a Swin block for an SPA block"."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"
SPA_CORE_README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_example_runs(capsys):
    if not README.exists():
        pytest.skip("README.md is not beside packages/ (package installed alone)")
    example = next(b for b in python_blocks(README) if "SPABlock" in b)
    assert len(example.strip().splitlines()) <= 12
    exec(compile(example, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"tensor\(\[0\.\d+, 0\.\d+\]\) \d+", printed), printed


def test_spa_core_readme_swap_example_runs(capsys):
    pytest.importorskip("torchvision")
    example = next(b for b in python_blocks(SPA_CORE_README) if "from_swin_block" in b)
    exec(compile(example, str(SPA_CORE_README), "exec"), {})
    assert capsys.readouterr().out == "True True\n"
