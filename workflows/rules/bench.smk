# Params, MACs (backbone, whole detector) and backbone FPS of the real T/S/B architectures. A model
# that selects with learned gates is benchmarked at the per-stride select ratios a trained run
# measured on its val split (runs/<profile>/bench/MODEL@RUN.json), never at untrained gates.


rule bench:
    input:
        unpack(bench_inputs),
    output:
        f"{RUNS}/bench/{{bench}}.json",
    params:
        model=lambda w: bench_parts(w.bench)[0],
        ratios=lambda w: " ".join(f"--ratios-from {m}" for m in bench_inputs(w).values()),
        head=lambda w: bench_parts(w.bench)[2],
        size=config["bench"]["size"],
        repeats=config["bench"]["repeats"],
        warmup=config["bench"]["warmup"],
        device=config["device"],
        omp=omp,
    log:
        f"{LOGS}/bench/{{bench}}.log",
    benchmark:
        f"{BENCH}/bench/{{bench}}.tsv"
    threads: config["resources"]["bench"]["threads"]
    resources:
        mem_mb=config["resources"]["bench"]["mem_mb"],
        runtime=config["resources"]["bench"]["runtime"],
        cpus_per_task=config["resources"]["bench"]["threads"],
        gpu=step_gpus("bench"),
    shell:
        "OMP_NUM_THREADS={params.omp} spt-train bench --models {params.model} {params.ratios} --head {params.head}"
        " --size {params.size} --warmup {params.warmup} --repeats {params.repeats} --device {params.device}"
        " --out {output} > {log} 2>&1"
