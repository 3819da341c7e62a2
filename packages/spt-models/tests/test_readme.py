"""The package README's detector example runs as written (within 10 lines of code)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_detector_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "create_detector" in b)
    code = [line for line in example.strip().splitlines() if line and not line.startswith(("import", "from"))]
    assert len(code) <= 10
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    losses = namespace["losses"]
    assert {"loss_mask", "loss_select", "loss_classifier"} <= set(losses)
    assert all(v.isfinite() for v in losses.values())
