# The paper's tables and figures from raw data: `snakemake results/table2.csv --cores 8` (demo).
# Another profile: `snakemake --configfile workflows/config/paper.yaml ...` (README, Pipeline).
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "workflows/config/demo.yaml"


validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/bench.smk"
include: "workflows/rules/results.smk"


rule all:
    input:
        all_targets(),
