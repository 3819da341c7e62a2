"""spt-data must never import torch: import every module in a fresh interpreter and check."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import spt_data


def test_no_torch_anywhere():
    modules = sorted(f"spt_data.{m.name}" for m in pkgutil.iter_modules(spt_data.__path__))
    assert {"spt_data.cli", "spt_data.synth", "spt_data.labels", "spt_data.coco"} <= set(modules)
    code = f"import spt_data, {', '.join(modules)}; import sys; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
