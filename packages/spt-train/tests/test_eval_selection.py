"""Selection metrics (App. B.3): counts by hand, padding never counted, numpy = torch, batches sum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spt_train.evaluation import SelectionMeter, selection_counts, selection_ratios


def _reference(keep, label, valid):
    """Per image, token by token: (real, selected, positive, selected positive)."""
    out = []
    for b in range(keep.shape[0]):
        c = [0, 0, 0, 0]
        for r in range(keep.shape[1]):
            for q in range(keep.shape[2]):
                if valid[b, r, q]:
                    c[0] += 1
                    c[1] += bool(keep[b, r, q])
                    c[2] += bool(label[b, r, q])
                    c[3] += bool(keep[b, r, q] and label[b, r, q])
        out.append(c)
    return np.array(out)


def test_hand_example_with_padding():
    # image 0: 2x3 grid, last column padding; image 1: all 6 real, no objects, nothing selected
    keep = np.array([[[1, 0, 1], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]], bool)
    label = np.array([[[1, 1, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]], bool)
    valid = np.array([[[1, 1, 0], [1, 1, 0]], [[1, 1, 1], [1, 1, 1]]], bool)
    c = selection_counts(keep, label, valid)
    assert {k: v.tolist() for k, v in c.items()} == {
        "real": [4, 6], "selected": [3, 0], "positive": [3, 0], "selected_positive": [2, 0]
    }  # fmt: skip
    r = selection_ratios(c)
    assert r["select_ratio"].tolist() == [0.75, 0.0]
    assert r["retention"][0] == pytest.approx(2 / 3) and math.isnan(r["retention"][1])
    assert r["density_before"].tolist() == [0.75, 0.0]
    assert r["density_after"][0] == pytest.approx(2 / 3) and math.isnan(r["density_after"][1])


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 5), (2, 7, 3)])
def test_numpy_torch_and_reference_agree_and_batches_sum(shape):
    rng = np.random.default_rng(sum(shape))
    keep, label, valid = (rng.random((2, *shape)) < p for p in (0.5, 0.3, 0.8))
    meter_np, meter_t = SelectionMeter(), SelectionMeter()
    for i in range(2):  # two batches of one stage
        meter_np.update(16, keep[i], label[i], valid[i])
        meter_t.update(16, *(torch.from_numpy(x[i]) for x in (keep, label, valid)))
        ref = _reference(keep[i], label[i], valid[i])
        got = selection_counts(
            torch.from_numpy(keep[i]), torch.from_numpy(label[i]), torch.from_numpy(valid[i])
        )
        assert np.array_equal(np.stack([got[k] for k in got], 1), ref)
    a, b = meter_np.compute()["16"], meter_t.compute()["16"]
    np.testing.assert_equal(a, b)  # exact, NaN = NaN
    # pooled over both batches = counting the concatenated batch at once
    ref = _reference(np.concatenate(keep), np.concatenate(label), np.concatenate(valid)).sum(0)
    assert (a["real"], a["selected"], a["positive"], a["selected_positive"]) == tuple(ref)
    assert a["num_images"] == 2 * shape[0] and len(a["per_image_select_ratio"]) == 2 * shape[0]
    assert a["select_ratio"] == pytest.approx(ref[1] / ref[0])


def test_all_tokens_selected_and_shape_error():
    keep = np.ones((2, 3, 3), bool)
    label = np.zeros((2, 3, 3), bool)
    label[:, 1, 1] = True
    meter = SelectionMeter()
    meter.update("stage3", keep, label)  # valid None: every token real
    m = meter.compute()["stage3"]
    assert (m["select_ratio"], m["retention"], m["density_before"], m["density_after"]) == (
        1.0,
        1.0,
        1 / 9,
        1 / 9,
    )
    with pytest.raises(ValueError, match=r"label should have the shape of keep \[2, 3, 3\], got \[2, 3, 4\]"):
        meter.update("stage3", keep, np.zeros((2, 3, 4), bool))
