"""VOC detection AP: a hand-computed case, and the official devkit's logic on real VOC annotations."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from spt_data import Record, read_voc
from spt_train.evaluation import coco_image_ids, voc_ap, voc_metrics

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _det(image_id: int, xyxy, score: float, cat: int = 1) -> dict:
    x1, y1, x2, y2 = xyxy
    return {"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def test_hand_computed_case():
    """One class, 3 objects + 1 difficult; 6 detections: TP, duplicate, on the difficult one,
    miss, TP (IoU 0.9), TP at 0.5 only (IoU 2/3). Precision/recall worked out by hand."""
    a = Record.build(image_id="a", image_path="a.jpg", width=100, height=100,
                     boxes=[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], category_ids=[1, 1, 1],
                     category_names=["cat"] * 3, ignore=[False, False, True])  # fmt: skip
    b = Record.build(image_id="b", image_path="b.jpg", width=100, height=100, boxes=[[0, 0, 10, 10]],
                     category_ids=[1], category_names=["cat"])  # fmt: skip
    dets = [
        _det(1, (0, 0, 10, 10), 0.9), _det(1, (0, 0, 10, 10), 0.8), _det(1, (40, 40, 50, 50), 0.7),
        _det(2, (50, 50, 60, 60), 0.6), _det(2, (0, 0, 10, 9), 0.5), _det(1, (20, 20, 30, 35), 0.4),
        _det(1, (0, 0, 10, 10), 0.3, cat=2),  # a class without ground truth
    ]  # fmt: skip
    m = voc_metrics([a, b], dets, {1: "cat", 2: "dog", 3: "cow"})
    cat = m["per_class"]["cat"]
    # IoU 0.5: TP FP FP TP TP -> recall 1/3 1/3 1/3 2/3 1, precision 1 .5 1/3 .5 .6
    assert cat["AP50"] == pytest.approx((1 + 0.6 + 0.6) / 3, abs=1e-12)
    assert cat["AP50_11pt"] == pytest.approx((4 * 1 + 7 * 0.6) / 11, abs=1e-12)
    # IoU 0.75: TP FP FP TP FP -> recall 1/3 1/3 1/3 2/3 2/3, precision 1 .5 1/3 .5 .4
    assert cat["AP75"] == pytest.approx(1 / 3 + 0.5 / 3, abs=1e-12)
    assert cat["AP75_11pt"] == pytest.approx((4 * 1 + 3 * 0.5) / 11, abs=1e-12)
    assert cat["num_gt"] == 3
    assert math.isnan(m["per_class"]["dog"]["AP50"]) and m["per_class"]["cow"]["num_gt"] == 0
    assert m["classes_without_gt"] == ["dog", "cow"]
    assert m["AP50"] == cat["AP50"]  # NaN classes left out of the mean


def test_eleven_point_thresholds_are_exact_decimals():
    # recall exactly 0.3 must count at t = 0.3 (3 * 0.1 = 0.30000000000000004 would miss it)
    assert voc_ap(np.array([0.3]), np.array([1.0]), eleven_point=True) == pytest.approx(4 / 11)


# -- the devkit (VOCevaldet.m / VOCap.m), transcribed loop by loop on the XML's integer corners --


def _devkit_ap(gt: dict, dets: list, thresh: float, eleven_point: bool) -> float:
    """gt {image: (boxes [G, 4] 1-based inclusive, difficult [G])}; dets [(image, score, box)]."""
    npos = sum(int((~d).sum()) for _, d in gt.values())
    if npos == 0:
        return math.nan  # the devkit divides by zero here; NaN is our stated convention
    det = {i: np.zeros(len(b), bool) for i, (b, _) in gt.items()}
    order = sorted(range(len(dets)), key=lambda k: -dets[k][1])  # MATLAB's sort is stable
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, k in enumerate(order):
        img, _, bb = dets[k]
        boxes, diff = gt.get(img, (np.zeros((0, 4)), np.zeros(0, bool)))
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(boxes):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= thresh:
            if not diff[jmax]:
                if not det[img][jmax]:
                    tp[d], det[img][jmax] = 1, True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)  # NaN where the first detections are "don't care": MATLAB's max skips NaN
    if eleven_point:
        ap = 0.0
        for t in np.arange(11) / 10:
            p = prec[(rec >= t) & ~np.isnan(prec)]
            ap += (p.max() if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.nan_to_num(np.concatenate([[0], prec, [0]]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _read_xml(path: Path) -> list[tuple[str, list[int], bool]]:
    objs = []
    for o in ET.parse(path).getroot().iter("object"):
        bb = o.find("bndbox")
        box = [int(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        objs.append((o.find("name").text, box, o.findtext("difficult", "0") == "1"))
    return objs


def test_matches_the_devkit_on_real_voc_annotations():
    root = SHARED_DATA / "voc_rodm" / "VOCdevkit" / "VOC2012"
    if not root.is_dir():
        pytest.skip(f"shared test data not found at {root}")
    ds = read_voc(root, check_images="none")
    ids = coco_image_ids(ds.records)
    rng = np.random.default_rng(0)
    gt: dict[str, dict] = {}
    dets: dict[str, list] = {}  # class -> [(image, score, 1-based box)]
    for rec in ds.records:
        for name, box, difficult in _read_xml(root / "Annotations" / f"{rec.image_id}.xml"):
            boxes, diff = gt.setdefault(name, {}).get(
                rec.image_id, (np.zeros((0, 4), int), np.zeros(0, bool))
            )
            gt[name][rec.image_id] = (np.vstack([boxes, box]), np.append(diff, difficult))
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object, some duplicates, jittered
                jitter = rng.integers(-12, 13, 4)
                b = np.array(box) + jitter
                if b[2] > b[0] and b[3] > b[1]:
                    dets.setdefault(name, []).append(
                        (rec.image_id, float(rng.integers(0, 50)) / 50, b.tolist())
                    )
        for _ in range(2):  # background false positives, random class
            x, y = rng.integers(1, 200, 2)
            name = str(rng.choice(sorted(gt)))
            dets.setdefault(name, []).append(
                (rec.image_id, float(rng.integers(0, 50)) / 50, [x, y, x + 40, y + 30])
            )
    cats = ds.categories
    by_name = {n: c for c, n in cats.items()}
    results = [_det(ids[img], (b[0] - 1, b[1] - 1, b[2], b[3]), s, by_name[name])  # devkit corners -> continuous
               for name, ds_ in dets.items() for img, s, b in ds_]  # fmt: skip
    m = voc_metrics(ds.records, results, cats)
    # 20 classes present; diningtable's only object is difficult: no ground truth to recall, NaN
    assert sorted(gt) == sorted(cats.values()) and m["classes_without_gt"] == ["diningtable"]
    for name in gt:
        for t in (0.5, 0.75):
            for eleven in (False, True):
                key = f"AP{round(t * 100)}" + ("_11pt" if eleven else "")
                want = _devkit_ap(gt[name], dets.get(name, []), t, eleven)
                if math.isnan(want):
                    assert math.isnan(m["per_class"][name][key])
                    continue
                assert m["per_class"][name][key] == pytest.approx(want, abs=1e-12), (name, key)
