"""Selection-label throughput on synthetic 1280x720 street-scene records, boxes and masks, strides 8/16/32.

Two record sets, built in memory: ``boxes`` from the synthetic scene layouts (no pixels), ``masks``
from rendered scenes with their visible instance masks as COCO RLE (what ``synth`` writes;
rendering costs ~0.1 s per image, so ``--mask-scenes`` distinct scenes are rendered and repeated up
to ``--num-images``: the label work per image is the same, nothing is cached between records).
Two timings per set, each the median of ``--repeats`` runs after a warm-up:
  compute: ``selection_labels`` for every record (resize policy + rasterisation at every stride);
  end-to-end: compute + ``np.packbits`` + Parquet write (zstd) of the whole label file.
Prints a table and writes JSON (``--out``) with the figures, the Parquet bytes per image and the
environment. Single process.

    python packages/spt-data/benchmarks/bench_labels.py --num-images 2000 --out results/bench_labels.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from spt_data import resize_policy, selection_labels
from spt_data.io import atomic_write_json
from spt_data.labels import label_rows, write_labels
from spt_data.synth import layout_records, scene_records


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_set(records: list, policy, args: argparse.Namespace) -> dict:
    """Compute and end-to-end timings of one record set (module doc)."""
    n = len(records)

    def compute() -> None:
        for r in records:
            selection_labels(r, policy(r.width, r.height), args.strides)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.parquet"

        def end_to_end() -> None:
            write_labels(path, label_rows(records, strides=args.strides, policy=policy), {})

        for r in records[:50]:  # warm-up
            selection_labels(r, policy(r.width, r.height), args.strides)
        compute_s = _median_time(compute, args.repeats)
        e2e_s = _median_time(end_to_end, args.repeats)
        parquet_bytes = path.stat().st_size
    grids = [selection_labels(r, policy(r.width, r.height), args.strides) for r in records[:200]]
    return {
        "instances_per_image": sum(r.num_instances for r in records) / max(n, 1),
        "positive_fraction_first_200": {
            str(s): float(np.mean([g[s].mean() for g in grids])) for s in args.strides
        },
        "compute_s": compute_s,
        "compute_images_per_s": n / compute_s,
        "end_to_end_s": e2e_s,
        "end_to_end_images_per_s": n / e2e_s,
        "parquet_bytes": parquet_bytes,
        "parquet_bytes_per_image": parquet_bytes / max(n, 1),
    }


def _env() -> dict:
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "processes": 1,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the records")
    p.add_argument("--strides", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--short", type=int, default=800)
    p.add_argument("--long", type=int, default=1333)
    p.add_argument("--pad-to", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask-scenes", type=int, default=100, help="distinct rendered scenes in the masks set")
    p.add_argument("--out", type=Path, default=Path("results/bench_labels.json"))
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    def policy(w: int, h: int):
        return resize_policy(w, h, short=args.short, long=args.long, pad_to=args.pad_to)

    t0 = time.perf_counter()
    boxes = layout_records(args.num_images, seed=args.seed, size=(width, height))
    scenes = scene_records(min(args.mask_scenes, args.num_images), seed=args.seed, size=(width, height))
    masks = [scenes[i % len(scenes)] for i in range(args.num_images)]
    build_s = time.perf_counter() - t0
    n = len(boxes)
    frame = policy(width, height)
    sets = {name: _time_set(recs, policy, args) for name, recs in (("boxes", boxes), ("masks", masks))}
    result = {
        "num_images": n,
        "image_size": [width, height],
        "frame": frame._asdict(),
        "strides": args.strides,
        "mask_scenes": len(scenes),
        "repeats": args.repeats,
        "build_records_s": build_s,
        **{f"{k}_{name}": v for name, d in sets.items() for k, v in d.items()},
        **{k: v for k, v in sets["boxes"].items()},  # boxes figures also under their first names
        "target_images_per_s": 500,
        "env": _env(),
    }
    print(
        f"{n} images {width}x{height} -> frame {frame.out_w}x{frame.out_h} padded "
        f"{frame.padded_w}x{frame.padded_h}, strides {args.strides}; masks from {len(scenes)} rendered scenes"
    )
    head = f"{'records':<7}  {'inst/img':>8}  {'compute img/s':>13}  {'+pack+parquet img/s':>19}  {'B/image':>7}  positive cells"
    print(head + "\n" + "-" * len(head))
    for name, d in sets.items():
        pos = " ".join(f"s{k}: {v:.3f}" for k, v in d["positive_fraction_first_200"].items())
        print(
            f"{name:<7}  {d['instances_per_image']:8.1f}  {d['compute_images_per_s']:13.0f}  "
            f"{d['end_to_end_images_per_s']:19.0f}  {d['parquet_bytes_per_image']:7.1f}  {pos}"
        )
    env = result["env"]
    print(
        f"target >= 500 images/s; python {env['python']}, numpy {env['numpy']}, {env['cpus_usable']} cpus, 1 process"
    )
    atomic_write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
