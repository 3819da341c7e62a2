# Table rows (eval metrics + bench) -> results/tableN.csv; figures -> results/figN.png.


rule row:
    input:
        unpack(row_inputs),
    output:
        f"{RUNS}/rows/{{table}}/{{row}}.json",
    params:
        args=row_args,
    log:
        f"{LOGS}/row/{{table}}_{{row}}.log",
    benchmark:
        f"{BENCH}/row/{{table}}_{{row}}.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train row {params.args} --out {output} > {log} 2>&1"


rule table:
    input:
        table_rows,
    output:
        report(
            "results/{table}.csv",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    params:
        columns=lambda w: " ".join(shlex.quote(c) for c in config["tables"][w.table]["columns"]),
        names=table_names,
        profile=PROFILE,
    log:
        f"{LOGS}/table/{{table}}.log",
    benchmark:
        f"{BENCH}/table/{{table}}.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train table --metrics {input} --columns {params.columns}"
        " --names {params.names} --profile {params.profile} --out {output} > {log} 2>&1"


# Figures of the eval metrics of runs (config figures.NAME: runs, names), drawn by `spt-train figure
# NAME`; the report caption of each is in ../report/metrics_figure.rst.
METRICS_FIGURES = {
    "fig4": "Ground-truth selection: accuracy and cost",
    "fig6": "Performance vs pruning level",
}


rule metrics_figure:
    input:
        lambda w: [f"{RUNS}/{r}/metrics.json" for r in requested("figures", w.figure)["runs"]],
    output:
        report("results/{figure}.png", caption="../report/metrics_figure.rst", category="Figures"),
    params:
        names=lambda w: " ".join(shlex.quote(n) for n in config["figures"][w.figure]["names"]),
        title=lambda w: f"{METRICS_FIGURES[w.figure]} ({PROFILE} profile)",
    log:
        f"{LOGS}/figure/{{figure}}.log",
    benchmark:
        f"{BENCH}/figure/{{figure}}.tsv"
    wildcard_constraints:
        figure=one_of(METRICS_FIGURES),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train figure {wildcards.figure} --metrics {input} --names {params.names}"
        " --title {params.title:q} --out {output} > {log} 2>&1"


rule fig5:
    input:
        config=lambda w: f"{RUNS}/{requested('figures', 'fig5')['run']}/run.yaml",
        checkpoint=lambda w: f"{RUNS}/{requested('figures', 'fig5')['run']}/final.pt",
    output:
        report("results/fig5.png", caption="../report/fig5.rst", category="Figures"),
    params:
        n=config["figures"].get("fig5", {}).get("num_images", 4),
        title=f"Selection of all SPA blocks, warm: selected, cold: pruned ({PROFILE} profile)",
    log:
        f"{LOGS}/figure/fig5.log",
    benchmark:
        f"{BENCH}/figure/fig5.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "OMP_NUM_THREADS={threads} spt-train figure fig5 --config {input.config}"
        " --checkpoint {input.checkpoint} --num-images {params.n} --title {params.title:q}"
        " --out {output} > {log} 2>&1"


rule selection_curve:
    input:
        unpack(curve_inputs),
    output:
        csv=report("results/selection_curve.csv", caption="../report/selection_curve.rst", category="Tables"),
        png=report("results/fig_selection.png", caption="../report/selection_curve.rst", category="Figures"),
    params:
        profile=PROFILE,
        title=f"Selection operating curve ({PROFILE} profile)",
    log:
        f"{LOGS}/figure/selection_curve.log",
    benchmark:
        f"{BENCH}/figure/selection_curve.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "OMP_NUM_THREADS={threads} spt-train curve --metrics {input.metrics} --reference {input.reference}"
        " --profile {params.profile} --title {params.title:q} --figure {output.png} --out {output.csv}"
        " > {log} 2>&1"
