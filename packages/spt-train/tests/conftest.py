"""A tiny synthetic dataset (spt-data synth -> convert -> labels), made once per session, run
configs for a tiny detector, and Snakemake runs of the top-level workflow (fixtures: tests are
imported with --import-mode=importlib, so they cannot import helpers from each other)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spt_data.cli import main as spt_data

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent  # spt-data, spt-train and snakemake of this environment
SIZE = (160, 96)  # width, height of every synthetic image; frame = the image (multiples of 32)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """A folder with train/val records (8 / 4 images) and their selection labels."""
    root = tmp_path_factory.mktemp("synthetic")
    for split, n, seed in (("train", 8, 0), ("val", 4, 1)):
        raw = root / "raw"
        size = f"{SIZE[0]}x{SIZE[1]}"
        assert (
            spt_data(
                [
                    "synth",
                    "--out",
                    str(raw),
                    "--num-images",
                    str(n),
                    "--seed",
                    str(seed),
                    "--split",
                    split,
                    "--size",
                    size,
                ]
            )
            == 0
        )
        ann, images = raw / "labels" / f"{split}.json", raw / "images" / split
        assert (
            spt_data(
                [
                    "convert",
                    "--format",
                    "bdd",
                    "--ann",
                    str(ann),
                    "--images",
                    str(images),
                    "--out",
                    str(root / f"{split}.parquet"),
                ]
            )
            == 0
        )
        labels = [
            "labels",
            "--records",
            str(root / f"{split}.parquet"),
            "--out",
            str(root / f"{split}_labels.parquet"),
        ]
        assert spt_data([*labels, "--short", str(SIZE[1]), "--long", str(SIZE[0])]) == 0
    return root


def tiny_config(root: Path, out_dir: Path, **train) -> dict:
    return {
        "model": {
            "name": "spt_t12",
            "head": "faster_rcnn",
            "backbone": {"embed_dim": 16, "depths": [1, 1, 2, 2], "heads": [1, 2, 4, 8], "drop_path": 0.1},
            "detector": {
                "fpn_channels": 32,
                "rpn_post_nms_top_n_train": 64,
                "rpn_post_nms_top_n_test": 64,
                "box_batch_size_per_image": 32,
            },
        },
        "data": {
            "train": {"records": str(root / "train.parquet"), "labels": str(root / "train_labels.parquet")},
            "val": {"records": str(root / "val.parquet"), "labels": str(root / "val_labels.parquet")},
            "short": SIZE[1],
            "long": SIZE[0],
        },
        "train": {
            "epochs": 2,
            "batch_size": 2,
            "lr": 1e-3,
            "warmup_steps": 2,
            "clip_grad": 1.0,
            "log_steps": 1,
            **train,
        },
        "out_dir": str(out_dir),
        "device": "cpu",
    }


@pytest.fixture
def write_config(synthetic, tmp_path):
    """(name, **train overrides) -> path of a run config whose out_dir is tmp_path / name."""

    def write(name: str = "run", model: dict | None = None, **train) -> Path:
        config = tiny_config(synthetic, tmp_path / name, **train)
        config["model"].update(model or {})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture(scope="session")
def snakemake():
    """-> run(workdir, configs, *args, **kwargs): ``snakemake -s Snakefile --configfile CONFIGS...
    --replace-workflow-config ARGS`` in ``workdir`` (outputs land there), with this environment's
    CLIs first on PATH; ``configs`` one file or a list; ``kwargs`` go to :func:`subprocess.run`."""

    def run(workdir: Path, configs, *args: str, **kwargs) -> subprocess.CompletedProcess:
        configs = [configs] if isinstance(configs, (str, os.PathLike)) else configs
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", *map(str, configs)]
        cmd += ["--replace-workflow-config", *args]
        return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, **kwargs)

    return run


@pytest.fixture
def paper_config(tmp_path):
    """-> write(edit=None) -> (config, path): paper.yaml, edited in place by ``edit(config)``, with
    its dataset paths replaced by empty files and folders under tmp_path, written to tmp_path."""

    def write(edit=None) -> tuple[dict, Path]:
        config = yaml.safe_load((ROOT / "workflows" / "config" / "paper.yaml").read_text())
        for name, d in config["datasets"].items():
            if "subset_of" in d:  # made by the run from its parent dataset
                continue
            for split in ("train", "val"):
                for key in ("ann", "images", "root"):
                    if key in d[split]:
                        path = tmp_path / "datasets" / name / split / key
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.mkdir() if key != "ann" else path.write_text("{}")
                        d[split][key] = str(path)
        if edit is not None:
            edit(config)
        out = tmp_path / "paper.yaml"
        out.write_text(yaml.safe_dump(config))
        return config, out

    return write
