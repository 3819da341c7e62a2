"""``spt-train eval | bench | table`` as a user calls them: exit codes, messages, files written."""

import csv
import json
from pathlib import Path

import pytest

from spt_data.cli import main as spt_data
from spt_train.cli import main
from spt_train.config import load_config
from spt_train.engine import fit

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PUBLISHED_BBOX = [
    0.5045806987249628, 0.6969727247299577, 0.5729816669904824, 0.5856257209410443,
    0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
    0.595352982877607, 0.6398109626113442, 0.5664205978994309, 0.5642905982905982,
]  # fmt: skip


def test_eval_of_a_predictions_file_through_the_cli_gives_the_published_numbers(tmp_path, capsys):
    d = SHARED_DATA / "coco_eval_val2014_100"
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d}")
    gt = tmp_path / "gt.parquet"
    ann = d / "annotations" / "instances_val2014_100.json"
    assert (
        spt_data(
            [
                "convert",
                "--format",
                "coco",
                "--ann",
                str(ann),
                "--images",
                str(d),
                "--check-images",
                "none",
                "--out",
                str(gt),
            ]
        )
        == 0
    )
    out = tmp_path / "metrics.json"
    preds = d / "results" / "instances_val2014_fakebbox100_results.json"
    assert (
        main(["eval", "--gt", str(gt), "--predictions", str(preds), "--metric", "coco", "--out", str(out)])
        == 0
    )
    metrics = json.loads(out.read_text())
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    assert [metrics["bbox"][k] for k in names] == pytest.approx(PUBLISHED_BBOX, abs=1e-12)
    assert (
        "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"
        in capsys.readouterr().out
    )


def test_eval_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--out", str(tmp_path / "m.json")])
    assert e.value.code == 2
    assert "eval takes a run config (a checkpoint) or --gt and --predictions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--gt", "nope.parquet", "--predictions", "x.json", "--out", str(tmp_path / "m.json")])
    assert "argument --gt: file not found: nope.parquet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--models", "swin_t", "--out", str(tmp_path)])
    assert f"spt-train bench: error: argument --out: {tmp_path} is a directory, expected a file name" in (
        capsys.readouterr().err
    )


def test_eval_of_a_checkpoint_then_table(write_config, tmp_path, capsys):
    config_path = write_config("run", max_steps=2)
    fit(load_config(config_path))
    out = tmp_path / "run" / "metrics.json"
    assert main(["eval", str(config_path), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert {"bbox", "selection", "config", "checkpoint"} <= set(metrics)
    assert set(metrics["selection"]) == {"stride16", "stride32"}
    assert 0.0 <= metrics["selection"]["stride16"]["retention"] <= 1.0
    assert (tmp_path / "run" / "metrics_predictions.json").exists()
    table = tmp_path / "table2.csv"
    args = ["table", "--metrics", str(out), "--columns", "AP50=bbox.AP50", "selection.stride16.select_ratio"]
    assert main([*args, "--names", "SPT-T", "--out", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert (
        rows[0]["name"] == "SPT-T"
        and float(rows[0]["select_ratio"]) == metrics["selection"]["stride16"]["select_ratio"]
    )
    assert rows[0]["profile"] == "demo" and rows[0]["model"] == "spt_t12 faster_rcnn" and rows[0]["commit"]
    capsys.readouterr()
    assert main(["table", "--metrics", str(out), "--columns", "bbox.AP51", "--out", str(table)]) == 2
    assert f"{out}: no 'bbox.AP51' (at 'AP51')" in capsys.readouterr().err
    other = ["eval", str(config_path), "--set", "model.name=swin_t", "--out", str(tmp_path / "m.json")]
    assert main(other) == 2
    last = tmp_path / "run" / "last.pt"
    assert (
        f"{last}: checkpoint of another model: model.name differs from the config" in capsys.readouterr().err
    )


def test_bench_writes_params_macs_and_fps(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--models",
                "swin_t",
                "--head",
                "faster_rcnn",
                "--size",
                "128x96",
                "--repeats",
                "1",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "swin_t" and row["macs_g"] > row["backbone_macs_g"] > 0 and row["backbone_fps"] > 0
    assert "overall MACs (G)" in capsys.readouterr().out


def test_help_is_fast_and_no_module_imports_the_cli():
    """``--help`` of every command does not import torch, and the commands' modules
    take their argument types from spt_train.cliargs: nothing but ``python -m spt_train`` imports
    spt_train.cli, and nothing imports another package's CLI."""
    import ast
    import subprocess
    import sys

    import spt_train

    code = (
        "import sys\nfrom spt_train.cli import build_parser, main\n"
        "commands = build_parser()._subparsers._group_actions[0].choices\n"
        "for argv in [['--help']] + [[c, '--help'] for c in commands]:\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "input WIDTHxHEIGHT (default: 1280x800)" in " ".join(result.stdout.split())
    for path in Path(spt_train.__file__).parent.rglob("*.py"):  # __main__: the entry point
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}", *(a.name for a in node.names)]
                assert not {".cli", "spt_train.cli", "spt_models.cli", "spt_data.cli"} & set(names), path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "gpu"], "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        (["--size", "1280"], "argument --size: must be WIDTHxHEIGHT, e.g. 1280x800, got '1280'"),
        (["--size", "1280x16"], "argument --size: must be WIDTHxHEIGHT with both sides >= 32, got '1280x16'"),
        (["--repeats", "-1"], "argument --repeats: must be an integer >= 0, got '-1'"),
        (["--head", "retinanet"], "argument --head: invalid choice: 'retinanet' (choose from "),
    ],
)
def test_bench_bad_arguments_are_one_usage_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--models", "swin_t", *args, "--out", str(tmp_path / "b.json")])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"spt-train bench: error: {message}")


def test_bench_on_a_device_this_machine_lacks_is_a_usage_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--models", "swin_t", "--device", "cuda:0", "--out", str(tmp_path / "b.json")])
    assert e.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("spt-train: error: device 'cuda:0': this machine has no CUDA device (torch ")
