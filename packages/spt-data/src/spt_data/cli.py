"""``spt-data``: synth, convert, labels, subset, stats. A thin layer over the library.

Every output is written atomically. ``convert --on-error skip`` logs each bad record, counts them and
reports the count at the end; ``raise`` (default) stops at the first with exit code 2 and the message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from . import synth
from .bdd import read_bdd
from .coco import read_coco
from .errors import DataError, OnError
from .frame import Frame, resize_policy
from .images import CHECK_MODES
from .io import atomic_write_json
from .labels import STRIDES, label_rows, read_labels, write_labels
from .records import Dataset
from .stats import format_stats, label_stats, manifest_stats, record_stats
from .store import read_records, write_records
from .subsets import SMALL_OBJECT_RATIO, read_manifest, subset_manifest, write_manifest
from .voc import read_voc

__all__ = ["main"]

_log = logging.getLogger("spt_data.cli")
T = TypeVar("T")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 320x192, got {text!r}") from None
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spt-data", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write synthetic street scenes (JPEG + BDD json + COCO json)")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--num-images", type=int, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", default="train")
    s.add_argument("--size", type=_size, default=synth.DEFAULT_SIZE, help="WIDTHxHEIGHT (default 320x192)")

    c = sub.add_parser("convert", help="raw dataset -> records Parquet")
    c.add_argument("--format", required=True, choices=("coco", "bdd", "voc"))
    c.add_argument(
        "--ann", nargs="+", type=Path, help="coco: instances json; bdd: frame-list json file(s) or folder"
    )
    c.add_argument("--images", type=Path, help="coco/bdd: image folder")
    c.add_argument("--root", type=Path, help="voc: the folder holding Annotations/ and JPEGImages/")
    c.add_argument("--split", default="trainval", help="voc: ImageSets/Main/<split>.txt ('all': every xml)")
    c.add_argument("--voc-instances", default="xml", choices=("xml", "segmentation"))
    c.add_argument("--check-images", default="header", choices=CHECK_MODES)
    c.add_argument("--on-error", default="raise", choices=OnError.MODES)
    c.add_argument("--out", required=True, type=Path, help="records .parquet")

    lab = sub.add_parser("labels", help="records -> multi-scale selection labels Parquet")
    lab.add_argument("--records", required=True, type=Path)
    lab.add_argument("--out", required=True, type=Path)
    lab.add_argument("--strides", type=int, nargs="+", default=list(STRIDES))
    lab.add_argument("--short", type=int, default=800, help="short side of the training frame (0: no resize)")
    lab.add_argument(
        "--long", type=int, default=1333, help="max long side of the training frame (0: no limit)"
    )
    lab.add_argument("--pad-to", type=int, default=32)
    lab.add_argument("--boxes-only", action="store_true", help="ignore instance masks, use boxes")

    sb = sub.add_parser("subset", help="records -> object-to-pixel ratio manifest (BDD-S / VOC-S)")
    sb.add_argument("--records", required=True, type=Path)
    sb.add_argument("--out", required=True, type=Path, help=".csv or .parquet")
    sb.add_argument("--max-ratio", type=float, default=SMALL_OBJECT_RATIO)
    sb.add_argument("--boxes-only", action="store_true")

    st = sub.add_parser("stats", help="summaries of records, labels and a manifest")
    st.add_argument("--records", type=Path)
    st.add_argument("--labels", type=Path)
    st.add_argument("--manifest", type=Path)
    st.add_argument("--out", type=Path, help="also write the stats as JSON")
    return p


class _Bars:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, items: Iterable[T], desc: str = "") -> Iterable[T]:
        if not self.enabled:
            return items
        return tqdm(items, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def _synth(args: argparse.Namespace, bars: _Bars) -> int:
    paths = synth.generate(
        args.out, args.num_images, args.seed, args.split, args.size, progress=lambda it: bars(it, "synth")
    )
    print(f"wrote {args.num_images} images to {paths['images']}, labels {paths['bdd']} and {paths['coco']}")
    return 0


def _convert(args: argparse.Namespace, bars: _Bars) -> int:
    policy = OnError(args.on_error)
    prog = {"progress": lambda it: bars(it, "convert"), "on_error": policy, "check_images": args.check_images}
    if args.format == "voc":
        if args.root is None:
            raise SystemExit("convert --format voc needs --root")
        ds: Dataset = read_voc(
            args.root, split=None if args.split == "all" else args.split, instances=args.voc_instances, **prog
        )
    else:
        if not args.ann or args.images is None:
            raise SystemExit(f"convert --format {args.format} needs --ann and --images")
        if args.format == "coco":
            if len(args.ann) != 1:
                raise SystemExit("convert --format coco takes one --ann file")
            ds = read_coco(args.ann[0], args.images, **prog)
        else:
            ds = read_bdd(args.ann, args.images, **prog)
    write_records(args.out, ds)
    print(f"wrote {args.out}: {len(ds.records)} records, {policy.count} skipped")
    if policy.count:
        _log.warning("skipped %d bad records (each logged above)", policy.count)
    return 0


def _labels(args: argparse.Namespace, bars: _Bars) -> int:
    ds = read_records(args.records)
    short, long = args.short or None, args.long or None
    params = {
        "short": short,
        "long": long,
        "pad_to": args.pad_to,
        "strides": args.strides,
        "use_masks": not args.boxes_only,
    }

    def policy(w: int, h: int) -> Frame:
        return resize_policy(w, h, short=short, long=long, pad_to=args.pad_to)

    rows = label_rows(
        bars(ds.records, "labels"), strides=args.strides, policy=policy, use_masks=not args.boxes_only
    )
    n = write_labels(args.out, rows, {**params, "records": str(args.records)})
    print(f"wrote {args.out}: {n} grids ({len(ds.records)} images x {len(args.strides)} strides)")
    return 0


def _subset(args: argparse.Namespace, bars: _Bars) -> int:
    ds = read_records(args.records)
    rows = subset_manifest(
        ds.records,
        max_ratio=args.max_ratio,
        use_masks=not args.boxes_only,
        progress=lambda it: bars(it, "subset"),
    )
    write_manifest(args.out, rows, {"max_ratio": args.max_ratio, "use_masks": not args.boxes_only})
    kept = sum(r["in_subset"] for r in rows)
    print(f"wrote {args.out}: {kept} of {len(rows)} images with object-to-pixel ratio < {args.max_ratio}")
    return 0


def _stats(args: argparse.Namespace, bars: _Bars) -> int:
    if not (args.records or args.labels or args.manifest):
        raise SystemExit("stats needs at least one of --records, --labels, --manifest")
    out: dict[str, Any] = {}
    if args.records:
        out["records"] = record_stats(read_records(args.records).records)
    if args.labels:
        out["labels"] = label_stats(read_labels(args.labels))
    if args.manifest:
        out["manifest"] = manifest_stats(read_manifest(args.manifest))
    print(format_stats(out))
    if args.out:
        atomic_write_json(args.out, out, indent=2)
    return 0


COMMANDS = {"synth": _synth, "convert": _convert, "labels": _labels, "subset": _subset, "stats": _stats}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``spt-data``; -> exit code (0 ok, 2 bad data)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("spt_data").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return COMMANDS[args.command](args, _Bars(not args.no_progress))
    except DataError as err:
        _log.error("%s", err)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
