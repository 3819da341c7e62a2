"""``spt-train figure``: the paper's figures from pipeline outputs (matplotlib, PNG, atomic).

    spt-train figure fig4 --metrics runs/voc_*/metrics.json --names ... --out results/fig4.png
    spt-train figure fig6 --metrics runs/*/metrics.json --names ... --out results/fig6.png
    spt-train figure fig5 --config runs/spt_t/run.yaml --checkpoint runs/spt_t/final.pt --out results/fig5.png

fig4 (sec. 4.4): multi-label mAP against the backbone's mean MACs per image, one point per
classifier run (with and without ground-truth selection), from eval metrics. fig6 (App. B.4): AP against the fraction of stage-3/4 tokens pruned, one point per run (fixed keep
ratios and the learned selection), from eval metrics. fig5 (sec. 4.4): every SPA block's selection
summed and overlaid on validation images (warm: selected by many blocks, cold: pruned), from a
trained SPT checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from .cliargs import existing_file, output_file
from .table import lookup


def add_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser("figure", help="a paper figure (fig4, fig5, fig6) as PNG", formatter_class=fmt)
    p.add_argument("figure", choices=["fig4", "fig5", "fig6"], help="which figure")
    p.add_argument(
        "--metrics", type=existing_file, nargs="+", help="fig4, fig6: eval metrics JSON, one point each"
    )
    p.add_argument("--names", nargs="+", help="fig4, fig6: point labels (default: each file's folder name)")
    p.add_argument("--metric", help="dotted path of the y value (fig4: cls.mAP, fig6: bbox.AP)")
    p.add_argument("--config", type=existing_file, help="fig5: run config of an SPT checkpoint")
    p.add_argument("--checkpoint", type=existing_file, help="fig5: the checkpoint")
    p.add_argument("--num-images", type=int, default=4, help="fig5: validation images shown")
    p.add_argument("--title", default="", help="figure title (e.g. the profile)")
    p.add_argument("--out", type=output_file, required=True, help="PNG to write (atomically)")


def pruned_fraction(metrics: dict[str, Any]) -> float | None:
    """1 - the mean pooled select ratio over the SPA strides (None: a dense model)."""
    ratios = [
        m["select_ratio"] for m in metrics.get("selection", {}).values() if m.get("select_ratio") is not None
    ]
    return None if not ratios else 1.0 - float(np.mean(ratios))


def metric_value(metrics: dict[str, Any], dotted: str, source: Path) -> float:
    """The number at ``dotted`` in a metrics file (:func:`spt_train.table.lookup`); null -> NaN."""
    value = lookup(metrics, dotted, source)
    return float("nan") if value is None else float(value)


def runs(files: list[Path], names: list[str] | None) -> list[tuple[str, dict[str, Any], Path]]:
    """(point label, metrics, file) per metrics file; the label defaults to the file's folder name."""
    if names is not None and len(names) != len(files):
        raise ValueError(f"--names gives {len(names)} names for {len(files)} metrics files")
    return [(names[i] if names else p.parent.name, json.loads(p.read_text()), p) for i, p in enumerate(files)]


def finish(fig: Any, ax: Any, xlabel: str, metric: str, title: str) -> Any:
    """Axis labels (y: the metric's last name, in %), title, grid, tight layout -> the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric.rsplit('.', 1)[-1]} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def fig4(files: list[Path], names: list[str] | None, metric: str, title: str) -> Any:
    """mAP (y) against the backbone's mean MACs per image (x, ``macs.backbone_g``), one point each."""
    import matplotlib.pyplot as plt

    points = runs(files, names)
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, metrics, path in points:
        x, y = metric_value(metrics, "macs.backbone_g", path), 100 * metric_value(metrics, metric, path)
        gt = metrics.get("config", {}).get("model", {}).get("gt_select", False)
        ax.scatter([x], [y], s=36, zorder=3, marker="*" if gt else "o")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(x=0.3, y=0.15)  # room for the point labels
    return finish(
        fig,
        ax,
        "backbone GMACs per image (val mean)",
        metric,
        title or "Ground-truth token selection: accuracy and cost",
    )


def fig6(files: list[Path], names: list[str] | None, metric: str, title: str) -> Any:
    """AP (y) against the pruned fraction (x); a dense run (no selection) is a dashed line."""
    import matplotlib.pyplot as plt

    points = runs(files, names)
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, metrics, path in points:
        y, x = 100 * metric_value(metrics, metric, path), pruned_fraction(metrics)
        if x is None:
            ax.axhline(y, ls="--", color="grey", lw=1)
            ax.annotate(name, (0.02, y), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
            continue
        ax.scatter([100 * x], [y], s=36, zorder=3)
        ax.annotate(name, (100 * x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    return finish(fig, ax, "tokens pruned at stages 3-4 (%)", metric, title or "Performance vs pruning level")


def selection_heat(keep: list[Any], size: tuple[int, int]) -> np.ndarray:
    """keep: per SPA block a [h, w] bool grid -> [H, W] fraction of blocks selecting each pixel."""
    import torch
    import torch.nn.functional as F

    H, W = size
    total = torch.zeros(H, W)
    for k in keep:
        total += F.interpolate(k[None, None].float(), size=(H, W), mode="nearest")[0, 0]  # [H, W]
    return (total / max(1, len(keep))).numpy()


def fig5(config_path: Path, checkpoint: Path, num_images: int, title: str) -> Any:
    """Validation images of the run with the sum of its SPA blocks' selections overlaid."""
    import matplotlib.pyplot as plt
    import torch

    from .config import load_config
    from .data import collate
    from .engine import make_dataset, to_device
    from .predict import AuxRecorder, load_model

    config = load_config(config_path)
    dataset = make_dataset(config, "val" if config.data.val is not None else "train")
    model = load_model(config, checkpoint, dataset.num_classes, torch.device("cpu"))
    recorder = AuxRecorder(model.backbone)
    n = min(num_images, len(dataset))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.4), dpi=120, squeeze=False)
    for i, ax in enumerate(axes[0]):
        images, targets = collate([dataset[i]])
        with torch.no_grad():
            model(images, [to_device(t, torch.device("cpu")) for t in targets])
        aux = recorder.aux
        if aux is None or not hasattr(aux, "keep"):
            raise ValueError(
                f"{checkpoint}: model {config.model.name!r} records no selection (fig5 needs SPT)"
            )
        image = images[0].permute(1, 2, 0).numpy()  # [H, W, 3] in [0, 1]
        h, w = image.shape[:2]
        keep = [k[0] for k in aux.keep]  # per block [h', w'] on the batch grid (padding included)
        frame = (keep[0].shape[0] * aux.strides[0], keep[0].shape[1] * aux.strides[0])  # padded
        heat = selection_heat(keep, frame)  # [H', W'] >= the image
        ax.imshow(image)
        ax.imshow(heat[:h, :w], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_axis_off()
    fig.suptitle(title or "Selection of all SPA blocks (warm: selected, cold: pruned)", fontsize=9)
    fig.tight_layout()
    return fig


def run(args: argparse.Namespace) -> int:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from spt_data.io import atomic_write_bytes

    if args.figure in ("fig4", "fig6"):
        if not args.metrics:
            raise ValueError(f"figure {args.figure} needs --metrics")
        plot, metric = (fig4, "cls.mAP") if args.figure == "fig4" else (fig6, "bbox.AP")
        fig = plot(list(args.metrics), args.names, args.metric or metric, args.title)
    else:
        if args.config is None or args.checkpoint is None:
            raise ValueError("figure fig5 needs --config and --checkpoint")
        fig = fig5(args.config, args.checkpoint, args.num_images, args.title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {args.out}")
    return 0
