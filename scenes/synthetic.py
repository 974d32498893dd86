"""Synthetic scenes with exact ground truth, for training the reference model and for tests.

Each scene paints 3-7 objects of five shape families (ellipse, rectangle, triangle, star,
blob) with one of five textures (solid, stripes, checker, gradient, noise) over a textured
background. Later objects occlude earlier ones; each object's annotation is its *visible*
mask, and objects left with under 40% of their area (or 40 pixels) are dropped. Everything
is drawn from one ``numpy.random.Generator``, so a seed fixes the scene.

Speed: shapes and textures are computed only inside the object's bounding window (the
random draws stay those of the full frame), so a 256x256 scene takes a few milliseconds.
The sequence of draws is part of the contract: the packaged reference model and the
benchmarks name their data by seed, so a change here must keep every scene bit-identical.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from infra.fileio import atomic_write_bytes, atomic_write_text

SHAPES = ("ellipse", "rectangle", "triangle", "star", "blob")
TEXTURES = ("solid", "stripes", "checker", "gradient", "noise")
BACKGROUNDS = ("gradient", "noise", "stripes")
CATEGORIES = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
MIN_VISIBLE_FRACTION = 0.4
MIN_VISIBLE_PIXELS = 40
# How far (in units of the drawn radius) each analytic shape can reach from its centre.
_REACH = {"ellipse": 1.0, "rectangle": float(np.sqrt(2.0)), "blob": 1.75}

Window = tuple[slice, slice]  # (rows, columns) of a frame


@dataclass
class SyntheticScene:
    """One rendered scene.

    ``image`` (H, W, 3) uint8 RGB; ``masks`` visible, pairwise-disjoint (H, W) bool masks in
    painting order; ``categories`` their ids in :data:`CATEGORIES`; ``textures`` their
    texture kinds; ``background`` the background's texture kind; ``dropped`` how many painted
    objects were left out as nearly fully occluded.
    """

    image: np.ndarray
    masks: list[np.ndarray] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)
    textures: list[str] = field(default_factory=list)
    background: str = ""
    dropped: int = 0


def _full(h: int, w: int) -> Window:
    return slice(0, h), slice(0, w)


def _grid(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(yy, xx)``, float32 arrays of the window's shape, in frame pixels."""
    rows, cols = window
    return np.mgrid[rows, cols].astype(np.float32)


def _around(cx: float, cy: float, reach: float, h: int, w: int) -> Window:
    """The window holding every pixel within ``reach`` pixels of ``(cx, cy)``, one pixel spare."""
    x0, x1 = max(0, int(np.floor(cx - reach)) - 1), min(w, int(np.ceil(cx + reach)) + 2)
    y0, y1 = max(0, int(np.floor(cy - reach)) - 1), min(h, int(np.ceil(cy + reach)) + 2)
    return slice(y0, y1), slice(x0, x1)


def _bbox_window(mask: np.ndarray) -> Window:
    """The tight window around the True pixels of a non-empty (H, W) mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _polygon_mask(h: int, w: int, points: np.ndarray) -> np.ndarray:
    """(h, w) bool mask of the polygon with (N, 2) XY vertices in pixels."""
    canvas = Image.new("1", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.array(canvas, dtype=bool)


def shape_mask(rng: np.random.Generator, shape: str, h: int, w: int) -> np.ndarray:
    """A filled ``(h, w)`` bool mask of one object, with random centre, size and rotation.

    The centre lies in the middle 80% of the frame; the radius is 8-22% of the shorter side.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    side = min(h, w)
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    radius = rng.uniform(0.08, 0.22) * side
    angle = rng.uniform(0, np.pi)
    if shape in ("triangle", "star"):
        n = 3 if shape == "triangle" else int(rng.integers(5, 8))
        step = np.pi / n if shape == "star" else 2 * np.pi / n
        theta = angle + np.arange(2 * n if shape == "star" else n) * step
        r = np.full(theta.shape, radius)
        if shape == "star":
            r[1::2] *= rng.uniform(0.35, 0.55)
        return _polygon_mask(h, w, np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1))
    window = _around(cx, cy, _REACH[shape] * radius, h, w)
    yy, xx = _grid(window)
    mask = np.zeros((h, w), bool)
    if shape == "blob":
        theta = np.arctan2(yy - cy, xx - cx)
        r = np.full(theta.shape, 1.0, dtype=np.float32)
        for k in (2, 3, 5):
            r += rng.uniform(0.05, 0.25) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        mask[window] = np.hypot(xx - cx, yy - cy) <= radius * r
        return mask
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    a = radius
    b = radius * rng.uniform(0.4, 1.0) if shape == "ellipse" else radius * rng.uniform(0.3, 1.0)
    if shape == "ellipse":
        mask[window] = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    else:
        mask[window] = (np.abs(u) <= a) & (np.abs(v) <= b)
    return mask


def _projection(xx: np.ndarray, yy: np.ndarray, angle: float) -> np.ndarray:
    """Coordinate along direction ``angle`` (radians), float64, in pixels."""
    return xx * np.cos(angle) + yy * np.sin(angle)


def texture(rng: np.random.Generator, kind: str, h: int, w: int, window: Window | None = None) -> np.ndarray:
    """A ``(h, w, 3)`` float image in [0, 255] of the given texture kind, or its ``window`` crop.

    The random draws are those of the full frame whatever the window, so a crop equals the
    same crop of the full texture.
    """
    window = _full(h, w) if window is None else window
    yy, xx = _grid(window)
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = np.clip(c1 + rng.choice([-1, 1], 3) * rng.uniform(60, 140, 3), 0, 255).astype(np.float32)
    if kind == "solid":
        t = np.zeros(xx.shape, np.float32)
    elif kind == "stripes":
        period, angle = rng.uniform(4, 14), rng.uniform(0, np.pi)
        t = (np.sin(_projection(xx, yy, angle) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(4, 12)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        # A linear ramp is extreme at the frame's corners, so these are the full frame's min and max.
        corners = _projection(np.array([0, w - 1, 0, w - 1], np.float32),
                              np.array([0, 0, h - 1, h - 1], np.float32), angle)
        t = (_projection(xx, yy, angle) - corners.min()) / max(float(np.ptp(corners)), 1e-6)
    elif kind == "noise":
        t = rng.uniform(0, 1, (h, w))[window].astype(np.float32)
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    # Channel by channel: broadcasting over (or stacking along) a last axis of 3 runs numpy's
    # slowest inner loops; the values are the same.
    out = np.empty(t.shape + (3,), np.result_type(t, c1))
    for c in range(3):
        out[..., c] = c1[c] + t * (c2[c] - c1[c])
    return out


def draw_scene(rng: np.random.Generator, size: tuple[int, int] = (256, 256),
               num_objects: tuple[int, int] = (3, 7)) -> SyntheticScene:
    """One scene of ``size = (H, W)`` pixels with ``num_objects = (min, max)`` objects painted.

    Fewer objects may be annotated than painted: an object whose visible part is under
    :data:`MIN_VISIBLE_FRACTION` of its area or :data:`MIN_VISIBLE_PIXELS` is dropped
    (its visible pixels then belong to no mask).
    """
    h, w = size
    scene = SyntheticScene(image=np.empty((h, w, 3), np.uint8), background=str(rng.choice(BACKGROUNDS)))
    background = texture(rng, scene.background, h, w)
    canvas = (0.5 * background + 0.5 * rng.uniform(60, 200)).astype(np.float64, copy=False)
    painted: list[tuple[np.ndarray, int, str]] = []
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        shape = str(rng.choice(SHAPES))
        mask = shape_mask(rng, shape, h, w)
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        kind = str(rng.choice(TEXTURES))
        window = _bbox_window(mask)
        np.copyto(canvas[window], texture(rng, kind, h, w, window), where=mask[window][..., None])
        painted.append((mask, SHAPES.index(shape) + 1, kind))
    canvas += rng.normal(0, 4, canvas.shape)
    scene.image = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
    covered = np.zeros((h, w), bool)
    for mask, category, kind in reversed(painted):  # the last painted is on top
        visible = mask & ~covered
        covered |= mask
        if visible.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * mask.sum()):
            scene.masks.insert(0, visible)
            scene.categories.insert(0, category)
            scene.textures.insert(0, kind)
        else:
            scene.dropped += 1
    return scene


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (256, 256),
                 num_objects: tuple[int, int] = (3, 7)) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """One scene: ``image (H, W, 3)`` uint8, visible ``masks`` (disjoint bool ``(H, W)``), category ids."""
    scene = draw_scene(rng, size, num_objects)
    return scene.image, scene.masks, scene.categories


def iter_scenes(seed: int, n: int, size: int = 256) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """``n`` scenes as ``(image, masks, boxes XYXY (K, 4))`` without touching the disk."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        image, masks, _ = render_scene(rng, (size, size))
        yield image, masks, np.array([mask_box_xyxy(m) for m in masks], dtype=float).reshape(-1, 4)


def mask_box_xyxy(mask: np.ndarray) -> list[float]:
    """Tight box ``[x0, y0, x1, y1]`` in pixels (inclusive max coordinates) of a non-empty mask."""
    rows, cols = _bbox_window(mask)
    return [float(cols.start), float(rows.start), float(cols.stop - 1), float(rows.stop - 1)]


def coco_annotation(mask: np.ndarray, category_id: int, image_id: int, ann_id: int) -> dict:
    """A COCO instance annotation of one (H, W) bool mask: RLE segmentation, area, XYWH bbox."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x0, y0, x1, y1 = mask_box_xyxy(mask)
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()), "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
    }


def write_coco_dataset(out_dir: str | Path, num_images: int, size: int = 256, seed: int = 0,
                       split: str = "train") -> Path:
    """Write ``out_dir/<split>/*.png`` and ``out_dir/annotations/instances_<split>.json`` (COCO, RLE masks).

    Image ids run 1..num_images in file-name order; categories are the shape families.
    Every file is written atomically. Returns the annotation file's path.
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, masks, cats = render_scene(rng, (size, size))
        name = f"{split}_{i:05d}.png"
        atomic_write_bytes(out / split / name, _png_bytes(image))
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for mask, cat in zip(masks, cats):
            annotations.append(coco_annotation(mask, cat, i + 1, len(annotations) + 1))
    (out / split).mkdir(parents=True, exist_ok=True)  # also when num_images is 0
    doc = {"info": {"description": f"samnas synthetic scenes, seed {seed}"}, "images": images,
           "annotations": annotations, "categories": CATEGORIES}
    path = out / "annotations" / f"instances_{split}.json"
    atomic_write_text(path, json.dumps(doc))
    return path


def _png_bytes(image: np.ndarray) -> bytes:
    """PNG file contents of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
