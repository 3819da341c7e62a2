"""Gate AUROC: the exact Mann-Whitney U equals a brute-force pairwise count, on hand-made scores and
on the scores a tiny trained SPT records on its val split; the histogram fallback stays within its
stated bound; a detector eval reports it per block and per stride."""

import json
import math

import numpy as np
import pytest
import torch

from spt_models.detection import batch_select_labels
from spt_models.masks import fit_grid
from spt_train.config import load_config
from spt_train.data import collate
from spt_train.engine import fit, make_dataset
from spt_train.evaluation import AurocMeter, auroc
from spt_train.predict import AuxRecorder, evaluate_checkpoint, load_model


def pairwise(scores, labels) -> float:
    """(#{s+ > s-} + 0.5 #{s+ == s-}) / (P N), counted over every pair."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    pos, neg = s[y][:, None], s[~y][None, :]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_auroc_of_a_hand_made_case_with_ties():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    scores, labels = [1.0, 1.0, 2.0, 3.0], [False, True, False, True]  # one tie across the classes
    assert auroc(scores, labels) == pairwise(scores, labels) == 0.625
    assert auroc([2.0, 2.0, 2.0], [True, False, True]) == 0.5  # all tied
    assert math.isnan(auroc([0.3, 0.1], [True, True])) and math.isnan(auroc([0.3, 0.1], [False, False]))
    g = np.random.default_rng(0)
    scores = g.integers(0, 20, 500).astype(np.float32)  # many ties
    labels = g.random(500) < 0.3
    assert auroc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        pairwise(scores, labels), abs=1e-12
    )


def test_meter_pools_real_tokens_per_key_and_group_and_bounds_its_histogram():
    g = torch.Generator().manual_seed(0)
    exact, binned = AurocMeter(), AurocMeter(max_exact=100, bins=64, clip=4.0)
    seen = {"a": [], "b": []}
    for _ in range(3):
        for key in ("a", "b"):
            labels = torch.rand(2, 5, 6, generator=g) < 0.4
            scores = torch.randn(2, 5, 6, generator=g) + 1.5 * labels  # positives rank higher
            valid = torch.ones(2, 5, 6, dtype=torch.bool)
            valid[1, :, 4:] = False  # padding: never counted
            scores[~valid] = 1e3
            for meter in (exact, binned):
                meter.update(key, scores, labels, valid, group="stride16")
            seen[key].append((scores[valid], labels[valid]))
    want = {k: pairwise(torch.cat([s for s, _ in v]), torch.cat([y for _, y in v])) for k, v in seen.items()}
    pooled = pairwise(
        torch.cat([s for v in seen.values() for s, _ in v]),
        torch.cat([y for v in seen.values() for _, y in v]),
    )
    got = exact.compute()
    assert got["exact"] and got["error"] == 0.0
    assert got["keys"] == pytest.approx(want, abs=1e-12) and got["groups"]["stride16"] == pytest.approx(
        pooled
    )
    approx = binned.compute()  # past 100 tokens: histograms of 64 bins over [-4, 4]
    assert not approx["exact"] and 0 < approx["error"] < 0.05
    for key, value in want.items():
        assert abs(approx["keys"][key] - value) <= approx["error"]
    assert abs(approx["groups"]["stride16"] - pooled) <= approx["error"]


@pytest.fixture
def trained(write_config):
    path = write_config("run", epochs=1)
    return load_config(path), fit(load_config(path))


def test_eval_reports_each_gate_auroc_as_a_pairwise_count_of_the_recorded_scores(trained, tmp_path):
    config, checkpoint = trained
    metrics = evaluate_checkpoint(config, checkpoint, tmp_path / "m.json", macs_images=2)
    assert json.loads((tmp_path / "m.json").read_text())["gate_auroc"] == metrics["gate_auroc"]
    # the scores, labels and real tokens of every gate, recorded independently of the meter
    dataset = make_dataset(config, "val")
    model = load_model(config, checkpoint, dataset.num_classes, torch.device("cpu"))
    recorder = AuxRecorder(model.backbone)
    scores: dict[str, list] = {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.train.batch_size, collate_fn=collate)
    with torch.no_grad():
        for images, targets in loader:
            model(images, targets)
            aux, labels = recorder.aux, batch_select_labels(targets)
            gates = [("s0", aux.score0, aux.stride0)]
            gates += [(f"stride{s}.{i % 2}", lg, s) for i, (lg, s) in enumerate(zip(aux.logits, aux.strides))]
            for key, logits, stride in gates:  # tiny spt_t12: 2 blocks per SPA stride
                valid = aux.valid[stride]
                label = fit_grid(labels[stride], tuple(logits.shape[1:]))
                scores.setdefault(key, []).append((logits[valid], label[valid]))
    want = {
        k: pairwise(torch.cat([s for s, _ in v]), torch.cat([y for _, y in v])) for k, v in scores.items()
    }
    assert all(0 < v < 1 for v in want.values())  # every gate saw object and background tokens
    assert list(metrics["gate_auroc"]) == ["s0", "stride16.0", "stride16.1", "stride32.0", "stride32.1"]
    assert metrics["gate_auroc"] == pytest.approx(want, abs=1e-12)
    assert metrics["gate_auroc_exact"] is True and metrics["gate_auroc_error"] == 0.0
    for stride in (16, 32):
        blocks = [v for k, v in scores.items() if k.startswith(f"stride{stride}.")]
        pooled = pairwise(
            torch.cat([s for b in blocks for s, _ in b]), torch.cat([y for b in blocks for _, y in b])
        )
        assert metrics["selection"][f"stride{stride}"]["auroc"] == pytest.approx(pooled, abs=1e-12)
    assert metrics["select_threshold"] == pytest.approx(0.01)
