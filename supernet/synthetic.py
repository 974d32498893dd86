"""Synthetic scenes with exact ground truth, for training the reference model and for tests.

Each scene paints 3-7 objects of five shape families (ellipse, rectangle, triangle, star,
blob) with one of five textures (solid, stripes, checker, gradient, noise) over a textured
background. Later objects occlude earlier ones; each object's annotation is its *visible*
mask, and objects left with under 40% of their area (or 40 pixels) are dropped. Everything
is drawn from one ``numpy.random.Generator``, so a seed fixes the scene.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .fileio import atomic_write_bytes, atomic_write_text

SHAPES = ("ellipse", "rectangle", "triangle", "star", "blob")
TEXTURES = ("solid", "stripes", "checker", "gradient", "noise")
CATEGORIES = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
MIN_VISIBLE_FRACTION = 0.4
MIN_VISIBLE_PIXELS = 40


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _polygon_mask(h: int, w: int, points: np.ndarray) -> np.ndarray:
    canvas = Image.new("1", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.array(canvas, dtype=bool)


def shape_mask(rng: np.random.Generator, shape: str, h: int, w: int) -> np.ndarray:
    """A filled ``(h, w)`` bool mask of one object, with random centre, size and rotation."""
    yy, xx = _grid(h, w)
    side = min(h, w)
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    radius = rng.uniform(0.08, 0.22) * side
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    if shape == "ellipse":
        a, b = radius, radius * rng.uniform(0.4, 1.0)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if shape == "rectangle":
        a, b = radius, radius * rng.uniform(0.3, 1.0)
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if shape in ("triangle", "star"):
        n = 3 if shape == "triangle" else int(rng.integers(5, 8))
        theta = angle + np.arange(2 * n if shape == "star" else n) * (np.pi / n if shape == "star" else 2 * np.pi / n)
        r = np.full(theta.shape, radius)
        if shape == "star":
            r[1::2] *= rng.uniform(0.35, 0.55)
        return _polygon_mask(h, w, np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1))
    if shape == "blob":
        theta = np.arctan2(yy - cy, xx - cx)
        r = np.full(theta.shape, 1.0, dtype=np.float32)
        for k in (2, 3, 5):
            r += rng.uniform(0.05, 0.25) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        return np.hypot(xx - cx, yy - cy) <= radius * r
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """An ``(h, w, 3)`` float image in [0, 255] of the given texture kind."""
    yy, xx = _grid(h, w)
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = np.clip(c1 + rng.choice([-1, 1], 3) * rng.uniform(60, 140, 3), 0, 255).astype(np.float32)
    if kind == "solid":
        t = np.zeros((h, w), np.float32)
    elif kind == "stripes":
        period, angle = rng.uniform(4, 14), rng.uniform(0, np.pi)
        t = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(4, 12)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        g = xx * np.cos(angle) + yy * np.sin(angle)
        t = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    elif kind == "noise":
        t = rng.uniform(0, 1, (h, w)).astype(np.float32)
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    return c1 + t[..., None] * (c2 - c1)


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (256, 256),
                 num_objects: tuple[int, int] = (3, 7)) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """One scene: ``image (H, W, 3)`` uint8, visible ``masks`` (disjoint bool ``(H, W)``), category ids."""
    h, w = size
    background = texture(rng, str(rng.choice(["gradient", "noise", "stripes"])), h, w)
    image = 0.5 * background + 0.5 * rng.uniform(60, 200)
    full_masks, categories = [], []
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        shape = str(rng.choice(SHAPES))
        mask = shape_mask(rng, shape, h, w)
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        image = np.where(mask[..., None], texture(rng, str(rng.choice(TEXTURES)), h, w), image)
        full_masks.append(mask)
        categories.append(SHAPES.index(shape) + 1)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    visible, kept_categories = [], []
    covered = np.zeros((h, w), bool)
    for mask, cat in reversed(list(zip(full_masks, categories))):  # the last painted is on top
        vis = mask & ~covered
        covered |= mask
        if vis.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * mask.sum()):
            visible.append(vis)
            kept_categories.append(cat)
    return image, visible[::-1], kept_categories[::-1]


def iter_scenes(seed: int, n: int, size: int = 256) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """``n`` scenes as ``(image, masks, boxes XYXY (K, 4))`` without touching the disk."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        image, masks, _ = render_scene(rng, (size, size))
        yield image, masks, np.array([mask_box_xyxy(m) for m in masks], dtype=float).reshape(-1, 4)


def mask_box_xyxy(mask: np.ndarray) -> list[float]:
    """Tight box ``[x0, y0, x1, y1]`` in pixels (inclusive max coordinates)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def write_coco_dataset(out_dir: str | Path, num_images: int, size: int = 256, seed: int = 0,
                       split: str = "train") -> Path:
    """Write ``out_dir/<split>/*.png`` and ``out_dir/annotations/instances_<split>.json`` (COCO, RLE masks).

    Returns the annotation file's path.
    """
    from pycocotools import mask as mask_utils

    out = Path(out_dir)
    (out / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, masks, cats = render_scene(rng, (size, size))
        name = f"{split}_{i:05d}.png"
        buf = _png_bytes(image)
        atomic_write_bytes(out / split / name, buf)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for mask, cat in zip(masks, cats):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x0, y0, x1, y1 = mask_box_xyxy(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat, "iscrowd": 0,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()), "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
            })
    doc = {"info": {"description": f"samnas synthetic scenes, seed {seed}"}, "images": images,
           "annotations": annotations, "categories": CATEGORIES}
    path = out / "annotations" / f"instances_{split}.json"
    atomic_write_text(path, json.dumps(doc))
    return path


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
