"""`spt-models profile`: table on stdout, JSON with the environment, written atomically."""

import json

import pytest
import torch

from spt_models import count_macs, create_model
from spt_models.cli import main, parse_size


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


def test_parse_size_is_width_by_height():
    assert parse_size("1280x800") == (800, 1280)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        parse_size("1280")


def test_unknown_model_is_an_error():
    with pytest.raises(SystemExit, match="unknown model"):
        main(["profile", "--models", "swin_x", "--repeats", "0"])
