"""Synthetic street scenes: layout sampling (pure numpy) and rendering (PIL) with visible instance masks.

A scene has a horizon and a vanishing point; a road, sidewalks, buildings with windows, trees and
poles form a textured background full of distractors. Objects of the 10 BDD classes stand on the
ground plane, sized by perspective (far = small, near = large), so most objects are small and a
few near ones can cover much of the image. Objects are painted far to near: each instance mask is
its *visible* pixels (later, nearer objects occlude it); objects left with too few visible pixels
are removed from the scene before rendering, so every painted object is labelled and vice versa.
Everything is a function of the numpy ``Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SceneObject", "render_scene", "sample_layout"]

# class -> (probability among ground objects, height, width) in "units" (1 unit = H px at the bottom row)
GROUND = {
    "car": (0.50, 0.30, 0.42),
    "pedestrian": (0.20, 0.42, 0.13),
    "truck": (0.07, 0.48, 0.46),
    "bus": (0.05, 0.55, 0.55),
    "rider": (0.06, 0.50, 0.30),  # a rider comes with a bicycle or motorcycle under it
    "bicycle": (0.05, 0.25, 0.32),
    "motorcycle": (0.05, 0.27, 0.36),
    "train": (0.02, 0.50, 1.60),
}
PALETTE = np.array(
    [
        [200, 30, 30],
        [30, 60, 170],
        [230, 230, 230],
        [25, 25, 28],
        [160, 165, 170],
        [30, 120, 60],
        [210, 150, 40],
    ]
)
MIN_VISIBLE_PX = 6
MIN_VISIBLE_FRACTION = 0.2

Part = tuple[str, tuple[float, ...], tuple[int, int, int]]  # (rect | ellipse | polygon | line, coords, rgb)


@dataclass
class SceneObject:
    """One object: class, drawing parts (painted in order), depth (larger = nearer)."""

    category: str
    parts: list[Part]
    depth: float
    props: list[Part] = field(default_factory=list)  # unlabelled parts painted with it (a pole): occlude only

    def extent(self) -> tuple[float, float, float, float]:
        """Amodal extent of all parts, xyxy px (continuous, unclipped)."""
        xs = [v for _, c, _ in self.parts for v in c[0::2]]
        ys = [v for _, c, _ in self.parts for v in c[1::2]]
        return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def _color(
    rng: np.random.Generator, base: np.ndarray | None = None, jitter: int = 25
) -> tuple[int, int, int]:
    c = PALETTE[rng.integers(len(PALETTE))] if base is None else np.asarray(base)
    return tuple(int(v) for v in np.clip(c + rng.integers(-jitter, jitter + 1, 3), 0, 255))  # type: ignore[return-value]


def _wheels(x0: float, x1: float, yb: float, r: float) -> list[Part]:
    return [
        ("ellipse", (x0, yb - 2 * r, x0 + 2 * r, yb), (15, 15, 15)),
        ("ellipse", (x1 - 2 * r, yb - 2 * r, x1, yb), (15, 15, 15)),
    ]


def _vehicle(rng: np.random.Generator, cat: str, xc: float, yb: float, h: float, w: float) -> list[Part]:
    x0, x1, y0 = xc - w / 2, xc + w / 2, yb - h
    body = _color(rng, [235, 190, 20] if cat == "bus" and rng.random() < 0.6 else None)
    glass = (60, 75, 95)
    if cat == "car":
        cab = y0 + 0.45 * h
        parts: list[Part] = [
            ("polygon", (x0 + 0.15 * w, y0, x1 - 0.15 * w, y0, x1, cab, x0, cab), body),
            ("rect", (x0, cab, x1, yb - 0.12 * h), body),
            (
                "polygon",
                (
                    x0 + 0.22 * w,
                    y0 + 0.1 * h,
                    x1 - 0.22 * w,
                    y0 + 0.1 * h,
                    x1 - 0.1 * w,
                    cab,
                    x0 + 0.1 * w,
                    cab,
                ),
                glass,
            ),
            ("rect", (x0 + 0.05 * w, cab + 0.15 * h, x0 + 0.2 * w, cab + 0.25 * h), (220, 20, 20)),
            ("rect", (x1 - 0.2 * w, cab + 0.15 * h, x1 - 0.05 * w, cab + 0.25 * h), (220, 20, 20)),
        ]
        return parts + _wheels(x0 + 0.05 * w, x1 - 0.05 * w, yb, 0.12 * h)
    if cat == "truck":
        split = x0 + 0.3 * w
        return [
            ("rect", (x0, y0 + 0.35 * h, split, yb - 0.1 * h), body),
            ("rect", (x0 + 0.05 * w, y0 + 0.42 * h, split - 0.03 * w, y0 + 0.6 * h), glass),
            ("rect", (split, y0, x1, yb - 0.1 * h), _color(rng, [225, 225, 220])),
            *_wheels(x0 + 0.05 * w, x1 - 0.05 * w, yb, 0.1 * h),
        ]
    # bus, train: long box with a band of windows
    parts = [("rect", (x0, y0, x1, yb - 0.08 * h), body if cat == "bus" else _color(rng, [170, 175, 185]))]
    n_win = max(2, int(w / (0.35 * h)))
    ww = w / n_win
    parts += [
        ("rect", (x0 + i * ww + 0.1 * ww, y0 + 0.15 * h, x0 + (i + 0.9) * ww, y0 + 0.5 * h), glass)
        for i in range(n_win)
    ]
    return parts + (_wheels(x0 + 0.06 * w, x1 - 0.06 * w, yb, 0.09 * h) if cat == "bus" else [])


def _person(rng: np.random.Generator, xc: float, yb: float, h: float, seated: bool = False) -> list[Part]:
    w = 0.3 * h
    head = 0.16 * h
    skin = _color(rng, [205, 160, 125], 30)
    top = yb - h
    parts: list[Part] = [
        ("ellipse", (xc - head / 2, top, xc + head / 2, top + head), skin),
        ("rect", (xc - w / 2, top + head, xc + w / 2, top + (0.62 if not seated else 0.75) * h), _color(rng)),
    ]
    if not seated:
        legs = _color(rng, [40, 45, 70], 20)
        parts += [
            ("rect", (xc - w / 2, top + 0.62 * h, xc - 0.05 * w, yb), legs),
            ("rect", (xc + 0.05 * w, top + 0.62 * h, xc + w / 2, yb), legs),
        ]
    return parts


def _two_wheeler(rng: np.random.Generator, cat: str, xc: float, yb: float, h: float, w: float) -> list[Part]:
    x0, x1, r = xc - w / 2, xc + w / 2, 0.36 * h
    frame = _color(rng)
    if cat == "bicycle":
        lw = max(1.0, 0.08 * h)
        return [
            ("ring", (x0, yb - 2 * r, x0 + 2 * r, yb, lw), (20, 20, 20)),
            ("ring", (x1 - 2 * r, yb - 2 * r, x1, yb, lw), (20, 20, 20)),
            ("line", (x0 + r, yb - r, xc, yb - h, x1 - r, yb - r, lw), frame),
        ]
    return [
        *_wheels(x0, x1, yb, r),
        (
            "polygon",
            (x0 + 0.5 * r, yb - 1.4 * r, x1 - 0.5 * r, yb - 1.6 * r, x1 - r, yb - h, x0 + r, yb - 0.9 * h),
            frame,
        ),
    ]


def _elevated(rng: np.random.Generator, cat: str, x: float, top: float, unit: float) -> list[Part]:
    if cat == "traffic light":
        w, h = 0.045 * unit, 0.13 * unit
        lamp = rng.integers(3)
        color = [(230, 40, 30), (240, 190, 30), (40, 220, 90)][lamp]
        cy = top + h * (lamp + 0.5) / 3
        return [
            ("rect", (x, top, x + w, top + h), (30, 30, 30)),
            ("ellipse", (x + 0.15 * w, cy - 0.35 * w, x + 0.85 * w, cy + 0.35 * w), color),
        ]
    s = 0.075 * unit
    kind = rng.integers(3)
    if kind == 0:  # prohibition: red disc with a white centre
        return [
            ("ellipse", (x, top, x + s, top + s), (210, 30, 30)),
            ("ellipse", (x + 0.2 * s, top + 0.2 * s, x + 0.8 * s, top + 0.8 * s), (240, 240, 240)),
        ]
    if kind == 1:  # warning triangle
        return [("polygon", (x + s / 2, top, x + s, top + s, x, top + s), (240, 200, 30))]
    return [("rect", (x, top, x + s, top + 0.8 * s), (30, 80, 200))]


def sample_layout(
    rng: np.random.Generator, width: int, height: int
) -> tuple[dict[str, float], list[SceneObject]]:
    """-> (scene geometry, objects far to near). Pure numpy: used for rendering and for benchmark records."""
    W, H = width, height
    horizon = H * rng.uniform(0.36, 0.5)
    vp = W * rng.uniform(0.35, 0.65)
    road = W * rng.uniform(0.35, 0.7)  # half width of the road at the bottom row
    geo = {"horizon": horizon, "vp": vp, "road": road}
    near = rng.uniform()  # per image: how close objects come (drives the object-to-pixel ratio)
    n_ground = int(rng.integers(2, 16 + int(10 * (1 - near))))
    names = list(GROUND)
    probs = np.array([GROUND[n][0] for n in names])
    objs: list[SceneObject] = []
    for _ in range(n_ground):
        cat = names[rng.choice(len(names), p=probs / probs.sum())]
        f = 0.04 + 1.06 * rng.uniform() ** (2.8 - 2.4 * near)  # depth: 0 at the horizon, 1 at the bottom row
        yb = horizon + f * (H - horizon)
        unit = f * H
        half_road = road * f
        _, hu, wu = GROUND[cat]
        h, w = (
            hu * unit,
            wu
            * unit
            * (rng.uniform(1.6, 2.2) if cat in ("car", "truck", "bus") and rng.random() < 0.4 else 1.0),
        )
        if cat in ("pedestrian",):
            xc = vp + rng.choice([-1, 1]) * half_road * rng.uniform(0.9, 1.5)
        else:
            xc = vp + rng.uniform(-0.85, 0.85) * half_road
        if cat in ("car", "truck", "bus", "train"):
            parts = _vehicle(rng, cat, xc, yb, h, w)
        elif cat == "pedestrian":
            parts = _person(rng, xc, yb, h * rng.uniform(0.85, 1.1))
        elif cat == "rider":
            ride = "bicycle" if rng.random() < 0.5 else "motorcycle"
            bh, bw = GROUND[ride][1] * unit, GROUND[ride][2] * unit
            objs.append(SceneObject(ride, _two_wheeler(rng, ride, xc, yb, bh, bw), yb))
            parts = _person(rng, xc, yb - 0.55 * bh, 0.55 * h, seated=True)
            yb += 1e-3  # the rider is painted over its vehicle
        else:
            parts = _two_wheeler(rng, cat, xc, yb, h, w)
        objs.append(SceneObject(cat, parts, yb))
    for cat, n in (("traffic light", rng.integers(0, 5)), ("traffic sign", rng.integers(0, 5))):
        for _ in range(int(n)):
            f = 0.08 + 0.9 * rng.uniform() ** 2.0
            unit = f * H
            yb = horizon + f * (H - horizon)
            x = vp + rng.choice([-1, 1]) * road * f * rng.uniform(0.95, 1.3)
            top = yb - unit * rng.uniform(0.55, 0.8)
            pole = ("rect", (x + 0.01 * unit, top + 0.05 * unit, x + 0.025 * unit + 1, yb), (55, 55, 55))
            objs.append(SceneObject(cat, _elevated(rng, cat, x, top, unit), yb - 0.5, [pole]))
    objs.sort(key=lambda o: o.depth)  # far first: painted first, occluded by nearer ones
    return geo, objs


def _draw(draw: ImageDraw.ImageDraw, part: Part, fill: int | tuple[int, int, int]) -> None:
    kind, c, _ = part
    if kind == "rect":
        draw.rectangle(c, fill=fill)
    elif kind == "ellipse":
        draw.ellipse(c, fill=fill)
    elif kind == "polygon":
        draw.polygon(list(c), fill=fill)
    elif kind == "ring":
        draw.ellipse(c[:4], outline=fill, width=max(1, round(c[4])))
    elif kind == "line":
        draw.line(list(c[:-1]), fill=fill, width=max(1, round(c[-1])))


def _silhouette(parts: list[Part], width: int, height: int) -> np.ndarray:
    img = Image.new("1", (width, height), 0)
    d = ImageDraw.Draw(img)
    for p in parts:
        _draw(d, p, 1)
    return np.array(img, dtype=bool)


def _noise(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """Smooth value noise [H, W] in [0, 1]."""
    small = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    img = Image.fromarray(small).resize((width + 2 * cell, height + 2 * cell), Image.BILINEAR)
    return np.asarray(img)[cell : cell + height, cell : cell + width]


def _background(rng: np.random.Generator, width: int, height: int, geo: dict[str, float]) -> Image.Image:
    W, H, hz, vp, road = width, height, geo["horizon"], geo["vp"], geo["road"]
    y = np.arange(H, dtype=np.float32)[:, None, None] / H
    sky = (
        np.array([120, 170, 225], np.float32) * (1 - 0.4 * y)
        + np.array([210, 220, 230], np.float32) * 0.4 * y
    )
    img = np.broadcast_to(sky, (H, W, 3)).copy()
    ground = np.array([95, 95, 100], np.float32) * (0.8 + 0.4 * _noise(rng, W, H, 4))[..., None]
    img[int(hz) :] = ground[int(hz) :]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(canvas)
    x = -rng.uniform(0, 20)
    while x < W:  # buildings along the horizon, with windows
        bw = rng.uniform(0.06, 0.2) * W
        top = hz - rng.uniform(0.08, 0.45) * H
        col = _color(rng, [150, 120, 100], 50)
        d.rectangle((x, top, x + bw, hz), fill=col)
        step = max(3.0, 0.03 * H)
        for wy in np.arange(top + step / 2, hz - step, step * 1.6):
            for wx in np.arange(x + step / 2, x + bw - step, step * 1.4):
                d.rectangle((wx, wy, wx + step * 0.7, wy + step * 0.9), fill=_color(rng, [70, 80, 95], 30))
        x += bw + rng.uniform(0, 0.03) * W
    for _ in range(int(rng.integers(0, 6))):  # trees
        tx, s = rng.uniform(0, W), rng.uniform(0.05, 0.18) * H
        d.ellipse((tx - s, hz - 2.2 * s, tx + s, hz - 0.2 * s), fill=_color(rng, [50, 110, 45], 25))
    side = (150, 145, 140)
    d.polygon([(vp, hz), (vp - 1.5 * road, H), (-1, H), (-1, hz)], fill=side)
    d.polygon([(vp, hz), (vp + 1.5 * road, H), (W, H), (W, hz)], fill=side)
    d.polygon([(vp, hz), (vp - road, H), (vp + road, H)], fill=(85, 85, 90))
    for lane in (-0.33, 0.33):  # dashed lane markings towards the vanishing point
        for t0 in np.arange(0.05, 1.0, 0.12):
            ya, yb = hz + t0 * (H - hz), hz + (t0 + 0.05) * (H - hz)
            xa, xb = vp + lane * road * t0, vp + lane * road * (t0 + 0.05)
            d.line([(xa, ya), (xb, yb)], fill=(230, 230, 220), width=max(1, int(0.006 * W * (t0 + 0.1))))
    for _ in range(int(rng.integers(1, 5))):  # unlabelled poles: distractors
        px = rng.uniform(0, W)
        d.rectangle(
            (px, hz - rng.uniform(0.1, 0.35) * H, px + max(1, 0.006 * W), hz + 0.1 * H), fill=(60, 60, 60)
        )
    return canvas


def render_scene(
    rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, list[tuple[str, np.ndarray, bool, bool]]]:
    """-> (image [H, W, 3] uint8, [(category, visible mask [H, W] bool, occluded, truncated)] far to near)."""
    geo, objs = sample_layout(rng, width, height)
    sil = [_silhouette(o.parts, width, height) for o in objs]  # labelled pixels
    occ = [
        _silhouette(o.props, width, height) | s if o.props else s for o, s in zip(objs, sil)
    ]  # painted pixels
    keep = [True] * len(objs)
    changed = True
    while changed:  # drop hardly visible objects until none is dropped: then every mask is exact
        changed = False
        covered = np.zeros((height, width), bool)
        vis: list[np.ndarray] = [np.zeros(0)] * len(objs)
        for i in range(len(objs) - 1, -1, -1):  # near to far
            if not keep[i]:
                continue
            vis[i] = sil[i] & ~covered
            covered |= occ[i]
            n = int(vis[i].sum())
            if n < MIN_VISIBLE_PX or n < MIN_VISIBLE_FRACTION * max(1, int(sil[i].sum())):
                keep[i], changed = False, True
    canvas = _background(rng, width, height, geo)
    d = ImageDraw.Draw(canvas)
    out = []
    for o, s, v, k in zip(objs, sil, vis, keep):
        if not k:
            continue
        for p in o.props + o.parts:
            _draw(d, p, p[2])
        x0, y0, x1, y1 = o.extent()
        truncated = bool(x0 < 0 or y0 < 0 or x1 > width or y1 > height)
        out.append((o.category, v, bool(v.sum() < 0.9 * s.sum()), truncated))
    img = np.asarray(canvas, dtype=np.float32)
    img = img * rng.uniform(0.75, 1.15) + rng.normal(0, 4, img.shape)  # lighting and sensor noise
    return np.clip(img, 0, 255).astype(np.uint8), out
