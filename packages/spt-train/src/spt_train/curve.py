"""``spt-train curve``: the selection operating curve of one SPT checkpoint (threshold -> select
ratio, object-token retention, gate AUROC, AP, backbone MACs), as a CSV with provenance and a figure.

    for t in 0.01 0.05 0.2 0.5; do
        spt-train eval run.yaml --checkpoint runs/spt_t/final.pt --set model.backbone.threshold=$t \\
            --out runs/spt_t/curve/$t.json
    done
    spt-train curve --metrics runs/spt_t/curve/*.json --reference runs/swin_t/metrics.json \\
        --out results/selection_curve.csv --figure results/fig_selection.png

Every ``--metrics`` file is an eval of the same checkpoint (checked) at another threshold: the
threshold the model selected with (``select_threshold`` of the metrics, else the ``--set``
recorded in ``evaluated_at`` or the config's ``model.backbone.threshold``). CSV: one row per
metrics file sorted by threshold, then the reference's row (threshold empty); columns
:func:`curve_header` (``name``: the run's model; per SPA stride s ``select_ratio_s<s>`` (pooled),
``retention_s<s>``, ``gate_auroc_s<s>`` (the stride's blocks pooled); ``AP``, ``AP50`` (COCOeval
bbox); ``backbone_gmacs`` (mean over the images eval measured, ``macs.backbone_g``),
``backbone_gmacs_p10``, ``backbone_gmacs_p90``; then ``spt-train table``'s provenance). A value
a file lacks is an empty cell. Figure: AP50 against backbone GMACs per image, one point per
threshold labelled with it (bars: p10-p90 of the images), the reference a star.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from .cliargs import existing_file, output_file
from .table import PROVENANCE, provenance

STAT_COLUMNS = (  # column -> dotted path in an eval metrics file
    ("AP", "bbox.AP"),
    ("AP50", "bbox.AP50"),
    ("backbone_gmacs", "macs.backbone_g"),
    ("backbone_gmacs_p10", "macs.backbone_p10_g"),
    ("backbone_gmacs_p90", "macs.backbone_p90_g"),
)
PER_STRIDE = (("select_ratio", "select_ratio"), ("retention", "retention"), ("gate_auroc", "auroc"))


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "curve",
        help="evals of one checkpoint at several thresholds -> the selection operating curve (CSV, PNG)",
        formatter_class=fmt,
    )
    p.add_argument(
        "--metrics",
        type=existing_file,
        nargs="+",
        required=True,
        help="eval metrics JSON of one checkpoint, one per threshold (eval --set model.backbone.threshold=T)",
    )
    p.add_argument("--reference", type=existing_file, help="eval metrics JSON of the reference (e.g. Swin-T)")
    p.add_argument("--profile", default="demo", help="the run profile, written in every row")
    p.add_argument(
        "--figure", type=output_file, help="PNG to write (atomically): AP50 against backbone GMACs"
    )
    p.add_argument("--title", default="", help="figure title (e.g. the profile)")
    p.add_argument("--out", type=output_file, required=True, help="CSV to write (atomically)")


def lookup(metrics: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in ``metrics``, None where a part is missing."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def threshold_of(metrics: dict[str, Any], source: Path) -> float:
    """The threshold an eval selected with: ``select_threshold``, else the ``--set`` recorded in
    ``evaluated_at``, else the config's ``model.backbone.threshold``."""
    for value in (
        metrics.get("select_threshold"),
        (metrics.get("evaluated_at") or {}).get("model.backbone.threshold"),
        lookup(metrics, "config.model.backbone.threshold"),
    ):
        if value is not None:
            return float(value)
    model = lookup(metrics, "config.model.name")
    raise ValueError(
        f"{source}: no selection threshold (model {model!r} does not threshold its tokens; "
        "a curve needs the evals of a thresholding SPT)"
    )


def read_points(files: list[Path]) -> list[tuple[float, dict[str, Any], Path]]:
    """(threshold, metrics, file) per file, sorted by threshold; every file one checkpoint's eval."""
    points = []
    for path in files:
        metrics = json.loads(path.read_text())
        points.append((threshold_of(metrics, path), metrics, path))
    first_checkpoint, first = points[0][1].get("checkpoint"), points[0][2]
    for _, metrics, path in points[1:]:
        if metrics.get("checkpoint") != first_checkpoint:
            raise ValueError(
                f"{path}: checkpoint {metrics.get('checkpoint')} is not {first}'s {first_checkpoint} "
                "(a curve is one checkpoint evaluated at several thresholds)"
            )
    seen: dict[float, Path] = {}
    for threshold, _, path in points:
        if threshold in seen:
            raise ValueError(f"{path}: threshold {threshold:g} again (also {seen[threshold]})")
        seen[threshold] = path
    return sorted(points, key=lambda p: p[0])


def strides(metrics: list[dict[str, Any]]) -> list[int]:
    """The SPA strides of the files' selection metrics (``stride<s>`` keys), increasing."""
    found = {int(k.removeprefix("stride")) for m in metrics for k in m.get("selection", {})}
    return sorted(found)


def curve_header(spa_strides: list[int]) -> list[str]:
    """The CSV's columns for the given strides."""
    per_stride = [f"{name}_s{s}" for name, _ in PER_STRIDE for s in spa_strides]
    return ["name", "threshold", *per_stride, *(c for c, _ in STAT_COLUMNS), *PROVENANCE]


def curve_row(
    metrics: dict[str, Any], threshold: float | None, spa_strides: list[int], profile: str
) -> list[Any]:
    """One CSV row of an eval's metrics (``threshold`` None: the reference's row)."""
    name = lookup(metrics, "config.model.name") or metrics.get("model", "")
    cells: list[Any] = [name, "" if threshold is None else threshold]
    for _, key in PER_STRIDE:
        cells += [lookup(metrics, f"selection.stride{s}.{key}") for s in spa_strides]
    cells += [lookup(metrics, dotted) for _, dotted in STAT_COLUMNS]
    prov = provenance(metrics, profile)
    return ["" if c is None else c for c in cells] + [prov[k] for k in PROVENANCE]


def make_curve(
    files: list[Path], reference: Path | None, profile: str
) -> tuple[str, list[tuple[float, dict[str, Any], Path]], dict[str, Any] | None]:
    """-> (CSV text, the points sorted by threshold, the reference's metrics or None)."""
    points = read_points(files)
    ref = json.loads(reference.read_text()) if reference is not None else None
    spa_strides = strides([m for _, m, _ in points])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(curve_header(spa_strides))
    for threshold, metrics, _ in points:
        writer.writerow(curve_row(metrics, threshold, spa_strides, profile))
    if ref is not None:
        writer.writerow(curve_row(ref, None, spa_strides, profile))
    return out.getvalue(), points, ref


def _xy(metrics: dict[str, Any], source: Path) -> tuple[float, float]:
    """(backbone GMACs per image, AP50 in %) of an eval; an eval without them is an error."""
    x, y = lookup(metrics, "macs.backbone_g"), lookup(metrics, "bbox.AP50")
    if x is None or y is None:
        missing = "macs.backbone_g" if x is None else "bbox.AP50"
        raise ValueError(
            f"{source}: no {missing} (a detector eval with --macs-images >= 1 and --metric coco has it)"
        )
    return float(x), 100 * float(y)


def curve_figure(
    points: list[tuple[float, dict[str, Any], Path]],
    reference: tuple[dict[str, Any], Path] | None,
    title: str,
) -> Any:
    """AP50 (y, %) against backbone GMACs per image (x), a point per threshold labelled with it,
    horizontal bars from the images' p10 to p90; the reference a star labelled with its model."""
    import matplotlib.pyplot as plt

    from .figures import finish

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    xy = [_xy(m, path) for _, m, path in points]
    model = lookup(points[0][1], "config.model.name") or "model"
    ax.plot(
        [x for x, _ in xy], [y for _, y in xy], "-o", ms=5, lw=1, zorder=3, label=f"{model}, per threshold"
    )
    labels: dict[tuple[float, float], list[str]] = {}  # thresholds of coincident points share a label
    for (threshold, metrics, _), (x, y) in zip(points, xy):
        low, high = lookup(metrics, "macs.backbone_p10_g"), lookup(metrics, "macs.backbone_p90_g")
        if low is not None and high is not None:
            ax.errorbar([x], [y], xerr=[[x - low], [high - x]], fmt="none", ecolor="C0", alpha=0.4, lw=1)
        labels.setdefault((x, y), []).append(f"{threshold:g}")
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if reference is not None:
        metrics, path = reference
        x, y = _xy(metrics, path)
        name = lookup(metrics, "config.model.name") or path.parent.name
        ax.scatter([x], [y], marker="*", s=140, color="C3", zorder=4, label=name)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.15, y=0.15)  # room for the point labels
    return finish(
        fig,
        ax,
        "backbone GMACs per image (mean; bars: p10-p90)",
        "bbox.AP50",
        title or "Selection operating curve: AP50 against backbone cost, per threshold",
    )


def run(args: argparse.Namespace) -> int:
    from spt_data.io import atomic_write_bytes

    from .table import write_table

    text, points, ref = make_curve(list(args.metrics), args.reference, args.profile)
    png = None
    if args.figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = curve_figure(points, None if ref is None else (ref, args.reference), args.title)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        png = buffer.getvalue()
        matplotlib.pyplot.close(fig)
    write_table(args.out, text)
    print(text, end="")
    print(f"wrote {args.out}")
    if png is not None:
        atomic_write_bytes(args.figure, png)
        print(f"wrote {args.figure}")
    return 0
