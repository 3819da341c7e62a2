"""Seeds: ``spt-train row --metrics A B C`` (``--also NAME=A,B,C``) averages one run's seeds into a
row (mean, sample std, n); ``spt-train table`` then says n per row and each number's std."""

import copy
import csv
import json
import statistics

import numpy as np
import pytest

from spt_train.cli import main

COLUMNS = ["AP=bbox.AP", "AP50=bbox.AP50", "APs=bbox.APs", "ratio=selection.stride16.select_ratio"]
COLUMNS += ["images=num_images", "FPS=bench.backbone_fps", "bench_size=bench.size"]
PROVENANCE = "profile,dataset,input_size,model,backbone_overrides,schedule,device,commit"


def metrics(seed: int, ap: float, ap50: float, ratio: float, preds: int, aps: float | None = 0.1) -> dict:
    """An eval metrics file of seed ``seed`` of one run (the keys `spt-train eval` writes)."""
    run = f"runs/spt_t_s{seed}"
    return {
        "metric": "coco",
        "gt": "val.parquet",
        "predictions": f"{run}/metrics_predictions.json",
        "num_images": 8,
        "num_predictions": preds,
        "notes": ["macs.backbone_g: mean backbone MACs over the first 2 of 8 val images"],
        "bbox": {"AP": ap, "AP50": ap50, "APs": aps},
        "selection": {"stride16": {"select_ratio": ratio, "retention": 1.0}},
        "macs": {"backbone_g": 2.5, "num_images": 2, "per_image_g": [2.0, 3.0 + seed]},
        "gate_auroc_exact": True,
        "checkpoint": f"{run}/last.pt",
        "evaluated_at": {"model.backbone.threshold": 0.2},
        "config": {
            "data": {"train": {"records": "train.parquet"}, "short": 96, "long": 160},
            "out_dir": run,
            "model": {"name": "spt_t", "head": "faster_rcnn", "backbone": {"depths": [1, 1, 2, 2]}},
            "train": {"epochs": 1, "batch_size": 2, "lr": 0.001, "max_steps": 12, "seed": seed},
            "device": "cpu",
        },
        "commit": "abc1234",
    }


SEEDS = [  # AP: inexact in binary; AP50, ratio: mean and std exact; num_predictions: integers
    metrics(0, 0.1, 0.25, 0.125, 10),
    metrics(1, 0.2, 0.5, 0.375, 20),
    metrics(2, 0.4, 0.75, 0.625, 30),
]


def write(tmp_path, docs: list[dict], stem: str = "m") -> list[str]:
    paths = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"{stem}{i}.json"
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    return paths


def bench(tmp_path) -> str:
    path = tmp_path / "bench.json"
    doc = {"environment": {"device": "cpu", "commit": "abc1234"}, "size": "1280x800", "repeats": 1}
    path.write_text(
        json.dumps({**doc, "rows": [{"model": m, "backbone_fps": 2.0} for m in ("spt_t", "swin_s")]})
    )
    return str(path)


def row(tmp_path, *args: str, out: str = "row.json") -> dict:
    assert main(["row", *args, "--out", str(tmp_path / out)]) == 0
    return json.loads((tmp_path / out).read_text())


def table(tmp_path, rows: list[str], columns: list[str], *args: str) -> list[str]:
    out = tmp_path / "table.csv"
    assert main(["table", "--metrics", *rows, "--columns", *columns, *args, "--out", str(out)]) == 0
    return out.read_text().splitlines()


def test_three_seeds_give_the_mean_the_sample_std_and_n_in_the_row_and_the_table(tmp_path):
    files = write(tmp_path, SEEDS)
    got = row(tmp_path, "--metrics", *files, "--bench", bench(tmp_path), "--columns", *COLUMNS)
    ap = [0.1, 0.2, 0.4]
    assert got["bbox"] == {"AP": statistics.fmean(ap), "AP50": 0.5, "APs": 0.1}
    assert got["selection"]["stride16"] == {"select_ratio": 0.375, "retention": 1.0}
    assert (got["num_images"], got["num_predictions"]) == (8, 20.0)  # equal in every seed: kept as is
    assert got["macs"]["per_image_g"] == [2.0, 4.0]
    seeds = got["seeds"]
    assert (seeds["n"], seeds["seed"], seeds["metrics"]) == (3, [0, 1, 2], files)
    std = seeds["std"]
    assert std["bbox"]["AP"] == statistics.stdev(ap)  # correctly rounded; numpy's within an ulp
    assert std["bbox"]["AP"] == pytest.approx(np.std(ap, ddof=1), rel=1e-15, abs=0)
    assert std["bbox"] == {"AP": statistics.stdev(ap), "AP50": 0.25, "APs": 0.0}
    assert std["selection"]["stride16"] == {"select_ratio": 0.25, "retention": 0.0}
    assert (std["num_predictions"], std["macs"]["per_image_g"]) == (10.0, [0.0, 1.0])
    assert std["macs"] == {"backbone_g": 0.0, "per_image_g": [0.0, 1.0]}  # num_images: a setting
    assert {"config", "commit", "bench", "num_images", "evaluated_at"}.isdisjoint(std)
    # per-seed provenance: one value per file; shared provenance kept once
    assert got["checkpoint"] == [f"runs/spt_t_s{s}/last.pt" for s in range(3)]
    assert got["config"]["out_dir"] == [f"runs/spt_t_s{s}" for s in range(3)]
    assert got["config"]["train"] == {
        "epochs": 1,
        "batch_size": 2,
        "lr": 0.001,
        "max_steps": 12,
        "seed": [0, 1, 2],
    }
    assert (got["commit"], got["gt"], got["evaluated_at"]) == (
        "abc1234",
        "val.parquet",
        SEEDS[0]["evaluated_at"],
    )
    assert got["bench"]["backbone_fps"] == 2.0

    one = row(
        tmp_path, "--metrics", files[0], "--bench", bench(tmp_path), "--columns", *COLUMNS, out="one.json"
    )
    untrained = row(
        tmp_path, "--bench", bench(tmp_path), "--model", "swin_s", "--columns", *COLUMNS, out="b.json"
    )
    rows = [str(tmp_path / f) for f in ("row.json", "one.json", "b.json")]
    lines = table(tmp_path, rows, COLUMNS, "--names", "S3", "S1", "B")
    assert lines[0] == (
        "name,n,AP,AP_std,AP50,AP50_std,APs,APs_std,ratio,ratio_std,images,FPS,bench_size," + PROVENANCE
    )
    cells = list(csv.DictReader(lines))
    s3, s1, b = cells
    assert (s3["n"], s1["n"], b["n"]) == ("3", "1", "")
    assert float(s3["AP"]) == got["bbox"]["AP"] and float(s3["AP_std"]) == statistics.stdev(ap)
    assert (s3["AP50"], s3["AP50_std"], s3["ratio"], s3["ratio_std"]) == ("0.5", "0.25", "0.375", "0.25")
    assert (s3["images"], s3["FPS"], s3["bench_size"]) == ("8", "2.0", "1280x800")
    assert (s1["AP50"], s1["AP50_std"], s1["ratio_std"]) == ("0.25", "", "")  # one seed: no std
    assert (b["AP50"], b["AP50_std"], b["FPS"]) == ("", "", "2.0")
    assert s3["commit"] == s1["commit"] == "abc1234" and s3["model"] == "spt_t faster_rcnn"
    assert s3["schedule"] == "1 epochs x batch 2, max 12 steps"
    assert one["bbox"]["AP50"] == 0.25 and untrained["bench"]["backbone_fps"] == 2.0


def test_a_number_null_in_some_seed_is_null_in_the_row(tmp_path):
    docs = [metrics(0, 0.1, 0.25, 0.125, 10), metrics(1, 0.2, 0.5, 0.375, 20, aps=None)]
    got = row(tmp_path, "--metrics", *write(tmp_path, docs))
    assert (got["bbox"]["APs"], got["seeds"]["std"]["bbox"]["APs"], got["seeds"]["n"]) == (None, None, 2)


def test_one_metrics_file_gives_the_row_and_the_table_as_before(tmp_path):
    doc = metrics(0, 0.1, 0.25, 0.125, 10)
    (file,) = write(tmp_path, [doc])
    got = row(tmp_path, "--metrics", file, "--bench", bench(tmp_path), "--columns", *COLUMNS, "bbox.AP75")
    expected = copy.deepcopy(doc)
    expected["bench"] = {"model": "spt_t", "backbone_fps": 2.0, "size": "1280x800", "repeats": 1}
    expected["bench"] |= {"device": "cpu", "commit": "abc1234"}
    expected["bbox"]["AP75"] = None  # a column the run lacks: null, as before
    assert got == expected and "seeds" not in got
    lines = table(tmp_path, [str(tmp_path / "row.json")], COLUMNS)
    head = "name,AP,AP50,APs,ratio,images,FPS,bench_size," + PROVENANCE
    model = 'spt_t faster_rcnn,"{""depths"": [1, 1, 2, 2]}"'
    rest = f'demo,train.parquet,"short 96, long 160",{model},"1 epochs x batch 2, max 12 steps",cpu,abc1234'
    assert lines == [head, f"{tmp_path.name},0.1,0.25,0.1,0.125,8,2.0,1280x800,{rest}"]


def test_seeds_of_an_also_run_get_their_own_n_and_std(tmp_path, capsys):
    with_loss = write(tmp_path, [metrics(0, 0.1, 0.25, 0.125, 10)], stem="w")
    noloss = write(tmp_path, SEEDS, stem="wo")
    columns = ["AP50=bbox.AP50", "wo=noloss.selection.stride16.select_ratio"]
    got = row(
        tmp_path, "--metrics", *with_loss, "--also", "noloss=" + ",".join(noloss), "--columns", *columns
    )
    assert "seeds" not in got and got["noloss"]["seeds"]["n"] == 3
    assert got["noloss"]["selection"]["stride16"]["select_ratio"] == 0.375
    lines = table(tmp_path, [str(tmp_path / "row.json")], columns)
    assert lines[0] == "name,n,n_noloss,AP50,wo,wo_std," + PROVENANCE
    (cells,) = csv.DictReader(lines)
    got = [cells[k] for k in ("n", "n_noloss", "AP50", "wo", "wo_std")]
    assert got == ["1", "3", "0.25", "0.375", "0.25"]  # the row's run: 1 seed, noloss: 3
    capsys.readouterr()
    seeds = ["--also", f"seeds={with_loss[0]}"]  # the name of the seed block: not an --also name
    assert main(["row", "--metrics", *noloss, *seeds, "--out", str(tmp_path / "x.json")]) == 2
    assert f"--also seeds={with_loss[0]}: 'seeds' is already a key of the row" in capsys.readouterr().err


def test_seeds_that_disagree_on_provenance_stop_naming_the_files_and_the_key(tmp_path, capsys):
    other = copy.deepcopy(SEEDS)
    other[2]["commit"] = "def5678"
    files = write(tmp_path, other)
    a, c = files[0], files[2]
    assert main(["row", "--metrics", *files, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"spt-train row: error: --metrics: {a} and {c} disagree on 'commit' ('abc1234' vs 'def5678'); "
        "the seeds of one row differ only in their numbers\n"
    )
    other = copy.deepcopy(SEEDS)
    other[1]["evaluated_at"]["model.backbone.threshold"] = 0.5
    files = write(tmp_path, other, stem="e")
    a, b = files[:2]
    assert main(["row", "--metrics", *files, "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"spt-train row: error: --metrics: {a} and {b} disagree on 'evaluated_at.model.backbone.threshold' "
        "(0.2 vs 0.5); the seeds of one row differ only in their numbers\n"
    )
    other = copy.deepcopy(SEEDS)
    del other[1]["bbox"]["APs"]
    a, b, c = write(tmp_path, other, stem="k")
    assert main(["row", "--metrics", c, "--also", f"noloss={a},{b}", "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"spt-train row: error: --also noloss: {a} and {b} disagree on 'bbox.APs': in {a}, not in {b}\n"
    )
    assert not (tmp_path / "r.json").exists()


def test_the_same_seed_twice_or_another_config_stops_naming_the_key(tmp_path, capsys):
    a, b = write(tmp_path, [SEEDS[0], SEEDS[0]])
    assert main(["row", "--metrics", a, b, "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"spt-train row: error: --metrics: {a} and {b} have the same seed (config.train.seed = 0); "
        "give each seed's metrics once\n"
    )
    assert main(["row", "--metrics", a, a, "--out", str(tmp_path / "r.json")]) == 2
    assert f"--metrics: {a} and {a} have the same seed" in capsys.readouterr().err
    other = copy.deepcopy(SEEDS)
    other[2]["config"]["train"]["lr"] = 0.002
    files = write(tmp_path, other, stem="lr")
    a, c = files[0], files[2]
    assert main(["row", "--metrics", *files, "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"spt-train row: error: --metrics: {a} and {c} are not seeds of one run: config.train.lr differs "
        "(0.001 vs 0.002)\n"
    )
    other = copy.deepcopy(SEEDS[:2])
    del other[1]["config"]["train"]["seed"]
    a, b = write(tmp_path, other, stem="ns")
    assert main(["row", "--metrics", a, b, "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == (
        f"spt-train row: error: --metrics: {b} has no config.train.seed "
        "(seeds are averaged over eval metrics of a run config)\n"
    )


def test_the_eval_metrics_of_two_trained_seeds_make_a_row(write_config, tmp_path):
    """Real `spt-train eval` output (every key it writes, e.g. COCOeval's printed summary) of two
    seeds of one tiny run averages into a row; its seeds' numbers differ."""
    from spt_train.config import load_config
    from spt_train.engine import fit

    files = []
    for seed in (0, 1):
        config = write_config(f"seed{seed}", max_steps=1, seed=seed)
        fit(load_config(config))
        files.append(str(tmp_path / f"seed{seed}" / "metrics.json"))
        assert main(["eval", str(config), "--macs-images", "1", "--out", files[-1]]) == 0
    docs = [json.loads(open(f).read()) for f in files]
    got = row(tmp_path, "--metrics", *files)
    assert got["seeds"]["n"] == 2 and got["seeds"]["seed"] == [0, 1]
    assert got["bbox"]["summary"] == [d["bbox"]["summary"] for d in docs]
    gate = [d["gate_auroc"]["s0"] for d in docs]
    assert gate[0] != gate[1] and got["gate_auroc"]["s0"] == statistics.fmean(gate)
    assert got["seeds"]["std"]["gate_auroc"]["s0"] == statistics.stdev(gate)
    lines = table(tmp_path, [str(tmp_path / "row.json")], ["gate=gate_auroc.s0"])
    assert lines[0] == "name,n,gate,gate_std," + PROVENANCE and lines[1].split(",")[1] == "2"
