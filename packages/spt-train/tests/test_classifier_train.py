"""Multi-label classification runs (``model.head: classifier``, VOC Tables 5 and 7, Fig. 4): fit,
exact resume, eval against an independent recomputation, ground-truth selection, config errors."""

import json
import math

import pytest
import torch
import yaml

from spt_models import Classifier, count_macs, create_model
from spt_models.detection import batch_select_labels
from spt_train.cli import main
from spt_train.config import ConfigError, load_config
from spt_train.data import ClassificationDataset, collate_padded
from spt_train.engine import fit
from spt_train.evaluation import multilabel_map
from spt_train.predict import evaluate_checkpoint
from spt_train.table import lookup

TINY = {"embed_dim": 16, "depths": [1, 1, 2, 2], "heads": [1, 2, 4, 8]}
MODELS = {
    "swin_t": {"name": "swin_t", "backbone": TINY},
    "spt_t12": {"name": "spt_t12", "backbone": {**TINY, "drop_path": 0.1}},
    "spt_t_oracle": {"name": "spt_t_oracle", "backbone": {**TINY, "extra_blocks": 0}, "gt_select": True},
    "vit_s16": {"name": "vit_s16", "backbone": {"embed_dim": 16, "depth": 1, "heads": 2}, "gt_select": True},
}


def classifier(write_config, name, model, **train):
    """A run config of a tiny classifier: 1 epoch, 2 steps of 2 images (160 x 96)."""
    spec = {"head": "classifier", "detector": {}, **MODELS[model]}
    return write_config(name, model=spec, **{"epochs": 1, "max_steps": 2, **train})


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def recompute(config, checkpoint):
    """The val split's logits, labels and difficult flags, from spt_models and the dataset alone."""
    m, d = config.model, config.data
    dataset = ClassificationDataset(d.val.records, d.val.labels, short=d.short, long=d.long)
    model = Classifier(create_model(m.name, **m.backbone), dataset.num_classes, gt_select=m.gt_select)
    model.load_state_dict(weights(checkpoint))
    model.eval()
    logits, labels, difficult = [], [], []
    with torch.no_grad():
        for i in range(0, len(dataset), config.train.batch_size):
            items = [dataset[j] for j in range(i, min(i + config.train.batch_size, len(dataset)))]
            images, valid, targets = collate_padded(items)
            logits.append(model(images, select=batch_select_labels(targets), valid=valid)[0])
            labels += [t["labels"] for t in targets]
            difficult += [t["difficult"] for t in targets]
    names = [dataset.categories[c] for c in dataset.category_ids]
    return multilabel_map(
        torch.cat(logits), torch.stack(labels), difficult=torch.stack(difficult), class_names=names
    )


@pytest.mark.parametrize("model", ["swin_t", "spt_t12"])
def test_classifier_fits_and_its_eval_is_the_map_of_its_logits(write_config, tmp_path, capsys, model):
    path = classifier(write_config, model, model)
    config = load_config(path)
    last = fit(config)
    assert sorted(p.name for p in last.parent.glob("*.pt")) == ["last.pt"]  # 2 of 4 steps: mid-epoch
    rows = [json.loads(line) for line in (last.parent / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) and math.isfinite(r["loss_cls"]) for r in rows)
    assert ("loss_select" in rows[-1]) == (model == "spt_t12")
    assert (rows[-1]["select_ratio"] is None) == (model == "swin_t")

    out = tmp_path / f"{model}_metrics.json"
    assert main(["eval", str(path), "--out", str(out), "--macs-images", "2"]) == 0
    assert "VOC multi-label mAP" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    expected = recompute(config, last)
    assert lookup(metrics, "cls.mAP", out) == pytest.approx(expected["mAP"], abs=1e-12)
    assert metrics["cls"]["per_class"] == pytest.approx(expected["per_class"], nan_ok=True)
    assert metrics["macs"]["num_images"] == 2 and metrics["config"]["model"]["head"] == "classifier"
    if model == "swin_t":  # dense: no selection, and the MACs are the backbone's alone
        assert lookup(metrics, "select_ratio", out) is None and metrics["selection"] == {}
        dense = count_macs(create_model("swin_t", **TINY), torch.zeros(1, 3, 96, 160)) / 1e9
        assert metrics["macs"]["backbone_g"] == pytest.approx(dense, rel=1e-12)
    else:
        strides = metrics["selection"]
        assert sorted(strides) == ["stride16", "stride32"] and strides["stride16"]["retention"] is not None
        mean = (strides["stride16"]["select_ratio"] + strides["stride32"]["select_ratio"]) / 2
        assert lookup(metrics, "select_ratio", out) == pytest.approx(mean)


def test_classifier_resume_mid_epoch_is_bit_identical(write_config):
    """SPT with selection labels, flips, stochastic depth and Gumbel noise: 2 steps straight == 1
    step, a kill, a resume from last.pt and 1 more step."""
    straight = fit(load_config(classifier(write_config, "straight", "spt_t12", checkpoint_steps=1)))
    path = classifier(write_config, "resumed", "spt_t12", checkpoint_steps=1)
    fit(load_config(path), stop_after=1)
    last = torch.load(path.parent / "resumed" / "last.pt", weights_only=False)
    assert (last["epoch"], last["batch"], last["step"]) == (0, 1, 1)
    resumed = fit(load_config(path))
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model", ["spt_t_oracle", "vit_s16"])
def test_ground_truth_selection_trains_and_selects_exactly_the_labels(write_config, tmp_path, model):
    path = classifier(write_config, model, model, max_steps=1)
    config = load_config(path)
    last = fit(config)
    row = json.loads((last.parent / "metrics.jsonl").read_text())
    assert math.isfinite(row["loss"])
    metrics = evaluate_checkpoint(config, last, tmp_path / "metrics.json", macs_images=2)
    assert metrics["cls"]["mAP"] == pytest.approx(recompute(config, last)["mAP"], abs=1e-12)
    strides = {"spt_t_oracle": ["stride16", "stride32"], "vit_s16": ["stride16"]}[model]
    assert sorted(metrics["selection"]) == strides
    for m in metrics["selection"].values():  # keep == labels on the real tokens
        assert m["retention"] == 1.0 and m["select_ratio"] == pytest.approx(m["density_before"])
    backbone = create_model(config.model.name, **config.model.backbone)
    everything = {16: torch.ones(1, 6, 10, dtype=torch.bool), 32: torch.ones(1, 3, 5, dtype=torch.bool)}
    kwargs = {"keep": everything} if model == "spt_t_oracle" else {}
    dense = count_macs(backbone, torch.zeros(1, 3, 96, 160), **kwargs) / 1e9
    assert 0 < metrics["macs"]["backbone_g"] < dense  # the selection saves compute


@pytest.mark.parametrize(
    ("model", "change", "message"),
    [
        (
            "swin_t",
            {"gt_select": True},
            "model.gt_select: ground-truth selection needs vit_s16 or an SPT with selection 'given' "
            "(e.g. spt_t_oracle), got 'swin_t'",
        ),
        (
            "spt_t12",
            {"head": "faster_rcnn", "gt_select": True},
            "model.gt_select: ground-truth selection is for head 'classifier', got head 'faster_rcnn'",
        ),
        (
            "spt_t_oracle",
            {"gt_select": False},
            "model.gt_select: spt_t_oracle selects the label tokens (selection 'given'): set gt_select: true",
        ),
        (
            "swin_t",
            {"detector": {"fpn_channels": 32}},
            "model.detector: detector options do not apply to head 'classifier', got ['fpn_channels']",
        ),
    ],
)
def test_a_wrong_classifier_combination_is_one_config_error(write_config, model, change, message):
    path = classifier(write_config, "bad", model)
    data = yaml.safe_load(path.read_text())
    data["model"].update(change)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_ground_truth_selection_needs_labels(write_config, capsys):
    path = classifier(write_config, "nolabels", "vit_s16")
    data = yaml.safe_load(path.read_text())
    del data["data"]["train"]["labels"]
    path.write_text(yaml.safe_dump(data))
    assert main(["fit", str(path)]) == 2
    message = f"{path}: data.train.labels: gt_select needs selection labels (spt-data labels)"
    assert capsys.readouterr().err.strip() == f"spt-train fit: error: {message}"
