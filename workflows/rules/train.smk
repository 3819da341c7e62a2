# run config -> fit (resumes from out_dir/last.pt) -> eval on the val split.
#
# fit's output is final.pt, a hard link to last.pt made only once training has finished (no second
# copy on disk; a later resume replaces last.pt by a new file and leaves final.pt as it was): a killed job
# leaves no final.pt, so Snakemake reruns fit, which resumes from last.pt. The run folder itself
# is not an output, so Snakemake never deletes it (nor the checkpoints in it) on failure.
#
# Every job's threads, cpus_per_task, mem_mb, runtime and gpu come from the config's resources.STEP
# (fit, eval, bench): the one source of them for a local run and for SLURM (profiles/slurm), whose
# executor plugin submits them as --cpus-per-task, --mem, --time and --gpus.


def step_gpus(step):
    """The GPUs of a step's jobs (config resources.STEP.gpus); None without: no gpu resource."""
    return config["resources"][step]["gpus"] or None


def fit_processes(resources):
    """The training processes of a fit job: one per GPU of the job (DDP), else one."""
    return max(1, resources.get("gpu") or 1)


def fit_launcher(wildcards, resources):
    """spt-train, or torchrun with one process per GPU of the job (DDP over them)."""
    n = fit_processes(resources)
    return "spt-train" if n == 1 else f"torchrun --standalone --nproc-per-node {n} -m spt_train"


def fit_omp(wildcards, threads, resources):
    """OMP_NUM_THREADS of each training process: the job's CPUs shared by its processes."""
    return max(1, omp(wildcards, threads) // fit_processes(resources))


rule run_config:
    input:
        unpack(run_data),
    output:
        f"{RUNS}/{{run}}/run.yaml",
    params:
        overrides=run_overrides,
    log:
        f"{LOGS}/run_config/{{run}}.log",
    benchmark:
        f"{BENCH}/run_config/{{run}}.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train config {params.overrides} --out {output} > {log} 2>&1"


rule fit:
    input:
        config=f"{RUNS}/{{run}}/run.yaml",
    output:
        f"{RUNS}/{{run}}/final.pt",
    params:
        launcher=fit_launcher,
        omp=fit_omp,
        last=lambda w: f"{RUNS}/{w.run}/last.pt",
    log:
        f"{LOGS}/fit/{{run}}.log",
    benchmark:
        f"{BENCH}/fit/{{run}}.tsv"
    threads: config["resources"]["fit"]["threads"]
    resources:
        mem_mb=config["resources"]["fit"]["mem_mb"],
        runtime=config["resources"]["fit"]["runtime"],
        cpus_per_task=config["resources"]["fit"]["threads"],
        gpu=step_gpus("fit"),
    shell:
        "OMP_NUM_THREADS={params.omp} {params.launcher} fit {input.config} >> {log} 2>&1"
        " && ln -f {params.last} {output}.tmp && mv {output}.tmp {output}"


rule eval:
    input:
        config=f"{RUNS}/{{run}}/run.yaml",
        checkpoint=f"{RUNS}/{{run}}/final.pt",
    output:
        f"{RUNS}/{{run}}/metrics.json",
    params:
        omp=omp,
    log:
        f"{LOGS}/eval/{{run}}.log",
    benchmark:
        f"{BENCH}/eval/{{run}}.tsv"
    threads: config["resources"]["eval"]["threads"]
    resources:
        mem_mb=config["resources"]["eval"]["mem_mb"],
        runtime=config["resources"]["eval"]["runtime"],
        cpus_per_task=config["resources"]["eval"]["threads"],
        gpu=step_gpus("eval"),
    shell:
        "OMP_NUM_THREADS={params.omp} spt-train eval {input.config} --checkpoint {input.checkpoint}"
        " --out {output} > {log} 2>&1"


rule backbone:
    input:
        config=f"{RUNS}/{{run}}/run.yaml",
        checkpoint=f"{RUNS}/{{run}}/final.pt",
    output:
        weights_file("{run}"),
    log:
        f"{LOGS}/backbone/{{run}}.log",
    benchmark:
        f"{BENCH}/backbone/{{run}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train backbone {input.config} --checkpoint {input.checkpoint}"
        " --out {output} > {log} 2>&1"


rule eval_threshold:
    input:
        config=f"{RUNS}/{{run}}/run.yaml",
        checkpoint=f"{RUNS}/{{run}}/final.pt",
    output:
        f"{RUNS}/{{run}}/threshold/{{threshold}}.json",
    params:
        omp=omp,
    log:
        f"{LOGS}/eval_threshold/{{run}}_{{threshold}}.log",
    benchmark:
        f"{BENCH}/eval_threshold/{{run}}_{{threshold}}.tsv"
    threads: config["resources"]["eval"]["threads"]
    resources:
        mem_mb=config["resources"]["eval"]["mem_mb"],
        runtime=config["resources"]["eval"]["runtime"],
        cpus_per_task=config["resources"]["eval"]["threads"],
        gpu=step_gpus("eval"),
    shell:
        "OMP_NUM_THREADS={params.omp} spt-train eval {input.config} --checkpoint {input.checkpoint}"
        " --set model.backbone.threshold={wildcards.threshold} --out {output} > {log} 2>&1"
