"""The Snakemake pipeline (top-level ``Snakefile``, ``workflows/``): every target of the demo and
paper profiles plans, a bad config stops before any job, the ``ci`` profile runs for real to a
table and a figure, a finished pipeline reruns nothing, and a killed training resumes."""

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
SNAKEFILE = ROOT / "Snakefile"
CONFIGS = ROOT / "workflows" / "config"
BIN = Path(sys.executable).parent  # spt-data, spt-train and snakemake of this environment

pytestmark = pytest.mark.skipif(
    shutil.which("snakemake", path=str(BIN)) is None, reason="snakemake not installed"
)


@pytest.mark.parametrize("profile", ["demo", "paper", "ci"])
def test_every_target_plans(profile, tmp_path, snakemake, paper_config):
    config = paper_config()[1] if profile == "paper" else CONFIGS / f"{profile}.yaml"
    targets = yaml.safe_load(config.read_text())
    expected = [f"results/{t}.csv" for t in targets["tables"]] + [
        f"results/{f}.png" for f in targets["figures"]
    ]
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    result = snakemake(tmp_path, config, "-n", "--summary")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert set(expected) <= planned, set(expected) - planned
    if profile != "ci":  # table2's rows: one trained run per T model, every bench model
        assert "results/table2.csv" in expected


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["train"].update(lrr=0.1), "lrr"),
        (lambda c: c["train"].update(batch_size=0), "batch_size"),
        (lambda c: c["tables"]["table2"]["rows"][0].update(runn="x"), "runn"),
        (lambda c: c["datasets"]["bdd"]["synth"].update(size="big"), "size"),
        (
            lambda c: c["runs"]["spt_t"].update(backbone={"spa_stages": [2]}),
            "config runs.spt_t: model.backbone: spa_stages must be a suffix of the stages 1-4",
        ),
        (lambda c: c["runs"]["spt_t"].update(gt_select=True), "config runs.spt_t: model.gt_select"),
        (lambda c: c["figures"]["fig6"]["names"].append("x"), "config figures.fig6: 3 names for 2 runs"),
        (
            lambda c: c["tables"]["table2"]["rows"][1].update(run="spt_tt"),
            "config tables.table2: rows[1].run: unknown run 'spt_tt' (did you mean 'spt_t'?)",
        ),
        (
            lambda c: c["tables"]["table2"]["rows"].append({"name": "x", "model": "swin_x"}),
            "config tables.table2: rows[2].model: unknown model 'swin_x' (did you mean 'swin_t'?)",
        ),
        (
            lambda c: c["figures"]["fig6"].update(runs=["swin_t", "zzz"]),
            "config figures.fig6: runs: unknown run 'zzz'; known: cls_spt_t, cls_spt_t_gt, pretrain, spt_t, swin_t",
        ),
        (
            lambda c: c["runs"]["spt_t"].update(dataset="coco"),
            "config runs.spt_t: dataset: unknown dataset 'coco'; known: bdd, bdd_s, pretrain",
        ),
        (
            lambda c: c["datasets"]["bdd_s"].update(subset_of="bdx"),
            "config datasets.bdd_s: subset_of: unknown dataset 'bdx' (did you mean 'bdd'?)",
        ),
        (
            lambda c: c.update(device="tpu"),
            "config device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'",
        ),
        (
            lambda c: c["tables"]["table2"]["rows"].append({"name": "x", "model": "spt_s"}),
            "config tables.table2: rows[2]: spt_s selects with learned gates: give ratios_from: RUN (a trained "
            "run whose measured ratios it is benchmarked at), not untrained gates",
        ),
        (
            lambda c: c["model_defaults"].update(weights={"run": "pretrian"}),
            "config model_defaults: weights.run (runs.cls_spt_t): unknown run 'pretrian' (did you mean 'pretrain'?)",
        ),
        (
            lambda c: c["runs"]["pretrain"].update(weights={"run": "pretrain"}),
            "config runs.pretrain: weights.run: pretrain cannot start from itself; give it weights: null",
        ),
    ],
)
def test_a_bad_config_stops_before_any_job_naming_the_key(edit, message, tmp_path, snakemake):
    config = yaml.safe_load((CONFIGS / "ci.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, path, "--cores", "1", "results/table2.csv")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # no job ran


@pytest.mark.parametrize(
    ("profile", "target", "message"),
    [
        (  # Tables 1 and 4 are COCO: the paper profile only
            "demo",
            "results/table1.csv",
            "config tables.table1: not in the demo profile; it is in workflows/config/paper.yaml"
            " (snakemake --configfile workflows/config/paper.yaml --replace-workflow-config results/table1.csv)",
        ),
        (
            "ci",
            "results/fig5.png",
            "config figures.fig5: not in the ci profile; it is in workflows/config/demo.yaml,"
            " workflows/config/paper.yaml (snakemake --configfile workflows/config/demo.yaml"
            " --replace-workflow-config results/fig5.png)",
        ),
        ("ci", "results/table9.csv", "config tables.table9: not in the ci profile, nor in workflows/config"),
    ],
)
def test_a_target_of_another_profile_names_the_profiles_that_have_it(
    profile, target, message, tmp_path, snakemake
):
    result = snakemake(tmp_path, CONFIGS / f"{profile}.yaml", "-n", target)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_the_pipeline_session_pins_every_package_that_snakemake_report_needs():
    """``nox -s pipeline`` installs noxfile.py's PIPELINE (the tests session too): it has every
    package of snakemake's ``reports`` extra, pinned at the version these tests build a report with."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    pipeline = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PIPELINE"]
    )
    pins = {canonicalize_name(r.name): r for r in map(Requirement, pipeline)}
    assert str(pins["snakemake"].specifier) == f"=={importlib.metadata.version('snakemake')}"
    requires = map(Requirement, importlib.metadata.requires("snakemake"))
    report = [
        r
        for r in requires
        if r.marker and r.marker.evaluate({"extra": "reports"}) and not r.marker.evaluate({"extra": ""})
    ]
    assert "pygments" in {canonicalize_name(r.name) for r in report}
    for r in report:
        pin = pins.get(canonicalize_name(r.name))
        assert pin is not None, f"noxfile.py PIPELINE: no {r.name} (snakemake --report needs it)"
        assert str(pin.specifier) == f"=={importlib.metadata.version(r.name)}", pin


@pytest.mark.slow
def test_ci_profile_runs_to_a_table_and_a_figure_then_reruns_nothing(tmp_path, snakemake):
    config = CONFIGS / "ci.yaml"
    targets = ["results/table2.csv", "results/fig6.png", "results/table5.csv", "results/fig4.png"]
    targets.append("results/selection_curve.csv")
    result = snakemake(tmp_path, config, "--cores", "2", *targets, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = (tmp_path / "logs" / "ci" / "fit" / "spt_t.log").read_text()  # started from the pretraining
    assert "runs/ci/pretrain/backbone.pth: loaded" in fresh and "stay freshly initialised" in fresh
    bench = json.loads((tmp_path / "runs" / "ci" / "bench" / "spt_t@spt_t.json").read_text())["rows"][0]
    assert bench["selection"] == "ratios" and "measured by run runs/ci/spt_t" in bench["provenance"]
    curve = (tmp_path / "results" / "selection_curve.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in curve[1:]] == [["spt_t", "0.01"], ["spt_t", "0.5"], ["swin_t", ""]]
    assert (tmp_path / "results" / "fig_selection.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "results" / "table2.csv").read_text().splitlines()
    assert table[0].startswith("name,AP,AP50,params_M")
    assert [r.split(",")[0] for r in table[1:]] == ["Swin-T", "SPT-T"]
    assert all(",ci," in r for r in table[1:])  # the profile in every row
    assert ",unknown" not in table[1]  # the commit of the code, though the run is outside the checkout
    classification = (tmp_path / "results" / "table5.csv").read_text().splitlines()  # on the subset
    assert classification[0].startswith("name,mean_select_ratio,mAP,profile,dataset")
    assert "data/ci/bdd_s/train.parquet" in classification[1] and "spt_t classifier" in classification[1]
    for figure in ("fig4.png", "fig6.png"):
        assert (tmp_path / "results" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = snakemake(tmp_path, config, "-n", *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    edited = yaml.safe_load(config.read_text())  # a run's lr and a table's columns change: those rerun
    edited["runs"]["swin_t"]["train"] = {"lr": 0.002}
    edited["tables"]["table2"]["columns"].pop()
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    plan = snakemake(tmp_path, tmp_path / "edited.yaml", "-n", *targets)
    output = plan.stdout + plan.stderr
    assert re.findall(r"output: runs/ci/(\w+)/run\.yaml", output) == ["swin_t"], output[-3000:]
    assert "output: results/table2.csv" in output and "output: results/table5.csv" not in output
    report = snakemake(tmp_path, config, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "results" / "report.html").read_text()
    assert all(name in html for name in ("table2.csv", "table5.csv", "fig4.png", "fig6.png"))
    captions = {"fig4": "Fig. 4: multi-label mAP", "fig6": "Fig. 6: AP against"}  # each figure its own
    for figure, caption in captions.items():
        entry = rf'"results/{figure}\.png": {{[^{{}}]*"caption": "<p>{re.escape(caption)}'
        assert re.search(entry, html), figure


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path, snakemake):
    config = yaml.safe_load((CONFIGS / "ci.yaml").read_text())
    config["train"].update(max_steps=8, epochs=2, checkpoint_steps=1)
    path = tmp_path / "ci8.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "runs/ci/spt_t/final.pt"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    assert snakemake(straight, path, "--cores", "1", target, timeout=600).returncode == 0

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--configfile", str(path)]
    proc = subprocess.Popen(
        [*cmd, "--replace-workflow-config", "--cores", "1", target],
        cwd=killed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # Ctrl-C must reach it even where this test runs with SIGINT ignored (a shell's background
        # job, e.g. `bash .ci/run &`): children inherit an ignored SIGINT, and Python then never
        # raises KeyboardInterrupt, so the "killed" run silently trained to the end
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    last = killed / "runs" / "ci" / "spt_t" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C mid-training
    proc.wait(timeout=120)
    assert proc.returncode != 0, "training finished before the kill; make the run longer"
    assert last.exists() and not (killed / target).exists()  # the checkpoint survives, no output

    assert snakemake(killed, path, "--cores", "1", target, timeout=600).returncode == 0
    log = (killed / "logs" / "ci" / "fit" / "spt_t.log").read_text()
    assert "resumed" in log
    a = torch.load(straight / target, map_location="cpu", weights_only=False)
    b = torch.load(killed / target, map_location="cpu", weights_only=False)
    assert a["step"] == b["step"] == 8
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=0, msg=k)
