"""VOC multi-label classification mAP against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spt_train.evaluation import multilabel_map


def _case():
    scores = np.array([[0.9, 0.9, 0.1], [0.8, 0.8, 0.2], [0.7, 0.7, 0.3], [0.6, 0.1, 0.4], [0.5, 0.1, 0.5]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]], bool)
    difficult = np.zeros_like(labels)
    difficult[0, 1] = True  # class 1's top-scored negative is difficult: neither TP nor FP
    return scores, labels, difficult


def test_hand_computed_all_point_and_eleven_point():
    scores, labels, difficult = _case()
    m = multilabel_map(scores, labels, difficult=difficult, class_names=["a", "b", "c"])
    # class a: ranked labels 1 0 1 0 1 -> recall 1/3 1/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 3/5
    assert m["per_class"]["a"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    assert m["per_class"]["b"] == pytest.approx(1.0)  # the difficult negative is left out
    assert math.isnan(m["per_class"]["c"])  # no positive: NaN, out of the mean
    assert m["mAP"] == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 1) / 2, abs=1e-12)
    assert m["num_positive"] == {"a": 3, "b": 1, "c": 0}
    m11 = multilabel_map(scores, labels, difficult=difficult, class_names=["a", "b", "c"], eleven_point=True)
    assert m11["per_class"]["a"] == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 3 / 5) / 11, abs=1e-12)
    # without the difficult flag class b ranks a negative first: precision 1/2 at its only positive
    assert multilabel_map(scores, labels)["per_class"]["1"] == pytest.approx(0.5)


def test_torch_inputs_and_shape_errors():
    scores, labels, _ = _case()
    assert multilabel_map(torch.from_numpy(scores), torch.from_numpy(labels)) == multilabel_map(
        scores, labels
    )
    with pytest.raises(
        ValueError, match=r"scores and labels should both be \[N, K\], got \(5, 3\) and \(5, 2\)"
    ):
        multilabel_map(scores, labels[:, :2])
