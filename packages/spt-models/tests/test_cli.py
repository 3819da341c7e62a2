"""`spt-models profile` and `bench`: table on stdout, JSON with the environment, written atomically;
bad arguments are one usage line (exit 2) before any work, and --help does not import torch."""

import json
import subprocess
import sys

import pytest
import torch

from spt_models import count_macs, create_model
from spt_models.cli import main
from spt_models.cliargs import size


def test_profile_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "results" / "profile.json"
    argv = ["profile", "--models", "swin_t", "spt_t12", "--size", "256x192", "--ratio", "1.0", "0.25"]
    assert main([*argv, "--warmup", "0", "--repeats", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "spt_t12" in table and "0.25" in table and "MACs (G)" in table
    doc = json.loads(out.read_text())
    assert {"device", "torch", "threads"} <= set(doc["environment"])
    assert doc["input"] == {"batch": 1, "height": 192, "width": 256, "seed": 0}
    rows = {(r["model"], r["ratio"]): r for r in doc["rows"]}
    assert set(rows) == {("swin_t", None), ("spt_t12", 1.0), ("spt_t12", 0.25)}
    assert rows[("swin_t", None)]["macs"] == count_macs(create_model("swin_t"), torch.randn(1, 3, 192, 256))
    assert rows[("spt_t12", 0.25)]["macs"] < rows[("spt_t12", 1.0)]["macs"]
    assert rows[("swin_t", None)]["shapes"]["stage4"] == [1, 6, 8, 768]
    assert all(r["fps"] > 0 for r in rows.values())
    assert [p.name for p in out.parent.iterdir()] == ["profile.json"]  # no temporary file left


def test_profile_head_measures_the_whole_detector(tmp_path, capsys):
    out = tmp_path / "det.json"
    argv = ["profile", "--models", "swin_t", "--head", "faster_rcnn", "--size", "256x192", "--repeats", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "faster_rcnn+swin_t" and "faster_rcnn+swin_t" in capsys.readouterr().out
    backbone = count_macs(create_model("swin_t"), torch.randn(1, 3, 192, 256))
    assert row["macs"] > backbone and row["params"] > row["backbone_params"] == 27_517_818


def test_size_is_width_by_height_in_that_order():
    assert size("1280x800") == (1280, 800)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        size("1280")


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("usage: spt-models")
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["profile", "--repeats", "-3"], "argument --repeats: must be an integer >= 0, got '-3'"),
        (["profile", "--batch", "-1"], "argument --batch: must be a positive integer, got '-1'"),
        (["profile", "--batch", "two"], "argument --batch: must be an integer, got 'two'"),
        (["profile", "--ratio", "1.5"], "argument --ratio: must be a number in [0, 1], got '1.5'"),
        (
            ["profile", "--device", "gpu"],
            "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        ),
        (
            ["profile", "--size", "1280"],
            "argument --size: must be WIDTHxHEIGHT, e.g. 1280x800, got '1280'",
        ),
        (
            ["profile", "--size", "1280x16"],
            "argument --size: must be WIDTHxHEIGHT with both sides >= 32, got '1280x16'",
        ),
        (["bench", "--ratios", "0.5", "most"], "argument --ratios: must be a number in [0, 1], got 'most'"),
        (["bench", "--repeats", "0"], "argument --repeats: must be a positive integer, got '0'"),
        (["bench", "--mlp", "some"], "argument --mlp: invalid choice: 'some' (choose from "),
    ],
)
def test_bad_arguments_are_one_usage_line(args, message, capsys, tmp_path):
    last = usage_error([*args, "--out", str(tmp_path / "x.json")], capsys)
    assert last.startswith(f"spt-models {args[0]}: error: {message}")


def test_unknown_model_is_a_usage_error(capsys, tmp_path):
    last = usage_error(["profile", "--models", "swin_x", "--out", str(tmp_path / "p.json")], capsys)
    assert last.startswith("spt-models: error: unknown model(s) ['swin_x']; known models: dat_s, dat_t")


def test_unwritable_or_missing_output_is_refused_before_any_work(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    last = usage_error(["profile", "--models", "swin_x", "--out", str(blocker / "p.json")], capsys)
    assert (
        last
        == f"spt-models profile: error: argument --out: cannot write {blocker / 'p.json'}: {blocker} is a file, not a folder"
    )
    last = usage_error(["bench", "--out", str(tmp_path)], capsys)
    assert last == f"spt-models bench: error: argument --out: {tmp_path} is a directory, expected a file name"
    last = usage_error(["bench"], capsys)
    assert last == "spt-models bench: error: the following arguments are required: --out"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_a_usage_error(capsys, tmp_path):
    last = usage_error(["profile", "--device", "cuda", "--out", str(tmp_path / "p.json")], capsys)
    assert last.startswith("spt-models: error: device 'cuda': this machine has no CUDA device (torch ")


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from spt_models.cli import main\n"
        "try:\n    main(['bench', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--macs-size MACS_SIZE input WIDTHxHEIGHT of the MAC count (default: 1280x800)" in text


def test_bench_prints_ratio_tables_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--baselines", "swin_t", "--spt", "spt_t12", "--ratios", "0.25", "spread"]
    argv += ["--mlp", "selected", "--size", "64x64", "--no-macs", "--batches", "2", "--warmup", "0"]
    assert main([*argv, "--repeats", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "spt_t12 mlp=selected r=spread" in table and "FPS b2/S" in table and "step/S" in table
    assert "X/S, X/D: the row's value / Swin-T's" in table  # the legend explains the columns
    doc = json.loads(out.read_text())
    assert {"device", "torch", "threads", "argv"} <= set(doc["environment"])
    assert doc["input"]["dtype"] == "float32" and doc["input"]["height"] == 64
    rows = {r["label"]: r for r in doc["rows"]}
    assert set(rows) == {"swin_t", "spt_t12 mlp=selected r=0.25", "spt_t12 mlp=selected r=spread"}
    assert rows["swin_t"]["fps_b2/swin_t"] == 1.0 and "fps_b2/dynamicswin_t" not in rows["swin_t"]
    sparse = rows["spt_t12 mlp=selected r=0.25"]
    assert sparse["memory_mib"] < rows["swin_t"]["memory_mib"] and sparse["step_ms"] > 0
