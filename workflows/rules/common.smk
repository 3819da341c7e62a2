# Helpers of the rules: paths, the run configs' --set overrides, the targets. No rule here.
import difflib
import functools
import os
import re
import shlex
import zlib
from pathlib import Path

import yaml

PROFILE = config["profile"]
DATA = f"data/{PROFILE}"
RUNS = f"runs/{PROFILE}"
LOGS = f"logs/{PROFILE}"
BENCH = f"benchmarks/{PROFILE}"
FRAME = config["frame"]


def synthetic(name):
    """The synth settings of a dataset given as ``synthetic``: the profile's ``synthetic`` scenes,
    seeded by the dataset's name (crc32: stable, and other scenes for each dataset)."""
    return {**config["synthetic"], "seed": zlib.crc32(name.encode())}


config["datasets"] = {
    name: {"synth": synthetic(name)} if d == "synthetic" else d for name, d in config["datasets"].items()
}
SUBSETS = [name for name, d in config["datasets"].items() if "subset_of" in d]
RAW = [name for name in config["datasets"] if name not in SUBSETS]
MODEL_KEYS = ("head", "select_weight", "gt_select", "weights")  # a run's overrides of model_defaults


def expand_seeds(runs):
    """A run with ``seeds: [s0, s1, ...]`` trains as NAME (seed s0) and NAME_seedS for the others;
    tables and figures name NAME and read every seed's metrics (:func:`seed_runs`)."""
    out = {}
    for name, r in runs.items():
        seeds = r.get("seeds", config.get("seeds", []))
        base = {k: v for k, v in r.items() if k != "seeds"}
        for i, seed in enumerate(seeds or [None]):
            run = dict(base)
            if seed is not None:
                run["train"] = {**base.get("train", {}), "seed": seed}
            out[name if i == 0 else f"{name}_seed{seed}"] = run
    return out


SEEDS = {name: r.get("seeds", config.get("seeds", [])) for name, r in config["runs"].items()}
config["runs"] = expand_seeds(config["runs"])


def seed_runs(run):
    """The runs of every seed of ``run`` (itself alone without seeds)."""
    seeds = SEEDS.get(run, [])
    return [run] + [f"{run}_seed{s}" for s in seeds[1:]]


def one_of(names):
    """A wildcard regex matching exactly these names (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    split="train|val",
    run="[A-Za-z0-9_]+",
    model="[a-z0-9_]+",
    bench=r"[a-z0-9_]+(@[A-Za-z0-9_]+)?(\+[a-z_]+)?",
    threshold=r"[0-9.]+(e-?[0-9]+)?",
    table=r"table\d+",
    row=r"\d+",


def omp(wildcards, threads):
    """OMP_NUM_THREADS: the job's threads, never more than this machine's CPUs."""
    return max(1, min(threads, os.cpu_count() or 1))


def dataset(name):
    return config["datasets"][name]


def raw_inputs(wildcards):
    """The raw annotation and image paths of a split: synthesised in the run, or the user's."""
    d = dataset(wildcards.dataset)
    if "synth" in d:
        root = f"{DATA}/raw/{wildcards.dataset}/{wildcards.split}"
        return {"ann": f"{root}/labels/{wildcards.split}.json", "images": f"{root}/images/{wildcards.split}"}
    split = d[wildcards.split]
    return {k: split[k] for k in ("ann", "images", "root") if k in split}


def convert_args(wildcards):
    """spt-data convert's arguments. This and every other params function take the wildcards only:
    Snakemake records no param computed from ``input`` (a "derived" param), and only recorded
    params rerun a job when the config changes."""
    d, paths = dataset(wildcards.dataset), raw_inputs(wildcards)
    fmt = "bdd" if "synth" in d else d["format"]
    if fmt == "voc":
        split = d[wildcards.split].get("split", "trainval")
        return f"--format voc --root {shlex.quote(paths['root'])} --split {split}"
    return f"--format {fmt} --ann {shlex.quote(paths['ann'])} --images {shlex.quote(paths['images'])}"


def flatten(prefix, value):
    """{"model": {"backbone": {"depths": [1, 2]}}} -> [("model.backbone.depths", [1, 2])]."""
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in flatten(f"{prefix}.{k}" if prefix else k, v)]
    return [(prefix, value)]


def flow(value):
    """A YAML flow value for spt-train's --set (read back with yaml.safe_load)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
    return str(value)


def merge(defaults, overrides):
    """defaults updated with overrides; an override of null removes the default key."""
    out = {**defaults, **overrides}
    return {k: v for k, v in out.items() if not (v is None and k in overrides)}


def run_spec(run):
    """The run's spt-train config: model defaults + the run's model, the shared schedule."""
    r = config["runs"][run]
    defaults = config["model_defaults"]
    model = {**defaults, **{k: r[k] for k in MODEL_KEYS if k in r}, "name": r["model"]}
    for key in ("backbone", "detector"):
        model[key] = merge(defaults.get(key, {}), r.get(key, {}))
    if model.get("head") == "classifier":
        del model["detector"]  # a classifier has no detector options
    if isinstance(model.get("weights"), dict):  # {run: NAME}: that run's trained backbone
        model["weights"] = weights_file(model["weights"]["run"])
    threshold = config.get("select_threshold")  # a profile's threshold for every gate-selecting run
    if threshold is not None and "threshold" not in model["backbone"] and run_selects(run):
        model["backbone"] = {**model["backbone"], "threshold": threshold}
    train = {**config["train"], **r.get("train", {})}
    return {"model": model, "train": train, "device": config["device"]}


@functools.cache
def run_selects(run):
    """Whether the run's model thresholds learned gates (:func:`selects`), cached per run."""
    r = config["runs"][run]
    return selects(r["model"], merge(config["model_defaults"].get("backbone", {}), r.get("backbone", {})))


def weights_file(run):
    """The backbone state dict of a trained run (rule backbone), the file ``weights:`` takes."""
    return f"{RUNS}/{run}/backbone.pth"


def weights_run(run):
    """The run whose trained backbone ``run`` starts from, or None."""
    r = config["runs"][run]
    weights = r["weights"] if "weights" in r else config["model_defaults"].get("weights")
    return weights["run"] if isinstance(weights, dict) else None


def unknown(where, kind, name, known):
    """The error for a name that is not one of ``known``, with a did-you-mean as spt-train's."""
    near = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(sorted(known))}"
    return ValueError(f"config {where}: unknown {kind} {name!r}{hint}")


def check_names():
    """The device, and every dataset and run that a dataset, run, table or figure names, checked
    when the workflow loads (else a KeyError or a missing input while planning, or a failure after
    data prep)."""
    device = config["device"]
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ValueError(f"config device: must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    datasets, runs = list(config["datasets"]), list(config["runs"])
    for name in SUBSETS:
        if dataset(name)["subset_of"] not in datasets:
            raise unknown(f"datasets.{name}: subset_of", "dataset", dataset(name)["subset_of"], datasets)
    for name, r in config["runs"].items():
        if r["dataset"] not in datasets:
            raise unknown(f"runs.{name}: dataset", "dataset", r["dataset"], datasets)
        start = weights_run(name)
        where = f"runs.{name}: weights.run" if "weights" in r else f"model_defaults: weights.run (runs.{name})"
        if start is not None and start not in runs:
            raise unknown(where, "run", start, runs)
        if start == name:
            raise ValueError(f"config {where}: {name} cannot start from itself; give it weights: null")
    for name, table in config["tables"].items():
        for i, row in enumerate(table["rows"]):
            where = f"tables.{name}: rows[{i}]"
            if "run" in row and row["run"] not in runs:
                raise unknown(f"{where}.run", "run", row["run"], runs)
            for key, run in row.get("also", {}).items():
                if run not in runs:
                    raise unknown(f"{where}.also.{key}", "run", run, runs)
    for key in ("run", "reference"):
        run = config.get("selection_curve", {}).get(key)
        if run is not None and run not in runs:
            raise unknown(f"selection_curve.{key}", "run", run, runs)
    for name, figure in config["figures"].items():
        key = "runs" if "runs" in figure else "run"  # fig5 shows one run
        for run in figure["runs"] if key == "runs" else [figure["run"]]:
            if run not in runs:
                raise unknown(f"figures.{name}: {key}", "run", run, runs)
        if "names" in figure and len(figure["names"]) != len(figure["runs"]):
            raise ValueError(
                f"config figures.{name}: {len(figure['names'])} names for {len(figure['runs'])} runs"
            )


def check_runs():
    """Every run's model and schedule as spt-train will see them (the backbone built on the meta
    device), and every model a table benchmarks, checked when the workflow loads: a bad value stops
    Snakemake before any job."""
    from spt_models import list_models
    from spt_train.config import ConfigError, RunConfig, check_model, from_mapping

    models = list_models()
    for name, table in config["tables"].items():
        for i, row in enumerate(table["rows"]):
            where = f"tables.{name}: rows[{i}]"
            if "model" in row and row["model"] not in models:
                raise unknown(f"{where}.model", "model", row["model"], models)
            if "ratios_from" in row and row["ratios_from"] not in config["runs"]:
                raise unknown(f"{where}.ratios_from", "run", row["ratios_from"], list(config["runs"]))
            bench = table.get("bench", True)
            if bench and "model" in row and "ratios_from" not in row and selects(row["model"]):
                raise ValueError(
                    f"config {where}: {row['model']} selects with learned gates: give ratios_from: RUN "
                    "(a trained run whose measured ratios it is benchmarked at), not untrained gates"
                )
    for run in config["runs"]:
        made = "(made by the run)"
        spec = {**run_spec(run), "data": {"train": {"records": made, "labels": made}}, "out_dir": "-"}
        where = f"config runs.{run}"
        try:
            check_model(from_mapping(RunConfig, spec, where, ""), where)
        except ConfigError as e:
            raise ValueError(str(e)) from None


def requested(section, name):
    """config[section][name] of a requested table or figure; one of another profile is an error that
    names the profile files that have it (Tables 1 and 4 are in the paper profile only)."""
    if name in config[section]:
        return config[section][name]
    ext = "csv" if section == "tables" else "png"
    root = Path(workflow.basedir)
    files = sorted((root / "workflows" / "config").glob("*.yaml"))
    have = [str(f.relative_to(root)) for f in files if name in yaml.safe_load(f.read_text()).get(section, {})]
    if not have:
        raise ValueError(f"config {section}.{name}: not in the {PROFILE} profile, nor in workflows/config")
    raise ValueError(
        f"config {section}.{name}: not in the {PROFILE} profile; it is in {', '.join(have)}"
        f" (snakemake --configfile {have[0]} --replace-workflow-config results/{name}.{ext})"
    )


def run_overrides(wildcards):
    """spt-train config's ``--set`` arguments: the whole run config, so that a change reruns it."""
    paths = run_data(wildcards)
    spec = run_spec(wildcards.run)
    spec["data"] = {
        "train": {"records": paths["train"], "labels": paths["train_labels"]},
        "val": {"records": paths["val"], "labels": paths["val_labels"]},
        "short": FRAME["short"],
        "long": FRAME["long"],
    }
    spec["out_dir"] = f"{RUNS}/{wildcards.run}"
    return " ".join(shlex.quote(f"--set={k}={flow(v)}") for k, v in sorted(flatten("", spec)))  # key order: no rerun


def run_data(wildcards):
    d = f"{DATA}/{config['runs'][wildcards.run]['dataset']}"
    start = weights_run(wildcards.run)
    return {
        "train": f"{d}/train.parquet",
        "train_labels": f"{d}/train_labels.parquet",
        "val": f"{d}/val.parquet",
        "val_labels": f"{d}/val_labels.parquet",
        **({"weights": weights_file(start)} if start is not None else {}),
    }


def selects(model, backbone=None):
    """Whether ``model`` (with these backbone overrides) selects tokens with learned gates: its cost
    depends on what the gates learned, so it is benchmarked at a trained run's ratios."""
    import torch
    from spt_models import SPTBackbone, create_model
    from spt_train.bench import spa_blocks

    with torch.device("meta"):
        body = create_model(model, **(backbone or {}))
    gates = isinstance(body, SPTBackbone) and body.selection == "gate"
    return gates and all(block.keep_ratio is None for block in spa_blocks(body))


def bench_parts(bench):
    """A bench name ``MODEL[@RUN][+HEAD]`` -> (model, run or None, head): MODEL benchmarked at RUN's
    measured select ratios, with HEAD (default: the profile's ``bench.head``)."""
    name, _, head = bench.partition("+")
    model, _, run = name.partition("@")
    return model, run or None, head or config["bench"]["head"]


def bench_inputs(wildcards):
    """MODEL@RUN: the eval metrics of RUN, whose select ratios MODEL is benchmarked at."""
    _, run, _ = bench_parts(wildcards.bench)
    return {"metrics": f"{RUNS}/{run}/metrics.json"} if run else {}


def bench_file(row):
    """The bench JSON of a table row: its model at the real architecture's size; a selecting model
    at the select ratios its run (or ``ratios_from``) measured on the val split; with the head a run
    names itself (Table 1's Cascade Mask R-CNN B rows), else the profile's ``bench.head`` (the demo
    trains Faster R-CNN by model_defaults and benchmarks the paper's Mask R-CNN)."""
    model = row.get("model") or config["runs"][row["run"]]["model"]
    ratios_run = row.get("ratios_from") or (row["run"] if "model" not in row else None)
    name = model
    if ratios_run is not None and selects(model, run_spec(ratios_run)["model"]["backbone"]):
        name = f"{model}@{ratios_run}"
    head = config["runs"][row["run"]].get("head") if "run" in row else None
    if head not in (None, "classifier", config["bench"]["head"]):
        name = f"{name}+{head}"
    return f"{RUNS}/bench/{name}.json"


def table_row(wildcards):
    return config["tables"][wildcards.table]["rows"][int(wildcards.row)]


def row_inputs(wildcards):
    row = table_row(wildcards)
    out = {}
    if "run" in row:
        out["metrics"] = [f"{RUNS}/{r}/metrics.json" for r in seed_runs(row["run"])]
    for name, run in row.get("also", {}).items():
        out[f"also_{name}"] = [f"{RUNS}/{r}/metrics.json" for r in seed_runs(run)]
    if config["tables"][wildcards.table].get("bench", True):
        out["bench"] = bench_file(row)
    return out


def row_args(wildcards):
    row, inputs = table_row(wildcards), row_inputs(wildcards)
    args = [f"--metrics {' '.join(inputs['metrics'])}" if "metrics" in inputs else ""]
    args += [f"--also {name}={','.join(inputs[f'also_{name}'])}" for name in row.get("also", {})]
    if "bench" in inputs:
        args.append(f"--bench {inputs['bench']} --model {row.get('model') or config['runs'][row['run']]['model']}")
    columns = config["tables"][wildcards.table]["columns"]
    args.append("--columns " + " ".join(shlex.quote(c) for c in columns))
    return " ".join(a for a in args if a)


def table_rows(wildcards):
    n = len(requested("tables", wildcards.table)["rows"])
    return [f"{RUNS}/rows/{wildcards.table}/{i}.json" for i in range(n)]


def table_names(wildcards):
    return " ".join(shlex.quote(r["name"]) for r in config["tables"][wildcards.table]["rows"])


def curve_inputs(wildcards):
    """The selection curve's evals: its run at each threshold, and the reference run."""
    if "selection_curve" not in config:
        raise ValueError(f"config selection_curve: not in the {PROFILE} profile; it is in workflows/config/demo.yaml")
    c = config["selection_curve"]
    return {
        "metrics": [f"{RUNS}/{c['run']}/threshold/{t}.json" for t in c["thresholds"]],
        "reference": f"{RUNS}/{c['reference']}/metrics.json",
    }


def all_targets():
    tables = [f"results/{t}.csv" for t in config["tables"]]
    figures = [f"results/{f}.png" for f in config["figures"]]
    curve = ["results/selection_curve.csv"] if "selection_curve" in config else []
    return tables + figures + curve


check_names()
check_runs()
