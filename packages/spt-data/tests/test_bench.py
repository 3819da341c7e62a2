"""The label benchmark script runs end to end and writes its JSON (small size; the real run is 2,000 images)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_labels.py"


def test_bench_labels_smoke(tmp_path, capsys):
    main = runpy.run_path(str(BENCH), run_name="bench_labels")["main"]
    out = tmp_path / "bench.json"
    assert main(["--num-images", "40", "--repeats", "1", "--mask-scenes", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_images"] == 40 and result["image_size"] == [1280, 720]
    assert result["frame"] == {
        "scale": 1333 / 1280,
        "out_w": 1333,
        "out_h": 750,
        "padded_w": 1344,
        "padded_h": 768,
    }
    assert result["end_to_end_images_per_s"] > 0 and result["parquet_bytes_per_image"] > 0
    assert result["end_to_end_images_per_s_masks"] > 0 and result["instances_per_image_masks"] > 1
    assert {"python", "numpy", "pyarrow", "cpu_count"} <= set(result["env"])
    assert "images/s" in capsys.readouterr().out
