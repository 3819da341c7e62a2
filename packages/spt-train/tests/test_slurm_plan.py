"""The SLURM workflow profile (``profiles/slurm``) plans the paper profile without a cluster: every
fit, eval and bench job requests the CPUs, memory, time and GPUs of its own config
``resources.{fit,eval,bench}`` (the profile sets none of them), fit trains over its GPUs with
torchrun, and a bad GPU count stops at load naming the key."""

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "workflows" / "config"
SLURM = ROOT / "profiles" / "slurm"
BIN = Path(sys.executable).parent  # spt-train and snakemake of this environment

pytestmark = [
    pytest.mark.skipif(shutil.which("snakemake", path=str(BIN)) is None, reason="snakemake not installed"),
    pytest.mark.skipif(
        sys.version_info < (3, 11), reason="snakemake-executor-plugin-slurm needs Python 3.11"
    ),
]


def planned_jobs(output: str) -> list[dict]:
    """The jobs of a ``snakemake -n`` output: rule, resources ({name: value}) and shell command."""
    jobs = []
    for line in output.splitlines():
        if m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            jobs.append({"rule": m.group(1), "resources": {}, "shell": ""})
        elif jobs and line.startswith("    resources: "):
            pairs = line.removeprefix("    resources: ").split(", ")
            jobs[-1]["resources"] = dict(p.split("=", 1) for p in pairs)
        elif jobs and not jobs[-1]["shell"]:  # printshellcmds: "Shell command: CMD" or "    CMD"
            command = line.strip().removeprefix("Shell command: ")
            if command.startswith("OMP_NUM_THREADS="):
                jobs[-1]["shell"] = command
    return jobs


def plan(snakemake, paper_config, tmp_path: Path, edit=None) -> tuple[dict, dict[str, list[dict]]]:
    """Table 2 of the paper profile planned with the SLURM workflow profile (executor slurm, no
    cluster needed: a dry run): the config and the planned jobs by rule."""
    config, path = paper_config(edit)
    result = snakemake(tmp_path, path, "--workflow-profile", str(SLURM), "-n", "results/table2.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    by_rule: dict[str, list[dict]] = {}
    for job in planned_jobs(result.stdout + result.stderr):
        by_rule.setdefault(job["rule"], []).append(job)
    return config, by_rule


def test_slurm_profile_sets_no_cpus_memory_time_or_gpus_of_its_own():
    profile = yaml.safe_load((SLURM / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule in ("fit", "eval", "eval_threshold", "bench"):
        assert set(profile["set-resources"][rule]) <= {"slurm_partition", "nodes"}, rule


def test_paper_profile_plans_on_slurm_with_each_steps_own_resources(tmp_path, snakemake, paper_config):
    config, jobs = plan(snakemake, paper_config, tmp_path)
    assert {"fit", "eval", "bench"} <= set(jobs), sorted(jobs)
    for rule, step in (("fit", "fit"), ("eval", "eval"), ("bench", "bench")):
        want = config["resources"][step]
        assert want["gpus"] >= 1  # the paper profile trains and measures on GPUs
        for job in jobs[rule]:
            res = job["resources"]
            assert res["gpu"] == str(want["gpus"]), (rule, res)
            assert res["cpus_per_task"] == str(want["threads"]), (rule, res)
            assert res["mem_mb"] == str(want["mem_mb"]), (rule, res)
            assert res["runtime"] == str(want["runtime"]), (rule, res)
            assert res["slurm_partition"] == "gpu", (rule, res)
    assert config["resources"]["fit"]["gpus"] != config["resources"]["eval"]["gpus"]  # not fit's for eval
    for job in jobs["fit"]:  # DDP: one torchrun process per GPU of the job, on one node
        assert f"torchrun --standalone --nproc-per-node {config['resources']['fit']['gpus']}" in job["shell"]
        assert job["resources"]["nodes"] == "1"
    data = [job for rule in ("convert", "labels") for job in jobs.get(rule, [])]
    assert data and all("gpu" not in job["resources"] for job in data)  # CPU jobs: the profile's defaults
    assert all(job["resources"]["slurm_partition"] == "cpu" for job in data)


def test_the_config_alone_changes_the_gpus_and_the_training_processes(tmp_path, snakemake, paper_config):
    def edit(config):
        config["resources"]["fit"].update(gpus=4, threads=32)
        config["resources"]["eval"]["gpus"] = 0
        del config["resources"]["bench"]["gpus"]  # absent: no GPU either

    _, jobs = plan(snakemake, paper_config, tmp_path, edit)
    for job in jobs["fit"]:
        assert job["resources"]["gpu"] == "4" and job["resources"]["cpus_per_task"] == "32"
        assert "torchrun --standalone --nproc-per-node 4 -m spt_train fit" in job["shell"]
    for job in jobs["eval"] + jobs["bench"]:
        assert "gpu" not in job["resources"], job  # no --gpus: a CPU job
        assert job["shell"].startswith("OMP_NUM_THREADS=")


@pytest.mark.parametrize(
    ("step", "gpus", "message"),
    [
        ("fit", -1, "-1 is less than the minimum of 0"),
        ("fit", 1.5, "1.5 is not of type 'integer'"),
        ("eval", 2, "2 is greater than the maximum of 1"),
        ("bench", "one", "'one' is not of type 'integer'"),
    ],
)
def test_a_bad_gpu_count_stops_at_load_naming_the_key(step, gpus, message, tmp_path, snakemake):
    config = yaml.safe_load((CONFIGS / "ci.yaml").read_text())
    config["resources"][step]["gpus"] = gpus
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, path, "-n", "results/table2.csv")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output and f"On instance['resources']['{step}']['gpus']" in output, output[-3000:]
