"""``spt-data``: synth, convert, labels, subset, stats. A thin layer over the library.

Every output is written atomically, and every argument and output path is checked before the work
starts (:mod:`.cliargs`). Exit codes: 0 success, 2 usage or data error (one line naming the argument,
or the file, record and value), 1 I/O error. ``convert --on-error skip`` logs each bad record and
reports the counts (images, annotations) at the end; ``raise`` (default) stops at the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from . import cliargs as ca
from . import synth
from .bdd import read_bdd
from .coco import read_coco
from .errors import DataError, OnError
from .frame import Frame, resize_policy
from .images import CHECK_MODES
from .io import atomic_write_json
from .labels import STRIDES, label_rows, read_labels, source_params, write_labels
from .records import Dataset
from .stats import format_stats, label_stats, manifest_stats, record_stats
from .store import read_records, write_records
from .subsets import SMALL_OBJECT_RATIO, read_manifest, subset_manifest, write_manifest
from .voc import read_voc

__all__ = ["main"]

_log = logging.getLogger("spt_data.cli")
T = TypeVar("T")
FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _sub(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, formatter_class=FORMATTER)
    p.set_defaults(subparser=p)  # for usage errors that involve several arguments
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spt-data", description=__doc__.splitlines()[0], formatter_class=FORMATTER
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _sub(sub, "synth", "write synthetic street scenes (JPEG + BDD json + COCO json)")
    s.add_argument("--out", required=True, type=ca.output_dir, help="output folder")
    s.add_argument("--num-images", type=ca.positive_int, default=200, help="images to write")
    s.add_argument("--seed", type=ca.nonneg_int, default=0, help="random seed (same seed, same bytes)")
    s.add_argument("--split", type=ca.split_name, default="train", help="split name (file names)")
    s.add_argument(
        "--size",
        type=ca.synth_size,
        default="{}x{}".format(*synth.DEFAULT_SIZE),
        help="WIDTHxHEIGHT, both >= 32",
    )
    s.add_argument("--overwrite", action="store_true", help="replace the split if --out already holds it")
    s.add_argument(
        "--min-size",
        type=ca.nonneg_int,
        default=0,
        help="objects whose shorter box side is under this many px are labelled crowd (kept in the "
        "selection labels, ignored by COCOeval, no training target)",
    )

    c = _sub(sub, "convert", "raw dataset -> records Parquet")
    c.add_argument("--format", required=True, choices=("coco", "bdd", "voc"), help="annotation format")
    c.add_argument(
        "--ann", nargs="+", type=Path, help="coco: instances json; bdd: frame-list json file(s) or folder"
    )
    c.add_argument(
        "--images",
        type=Path,
        help="coco/bdd: image folder (optional with --check-images none: image paths stay relative)",
    )
    c.add_argument("--root", type=Path, help="voc: the folder holding Annotations/ and JPEGImages/")
    c.add_argument("--split", default="trainval", help="voc: ImageSets/Main/<split>.txt ('all': every xml)")
    c.add_argument(
        "--voc-instances", default="xml", choices=("xml", "segmentation"), help="voc: instances from"
    )
    c.add_argument(
        "--image-size",
        type=ca.image_size,
        help="bdd: WIDTHxHEIGHT of every frame (needed with --check-images none)",
    )
    c.add_argument("--check-images", default="header", choices=CHECK_MODES, help="image file check (README)")
    c.add_argument(
        "--on-error", default="raise", choices=OnError.MODES, help="bad record: stop, or log and skip"
    )
    c.add_argument(
        "--out", required=True, type=ca.output_file(".parquet", what="records Parquet"), help="records file"
    )

    lab = _sub(sub, "labels", "records -> multi-scale selection labels Parquet")
    lab.add_argument("--records", required=True, type=ca.existing_file, help="records .parquet")
    lab.add_argument(
        "--out", required=True, type=ca.output_file(".parquet", what="labels Parquet"), help="labels file"
    )
    lab.add_argument(
        "--strides", type=ca.positive_int, nargs="+", default=list(STRIDES), help="token strides (px)"
    )
    lab.add_argument(
        "--short", type=ca.nonneg_int, default=800, help="short side of the training frame (0: no resize)"
    )
    lab.add_argument(
        "--long", type=ca.nonneg_int, default=1333, help="max long side of the training frame (0: no limit)"
    )
    lab.add_argument("--pad-to", type=ca.positive_int, default=32, help="pad the frame to a multiple of this")
    lab.add_argument("--boxes-only", action="store_true", help="ignore instance masks, use boxes")

    sb = _sub(sub, "subset", "records -> object-to-pixel ratio manifest (BDD-S / VOC-S)")
    sb.add_argument("--records", required=True, type=ca.existing_file, help="records .parquet")
    sb.add_argument(
        "--out", required=True, type=ca.output_file(".csv", ".parquet", what="manifest"), help="manifest"
    )
    sb.add_argument(
        "--max-ratio", type=ca.ratio, default=SMALL_OBJECT_RATIO, help="keep images with ratio < this"
    )
    sb.add_argument("--boxes-only", action="store_true", help="ignore instance masks, use boxes")
    sb.add_argument(
        "--records-out",
        type=ca.output_file(".parquet", what="records Parquet"),
        help="also write the records of the subset's images (train or evaluate on BDD-S / VOC-S)",
    )

    st = _sub(sub, "stats", "summaries of records, labels and a manifest")
    st.add_argument("--records", type=ca.existing_file, help="records .parquet")
    st.add_argument("--labels", type=ca.existing_file, help="labels .parquet")
    st.add_argument("--manifest", type=ca.existing_file, help="manifest .csv or .parquet")
    st.add_argument("--out", type=ca.output_file(".json", what="JSON"), help="also write the stats as JSON")
    return p


def _usage_problem(args: argparse.Namespace) -> str | None:
    """Problems that involve several arguments (argparse checks each one alone); None if fine."""
    if args.command == "convert":
        if args.format == "voc":
            if args.root is None:
                return "convert --format voc needs --root"
            if args.ann or args.images:
                return "convert --format voc takes --root, not --ann or --images"
        elif not args.ann:
            return f"convert --format {args.format} needs --ann"
        elif args.images is None and args.check_images != "none":
            return (
                f"convert --format {args.format} --check-images {args.check_images} needs --images "
                "(the image folder; only --check-images none goes without it)"
            )
        elif args.format == "coco" and len(args.ann) != 1:
            return "convert --format coco takes one --ann file"
        if args.format == "bdd" and args.check_images == "none" and args.image_size is None:
            return (
                "convert --format bdd --check-images none needs --image-size WxH (BDD frames carry no size)"
            )
        if args.image_size is not None and args.format != "bdd":
            return "--image-size is for --format bdd only (COCO and VOC files give each image's size)"
    if args.command == "labels":
        dup = sorted({s for s in args.strides if args.strides.count(s) > 1})
        if dup:
            return f"argument --strides: each stride once, got {' '.join(map(str, args.strides))}"
    if (
        args.command == "subset"
        and args.records_out
        and Path(args.records_out).resolve() == Path(args.records).resolve()
    ):
        return "subset --records-out must not be the input --records file"
    if args.command == "stats" and not (args.records or args.labels or args.manifest):
        return "stats needs at least one of --records, --labels, --manifest"
    if args.command == "synth" and not args.overwrite:
        held = synth.existing_split(args.out, args.split)
        if held:
            return f"--out {args.out} already holds split {args.split!r} ({held[0]}); pass --overwrite to replace it"
    return None


class _Bars:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, items: Iterable[T], desc: str = "") -> Iterable[T]:
        if not self.enabled:
            return items
        return tqdm(items, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def _synth(args: argparse.Namespace, bars: _Bars) -> int:
    paths = synth.generate(
        args.out,
        args.num_images,
        args.seed,
        args.split,
        args.size,
        progress=lambda it: bars(it, "synth"),
        overwrite=args.overwrite,
        min_size=args.min_size,
    )
    print(f"wrote {args.num_images} images to {paths['images']}, labels {paths['bdd']} and {paths['coco']}")
    return 0


def _read(args: argparse.Namespace, bars: _Bars, policy: OnError) -> Dataset:
    kw = {"progress": lambda it: bars(it, "convert"), "on_error": policy, "check_images": args.check_images}
    if args.format == "voc":
        split = None if args.split == "all" else args.split
        return read_voc(args.root, split=split, instances=args.voc_instances, **kw)
    images = args.images if args.images is not None else Path()  # no folder: paths relative
    if args.format == "coco":
        return read_coco(args.ann[0], images, **kw)
    return read_bdd(args.ann, images, image_size=args.image_size, **kw)


def _warn_if_empty(n: int, path: Path) -> None:
    if n == 0:
        _log.warning("%s holds no image: the input gave 0 records", path)


def _convert(args: argparse.Namespace, bars: _Bars) -> int:
    policy = OnError(args.on_error)
    ds = _read(args, bars, policy)
    write_records(args.out, ds)
    print(f"wrote {args.out}: {len(ds.records)} records, {policy.summary()}")
    if policy.count:
        _log.warning("%s (each logged above)", policy.summary())
    _warn_if_empty(len(ds.records), args.out)
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
    n = write_labels(args.out, rows, {**params, **source_params(ds.records, args.records)})
    print(f"wrote {args.out}: {n} grids ({len(ds.records)} images x {len(args.strides)} strides)")
    _warn_if_empty(len(ds.records), args.out)
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
    _warn_if_empty(len(rows), args.out)
    if args.records_out:
        subset = [rec for rec, row in zip(ds.records, rows) if row["in_subset"]]
        write_records(args.records_out, dataclasses.replace(ds, records=subset, num_skipped=0))
        print(f"wrote {args.records_out}: {len(subset)} records")
        _warn_if_empty(len(subset), args.records_out)
    return 0


def _stats(args: argparse.Namespace, bars: _Bars) -> int:
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
    """Entry point of ``spt-data``; -> exit code: 0 ok, 2 usage or data error, 1 I/O error."""
    parser = _parser()
    args = parser.parse_args(argv)
    problem = _usage_problem(args)
    if problem:
        args.subparser.error(problem)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("spt_data").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return COMMANDS[args.command](args, _Bars(not args.no_progress))
    except DataError as err:
        _log.error("%s", err)
        return 2
    except OSError as err:
        _log.error("%s", err)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
