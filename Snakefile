# The paper's tables and figures from raw data: `snakemake results/table2.csv --cores 8` (demo).
# Another profile: `snakemake --configfile workflows/config/paper.yaml ...` (README, Pipeline).
from pathlib import Path

import yaml
from snakemake.utils import min_version, update_config, validate

min_version("8.0")


configfile: "workflows/config/demo.yaml"


def profile_file(path, chain=()):
    """A config file's mapping; with ``extends: BASE`` (a path from the repository root), BASE's
    mapping with the file's keys merged over it as Snakemake merges config files: a mapping key by
    key, any other value (a list, ``synthetic``) replacing what was there, a mapping included."""
    path = Path(path).resolve()
    if path in chain:
        raise ValueError(f"config {path}: extends: a cycle ({' -> '.join(map(str, [*chain, path]))})")
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("extends", None)
    if base is None:
        return data
    merged = profile_file(Path(workflow.basedir) / base, (*chain, path))
    update_config(merged, data)
    return merged


if "extends" in config:  # a --configfile extends a profile: the files in order over its base
    config.clear()  # the workflow's default (demo) is not merged in, as --replace-workflow-config
    for path in workflow.config_settings.configfiles:
        update_config(config, profile_file(path))
    update_config(config, dict(workflow.config_settings.config))  # --config KEY=VALUE last


def check_dataset_forms(datasets):
    """A dataset mapping is synthetic (synth) or files (format, train, val) or a subset (subset_of),
    never two: a mix, say a later config file's files merged into a profile's {synth: ...}, is an
    error naming the dataset (not a silent mix of the two)."""
    for name, d in datasets.items():
        files = [k for k in ("format", "train", "val", "subset_of") if isinstance(d, dict) and k in d]
        if files and "synth" in d:  # files: d is a mapping
            raise ValueError(
                f"config datasets.{name}: both synth (scenes made by the run) and {', '.join(files)}:"
                f" give one; a later config file replaces a synthetic dataset whole only when the profile"
                f" gives it as `{name}: synthetic`"
            )


if isinstance(config.get("datasets"), dict):  # else: the schema says what is wrong
    check_dataset_forms(config["datasets"])


validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/bench.smk"
include: "workflows/rules/results.smk"


rule all:
    input:
        all_targets(),
