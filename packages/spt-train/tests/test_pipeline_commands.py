"""``spt-train config | row | figure``, the commands the pipeline's rules call."""

import json

import pytest
import yaml

from spt_train.cli import main


def test_config_composes_checks_and_writes_a_run_config(synthetic, tmp_path, capsys):
    out = tmp_path / "run.yaml"
    sets = [f"--set=data.train.records={synthetic / 'train.parquet'}", "--set=out_dir=runs/x"]
    sets += ["--set=model.backbone.depths=[1, 1, 2, 2]", "--set=train.max_steps=3"]
    assert main(["config", *sets, "--out", str(out)]) == 0
    config = yaml.safe_load(out.read_text())
    assert config["model"]["backbone"] == {"depths": [1, 1, 2, 2]} and config["train"]["max_steps"] == 3
    assert main(["config", *sets, "--set=train.lrr=1", "--out", str(tmp_path / "bad.yaml")]) == 2
    assert "train.lrr: unknown key (did you mean 'lr'?)" in capsys.readouterr().err
    assert not (tmp_path / "bad.yaml").exists()


def test_row_joins_metrics_and_bench_and_leaves_missing_cells_null(tmp_path):
    bench = tmp_path / "bench.json"
    doc = {"environment": {"device": "cpu"}, "size": "1280x800", "repeats": 0}
    bench.write_text(json.dumps({**doc, "rows": [{"model": "swin_s", "params_m": 69.0}]}))
    out = tmp_path / "row.json"
    assert (
        main(
            ["row", "--bench", str(bench), "--model", "swin_s", "--columns", "AP=bbox.AP", "--out", str(out)]
        )
        == 0
    )
    row = json.loads(out.read_text())
    assert row["bbox"] == {"AP": None} and row["bench"]["params_m"] == 69.0 and row["size"] == "1280x800"
    assert main(["row", "--bench", str(bench), "--model", "spt_b", "--out", str(out)]) == 2


def test_fig6_writes_a_png(tmp_path):
    dense, sparse = tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.json"
    for path, metrics in (
        (dense, {"bbox": {"AP": 0.2}}),
        (sparse, {"bbox": {"AP": 0.25}, "selection": {"stride16": {"select_ratio": 0.3}}}),
    ):
        path.parent.mkdir()
        path.write_text(json.dumps(metrics))
    out = tmp_path / "fig6.png"
    assert main(["figure", "fig6", "--metrics", str(dense), str(sparse), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_row_nests_another_runs_metrics_under_also(tmp_path, capsys):
    with_loss, without = tmp_path / "w.json", tmp_path / "wo.json"
    with_loss.write_text(json.dumps({"bbox": {"AP": 0.2}, "selection": {"stride16": {"select_ratio": 0.3}}}))
    without.write_text(json.dumps({"bbox": {"AP": 0.1}, "selection": {"stride16": {"select_ratio": 0.8}}}))
    out = tmp_path / "row.json"
    columns = ["AP=bbox.AP", "w=selection.stride16.select_ratio", "wo=noloss.selection.stride16.select_ratio"]
    args = ["row", "--metrics", str(with_loss), "--also", f"noloss={without}", "--columns", *columns]
    assert main([*args, "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert (row["bbox"]["AP"], row["noloss"]["selection"]["stride16"]["select_ratio"]) == (0.2, 0.8)
    assert main(["row", "--metrics", str(with_loss), "--also", f"bbox={without}", "--out", str(out)]) == 2
    assert f"--also bbox={without}: 'bbox' is already a key of the row" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["row", "--metrics", str(with_loss), "--also", str(without), "--out", str(out)])
    assert exit.value.code == 2
    assert f"expected NAME=METRICS with NAME a word, got '{without}'" in capsys.readouterr().err


def test_config_stops_at_a_backbone_override_the_model_refuses(synthetic, tmp_path, capsys):
    out = tmp_path / "run.yaml"
    sets = [f"--set=data.train.records={synthetic / 'train.parquet'}", "--set=out_dir=runs/x"]
    assert main(["config", *sets, "--set=model.backbone.spa_stages=[2]", "--out", str(out)]) == 2
    message = (
        "spa_stages must be a suffix of the stages 1-4: (4,), (3, 4), (2, 3, 4) or (1, 2, 3, 4), got [2]"
    )
    assert f"{out}: model.backbone: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_fig4_writes_a_png_and_names_a_missing_key(tmp_path, capsys):
    dense, gt = tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.json"
    for path, metrics in (
        (dense, {"cls": {"mAP": 0.4}, "macs": {"backbone_g": 0.2}}),
        (gt, {"cls": {"mAP": 0.45}, "macs": {"backbone_g": 0.1}, "config": {"model": {"gt_select": True}}}),
    ):
        path.parent.mkdir()
        path.write_text(json.dumps(metrics))
    out = tmp_path / "fig4.png"
    assert main(["figure", "fig4", "--metrics", str(dense), str(gt), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    gt.write_text(json.dumps({"cls": {"mAP": 0.45}}))
    assert main(["figure", "fig4", "--metrics", str(dense), str(gt), "--out", str(tmp_path / "x.png")]) == 2
    assert str(gt) in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_the_commit_is_the_codes_not_the_working_directorys(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    from spt_train.table import git_commit

    here = Path(__file__).parent
    head = subprocess.run(
        ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    monkeypatch.chdir(tmp_path)  # a pipeline's working directory outside the checkout
    assert git_commit().removesuffix("+dirty") == head.stdout.strip()
