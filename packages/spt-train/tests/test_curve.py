"""``spt-train curve``: a tiny SPT evaluated at 3 thresholds (and a tiny Swin as the reference) ->
the selection operating curve CSV (exact header, rows sorted by threshold, ratio falling with it)
and its PNG; detector evals measure the backbone MACs per image (mean, p10, p90)."""

import csv
import json

import numpy as np
import pytest

from spt_train.cli import main
from spt_train.config import load_config
from spt_train.engine import fit

HEADER = [
    "name",
    "threshold",
    "select_ratio_s16",
    "select_ratio_s32",
    "retention_s16",
    "retention_s32",
    "gate_auroc_s16",
    "gate_auroc_s32",
    "AP",
    "AP50",
    "backbone_gmacs",
    "backbone_gmacs_p10",
    "backbone_gmacs_p90",
    "profile",
    "dataset",
    "input_size",
    "model",
    "backbone_overrides",
    "schedule",
    "device",
    "commit",
]


@pytest.fixture
def evals(write_config, tmp_path):
    """Eval metrics of a tiny SPT at thresholds 0.9, 0.01 (its trained setting) and 0.3, and of a
    tiny Swin: (the SPT's files in that order, the Swin's file)."""
    files = []
    spt = write_config("spt", epochs=1)
    checkpoint = fit(load_config(spt))
    for threshold in (0.9, 0.01, 0.3):
        out = tmp_path / "curve" / f"{threshold}.json"
        args = ["eval", str(spt), "--checkpoint", str(checkpoint), "--macs-images", "3", "--out", str(out)]
        if threshold != 0.01:
            args += ["--set", f"model.backbone.threshold={threshold}"]
        assert main(args) == 0
        files.append(out)
    swin = write_config("swin", model={"name": "swin_t"}, epochs=1)
    reference = tmp_path / "swin.json"
    assert (
        main(["eval", str(swin), "--checkpoint", str(fit(load_config(swin))), "--out", str(reference)]) == 0
    )
    return files, reference


def test_detector_eval_measures_backbone_macs_per_image(evals):
    files, reference = evals
    for path, n in ((files[0], 3), (reference, 4)):  # --macs-images 3; the default 16 > the 4 val images
        macs = json.loads(path.read_text())["macs"]
        assert macs["num_images"] == len(macs["per_image_g"]) == n and macs["of_images"] == 4
        assert macs["backbone_g"] == pytest.approx(np.mean(macs["per_image_g"]))
        assert macs["backbone_p10_g"] == pytest.approx(np.percentile(macs["per_image_g"], 10))
        assert macs["backbone_p90_g"] == pytest.approx(np.percentile(macs["per_image_g"], 90))
        assert 0 < macs["backbone_p10_g"] <= macs["backbone_g"] <= macs["backbone_p90_g"]
    spt = [json.loads(p.read_text())["macs"]["backbone_g"] for p in files]  # 0.9, 0.01, 0.3
    assert spt[0] < spt[1]  # fewer tokens selected, fewer MACs


def test_curve_writes_the_csv_sorted_by_threshold_and_the_figure(evals, tmp_path, capsys):
    files, reference = evals
    out, png = tmp_path / "results" / "selection_curve.csv", tmp_path / "results" / "fig_selection.png"
    args = ["curve", "--metrics", *map(str, files), "--reference", str(reference)]
    assert main([*args, "--out", str(out), "--figure", str(png)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    rows = list(csv.reader(out.open()))
    assert rows[0] == HEADER
    spt, ref = [dict(zip(HEADER, r)) for r in rows[1:4]], dict(zip(HEADER, rows[4]))
    assert len(rows) == 5 and [r["threshold"] for r in spt] == ["0.01", "0.3", "0.9"]
    assert {r["name"] for r in spt} == {"spt_t12"} and ref["name"] == "swin_t" and ref["threshold"] == ""
    ratios = [float(r["select_ratio_s16"]) for r in spt]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > ratios[-1]
    for r in spt:
        assert 0 < float(r["gate_auroc_s16"]) < 1 and 0 <= float(r["retention_s32"]) <= 1
        assert float(r["backbone_gmacs_p10"]) <= float(r["backbone_gmacs"]) <= float(r["backbone_gmacs_p90"])
    assert ref["select_ratio_s16"] == ref["gate_auroc_s16"] == "" and float(ref["backbone_gmacs"]) > 0
    assert ref["AP50"] != "" and ref["commit"] and ref["profile"] == "demo"
    assert json.loads(spt[1]["backbone_overrides"])["threshold"] == 0.3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == sorted([out.name, png.name])  # no temp files


def test_curve_refuses_evals_of_other_checkpoints_or_without_a_threshold(evals, tmp_path, capsys):
    files, reference = evals
    out = str(tmp_path / "c.csv")
    assert main(["curve", "--metrics", str(files[0]), str(reference), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spt-train curve: error: {reference}: no selection threshold (model 'swin_t' ")
    other = json.loads(files[2].read_text())
    other["checkpoint"] = "runs/other/last.pt"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["curve", "--metrics", str(files[0]), str(tmp_path / "other.json"), "--out", out]) == 2
    assert "checkpoint runs/other/last.pt is not" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()
