# raw (demo: synthesised here) -> records Parquet -> selection labels; BDD-S / VOC-S: the records
# of a dataset's images with object-to-pixel ratio < max_ratio (a dataset with subset_of), + manifest.


rule synth:
    output:
        ann=f"{DATA}/raw/{{dataset}}/{{split}}/labels/{{split}}.json",
        images=directory(f"{DATA}/raw/{{dataset}}/{{split}}/images/{{split}}"),
    params:
        out=lambda w: f"{DATA}/raw/{w.dataset}/{w.split}",
        n=lambda w: dataset(w.dataset)["synth"][f"{w.split}_images"],
        seed=lambda w: dataset(w.dataset)["synth"]["seed"] + (w.split == "val"),
        size=lambda w: dataset(w.dataset)["synth"]["size"],
        min_size=lambda w: dataset(w.dataset)["synth"]["min_size"],
    log:
        f"{LOGS}/synth/{{dataset}}_{{split}}.log",
    benchmark:
        f"{BENCH}/synth/{{dataset}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "OMP_NUM_THREADS={threads} spt-data --no-progress synth --out {params.out} --split {wildcards.split}"
        " --num-images {params.n} --seed {params.seed} --size {params.size} --min-size {params.min_size}"
        " --overwrite > {log} 2>&1"


rule convert:
    input:
        unpack(raw_inputs),
    output:
        f"{DATA}/{{dataset}}/{{split}}.parquet",
    wildcard_constraints:
        dataset=one_of(RAW),
    params:
        args=convert_args,
    log:
        f"{LOGS}/convert/{{dataset}}_{{split}}.log",
    benchmark:
        f"{BENCH}/convert/{{dataset}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "OMP_NUM_THREADS={threads} spt-data --no-progress convert {params.args} --out {output} > {log} 2>&1"


rule labels:
    input:
        f"{DATA}/{{dataset}}/{{split}}.parquet",
    output:
        f"{DATA}/{{dataset}}/{{split}}_labels.parquet",
    params:
        short=FRAME["short"],
        long=FRAME["long"],
        strides=" ".join(str(s) for s in config["labels"]["strides"]),
    log:
        f"{LOGS}/labels/{{dataset}}_{{split}}.log",
    benchmark:
        f"{BENCH}/labels/{{dataset}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "OMP_NUM_THREADS={threads} spt-data --no-progress labels --records {input} --out {output}"
        " --short {params.short} --long {params.long} --strides {params.strides} > {log} 2>&1"


rule subset:
    input:
        lambda w: f"{DATA}/{dataset(w.dataset)['subset_of']}/{w.split}.parquet",
    output:
        records=f"{DATA}/{{dataset}}/{{split}}.parquet",
        manifest=f"{DATA}/{{dataset}}/{{split}}_manifest.csv",
    wildcard_constraints:
        dataset=one_of(SUBSETS),
    params:
        max_ratio=lambda w: dataset(w.dataset)["max_ratio"],
    log:
        f"{LOGS}/subset/{{dataset}}_{{split}}.log",
    benchmark:
        f"{BENCH}/subset/{{dataset}}_{{split}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} spt-data --no-progress subset --records {input} --out {output.manifest}"
        " --max-ratio {params.max_ratio} --records-out {output.records} > {log} 2>&1"
