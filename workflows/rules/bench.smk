# Params, MACs (backbone, whole detector) and backbone FPS of the real T/S/B architectures.


rule bench:
    output:
        f"{RUNS}/bench/{{model}}.json",
    params:
        head=config["bench"]["head"],
        size=config["bench"]["size"],
        repeats=config["bench"]["repeats"],
        warmup=config["bench"]["warmup"],
        device=config["device"],
        omp=omp,
    log:
        f"{LOGS}/bench/{{model}}.log",
    benchmark:
        f"{BENCH}/bench/{{model}}.tsv"
    threads: config["resources"]["bench"]["threads"]
    resources:
        mem_mb=config["resources"]["bench"]["mem_mb"],
        runtime=config["resources"]["bench"]["runtime"],
        gpu=min(1, config["resources"]["fit"]["gpus"]),
    shell:
        "OMP_NUM_THREADS={params.omp} spt-train bench --models {wildcards.model} --head {params.head}"
        " --size {params.size} --warmup {params.warmup} --repeats {params.repeats} --device {params.device} --out {output} > {log} 2>&1"
