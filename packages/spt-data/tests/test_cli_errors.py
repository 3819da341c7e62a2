"""Every bad CLI argument is one usage line with exit code 2 (never a traceback), checked before any
work starts; data errors exit 2 with the file, record and value; the small CLI behaviours of issue 11."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from spt_data import read_records, synth
from spt_data.cli import _parser, main


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "raw"
    assert main(["--no-progress", "synth", "--out", str(out), "--num-images", "3", "--size", "64x48"]) == 0
    return out


@pytest.fixture(scope="module")
def records(raw) -> Path:
    rec = raw.parent / "records.parquet"
    ann, img = raw / "labels" / "train.json", raw / "images" / "train"
    args = ["convert", "--format", "bdd", "--ann", str(ann), "--images", str(img), "--out", str(rec)]
    assert main(["--no-progress", *args]) == 0
    return rec


def _usage(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: spt-data"), err
    return err[-1]


def _usage_cases(raw: Path, rec: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "afile").write_text("x")
    lab = ["labels", "--records", str(rec), "--out", str(tmp / "l.parquet")]
    sub = ["subset", "--records", str(rec)]
    bdd = ["convert", "--format", "bdd", "--ann", str(raw / "labels" / "train.json"), "--images", str(tmp)]
    return {
        "labels --strides 0": (
            [*lab, "--strides", "0"],
            "argument --strides: must be a positive integer, got '0'",
        ),
        "labels --strides -8": (
            [*lab, "--strides", "-8"],
            "argument --strides: must be a positive integer, got '-8'",
        ),
        "labels --strides 8 8": (
            [*lab, "--strides", "8", "8"],
            "argument --strides: each stride once, got 8 8",
        ),
        "labels --pad-to 0": (
            [*lab, "--pad-to", "0"],
            "argument --pad-to: must be a positive integer, got '0'",
        ),
        "labels --short -5": ([*lab, "--short", "-5"], "argument --short: must be an integer >= 0, got '-5'"),
        "labels --long x": ([*lab, "--long", "x"], "argument --long: must be an integer, got 'x'"),
        "synth --num-images -1": (
            ["synth", "--out", str(tmp / "s"), "--num-images", "-1"],
            "argument --num-images: must be a positive integer, got '-1'",
        ),
        "synth --size 10x10": (
            ["synth", "--out", str(tmp / "s"), "--size", "10x10"],
            "argument --size: must be WIDTHxHEIGHT with both sides >= 32, got '10x10'",
        ),
        "synth --out a file": (
            ["synth", "--out", str(tmp / "afile")],
            f"argument --out: {tmp / 'afile'} is a file, expected a folder",
        ),
        "synth into a held split": (
            ["synth", "--out", str(raw)],
            f"--out {raw} already holds split 'train' ({raw / 'images' / 'train'}); pass --overwrite to replace it",
        ),
        "subset --max-ratio nan": (
            [*sub, "--out", str(tmp / "m.csv"), "--max-ratio", "nan"],
            "argument --max-ratio: must be a number in (0, 1], got 'nan'",
        ),
        "subset --max-ratio -0.25": (
            [*sub, "--out", str(tmp / "m.csv"), "--max-ratio", "-0.25"],
            "argument --max-ratio: must be a number in (0, 1], got '-0.25'",
        ),
        "subset --out manifest.txt": (
            [*sub, "--out", str(tmp / "manifest.txt")],
            f"argument --out: must end in .csv or .parquet (manifest), got '{tmp / 'manifest.txt'}'",
        ),
        "subset --records-out = --records": (
            [*sub, "--out", str(tmp / "m.csv"), "--records-out", str(rec)],
            "subset --records-out must not be the input --records file",
        ),
        "convert --out records.csv": (
            [*bdd, "--out", str(tmp / "records.csv")],
            f"argument --out: must end in .parquet (records Parquet), got '{tmp / 'records.csv'}'",
        ),
        "convert --out a directory": (
            [*bdd, "--out", str(tmp / "d.parquet")],
            f"argument --out: {tmp / 'd.parquet'} is a directory, expected a file name",
        ),
        "convert --out under a file": (
            [*bdd, "--out", str(tmp / "afile" / "r.parquet")],
            f"argument --out: cannot write {tmp / 'afile' / 'r.parquet'}: {tmp / 'afile'} is a file, not a folder",
        ),
        "convert bdd without images or size": (
            [*bdd, "--check-images", "none", "--out", str(tmp / "r.parquet")],
            "convert --format bdd --check-images none needs --image-size WxH (BDD frames carry no size)",
        ),
        "convert coco without --images": (
            ["convert", "--format", "coco", "--ann", "x.json", "--out", str(tmp / "r.parquet")],
            "convert --format coco --check-images header needs --images (the image folder; only "
            "--check-images none goes without it)",
        ),
        "convert bdd --check-images decode without --images": (
            [*bdd[:-2], "--check-images", "decode", "--out", str(tmp / "r.parquet")],
            "convert --format bdd --check-images decode needs --images (the image folder; only "
            "--check-images none goes without it)",
        ),
        "convert bdd without --ann": (
            ["convert", "--format", "bdd", "--images", str(tmp), "--out", str(tmp / "r.parquet")],
            "convert --format bdd needs --ann",
        ),
        "convert voc without --root": (
            ["convert", "--format", "voc", "--out", str(tmp / "r.parquet")],
            "convert --format voc needs --root",
        ),
        "labels --records missing": (
            ["labels", "--records", str(tmp / "nope.parquet"), "--out", str(tmp / "l.parquet")],
            f"argument --records: file not found: {tmp / 'nope.parquet'}",
        ),
        "stats without inputs": (["stats"], "stats needs at least one of --records, --labels, --manifest"),
        "stats --out not json": (
            ["stats", "--records", str(rec), "--out", str(tmp / "s.txt")],
            f"argument --out: must end in .json (JSON), got '{tmp / 's.txt'}'",
        ),
    }


CASE_NAMES = [
    "labels --strides 0", "labels --strides -8", "labels --strides 8 8", "labels --pad-to 0",
    "labels --short -5", "labels --long x", "synth --num-images -1", "synth --size 10x10",
    "synth --out a file", "synth into a held split", "subset --max-ratio nan", "subset --max-ratio -0.25",
    "subset --out manifest.txt", "subset --records-out = --records", "convert --out records.csv", "convert --out a directory",
    "convert --out under a file", "convert bdd without images or size", "convert coco without --images",
    "convert bdd --check-images decode without --images", "convert bdd without --ann", "convert voc without --root", "labels --records missing", "stats without inputs", "stats --out not json",
]  # fmt: skip


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_argument_is_one_usage_line(name, raw, records, tmp_path, capsys):
    (tmp_path / "d.parquet").mkdir()
    argv, message = _usage_cases(raw, records, tmp_path)[name]
    assert _usage(capsys, argv).endswith(f"error: {message}")


def test_unwritable_output_folder(records, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes anywhere: a read-only file system stands in
        target, folder = Path("/proc/labels.parquet"), "/proc"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        target, folder = tmp_path / "ro" / "labels.parquet", str(tmp_path / "ro")
    last = _usage(capsys, ["labels", "--records", str(records), "--out", str(target)])
    assert f"argument --out: cannot write {target}: folder {folder} is not writable (" in last


def test_every_option_has_help_and_shown_default(capsys):
    subparsers = next(a for a in _parser()._actions if a.dest == "command").choices
    for cmd, sub in subparsers.items():
        assert all(a.help for a in sub._actions), cmd
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "(default: " in capsys.readouterr().out


def test_data_errors_exit_2_with_the_record(records, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="spt_data"):
        assert main(["stats", "--manifest", str(records)]) == 2
    assert caplog.records[-1].getMessage() == (
        f"{records}: not a subset manifest (spt_data.kind='records', expected 'subset_manifest')"
    )


def test_empty_dataset_is_a_warning(tmp_path, caplog, capsys):
    (tmp_path / "empty.json").write_text("[]")
    out = tmp_path / "r.parquet"
    args = ["convert", "--format", "bdd", "--ann", str(tmp_path / "empty.json"), "--images", str(tmp_path)]
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert main(["--no-progress", *args, "--out", str(out)]) == 0
    assert f"{out} holds no image: the input gave 0 records" in [r.getMessage() for r in caplog.records]


def test_empty_label_folder_names_it(tmp_path, caplog):
    (tmp_path / "emptydir").mkdir()
    args = ["convert", "--format", "bdd", "--ann", str(tmp_path / "emptydir"), "--images", str(tmp_path)]
    with caplog.at_level(logging.ERROR, logger="spt_data"):
        assert main([*args, "--out", str(tmp_path / "r.parquet")]) == 2
    assert caplog.records[-1].getMessage() == f"{tmp_path / 'emptydir'}: no *.json label files in this folder"


def test_bdd_without_images_takes_image_size(raw, tmp_path):
    out = tmp_path / "r.parquet"
    ann = raw / "labels" / "train.json"
    args = ["convert", "--format", "bdd", "--ann", str(ann), "--images", str(tmp_path / "absent")]
    assert (
        main(["--no-progress", *args, "--check-images", "none", "--image-size", "64x48", "--out", str(out)])
        == 0
    )
    assert {(r.width, r.height) for r in read_records(out).records} == {(64, 48)}


def test_bdd_ground_truth_converts_without_the_image_folder(raw, tmp_path, caplog):
    """--check-images none reads no image: no --images, and the records keep relative image paths."""
    out = tmp_path / "gt.parquet"
    args = ["convert", "--format", "bdd", "--ann", str(raw / "labels" / "train.json")]
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert (
            main(
                ["--no-progress", *args, "--check-images", "none", "--image-size", "64x48", "--out", str(out)]
            )
            == 0
        )
    records = read_records(out).records
    assert [r.image_path for r in records] == [f"synth_{i:06d}.jpg" for i in range(3)]
    assert {(r.width, r.height) for r in records} == {(64, 48)} and not caplog.records


def test_skip_counts_images_and_annotations_apart(tmp_path, write_jpeg, write_json, caplog, capsys):
    write_jpeg(tmp_path / "img" / "a.jpg", 64, 48)
    images = [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}, {"id": "2", "file_name": "b.jpg"}]
    anns = [
        {"id": i, "image_id": iid, "category_id": 1, "bbox": [1, 1, 5, 5]}
        for i, iid in enumerate([1, "2", "2"])
    ]
    ann = write_json(
        tmp_path / "i.json", {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}
    )
    args = ["convert", "--format", "coco", "--ann", str(ann), "--images", str(tmp_path / "img")]
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert main(["--no-progress", *args, "--on-error", "skip", "--out", str(tmp_path / "r.parquet")]) == 0
    assert "1 records, 2 annotations, 1 image skipped" in capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records]
    assert (
        f"skipped annotation: {ann}: annotation 1 (id 1): image_id '2' is not in 'images' (its object is left out of every record)"
        in logged
    )


def test_synth_overwrite_replaces_the_whole_split(raw, tmp_path):
    out = tmp_path / "s"
    assert main(["--no-progress", "synth", "--out", str(out), "--num-images", "4", "--size", "64x48"]) == 0
    assert (
        main(
            [
                "--no-progress",
                "synth",
                "--out",
                str(out),
                "--num-images",
                "2",
                "--size",
                "64x48",
                "--seed",
                "1",
                "--overwrite",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "synth_000000.jpg",
        "synth_000001.jpg",
    ]
    assert [f["name"] for f in json.loads((out / "labels" / "train.json").read_text())] == sorted(
        p.name for p in (out / "images" / "train").iterdir()
    )
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_synth_removes_a_killed_runs_temporary_folder_and_names_a_running_ones(tmp_path, caplog, monkeypatch):
    """A killed run (pid no longer running; or an old name without pid) left its folder: removed and
    logged. A folder of a process that still runs (here the parent of this one) is named and left."""
    out = tmp_path / "s"
    dead = out / ".synth-train.999999999.ab12cd34"  # beyond any pid_max: no such process
    old = out / ".synth-train.x1y2z3_a"
    alive = out / f".synth-train.{os.getppid()}.qwerty12"
    other = out / ".synth-val.999999999.ab12cd34"  # another split's: not this run's business
    for folder in (dead, old, alive, other):
        (folder / "images" / "train").mkdir(parents=True)
    made = []
    real_move = synth._move_into_place
    monkeypatch.setattr(synth, "_move_into_place", lambda new, dest: (made.append(new), real_move(new, dest)))
    with caplog.at_level(logging.WARNING, logger="spt_data"):
        assert (
            main(["--no-progress", "synth", "--out", str(out), "--num-images", "1", "--size", "64x48"]) == 0
        )
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        [
            f"{alive}: temporary folder of synth process {os.getppid()}, still running; left in place",
            f"removed {dead}: temporary folder of an interrupted synth run",
            f"removed {old}: temporary folder of an interrupted synth run",
        ]
    )
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [alive.name, other.name]
    assert made[0]["images"].parent.parent.name.startswith(f".synth-train.{os.getpid()}.")  # per-process name
