"""Training data as *scenes*: an RGB image and the binary masks of its objects.

A source is deterministic per (step, rank): ``scenes(step, rank, n)`` draws from a
generator seeded by ``(seed, step, rank)``, so a resumed run sees exactly the batches it
would have seen, and each data-parallel rank sees its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError


@dataclass
class Scene:
    """``image (H, W, 3)`` uint8 RGB; ``masks`` a list of ``(H, W)`` bool (may be empty: unlabelled)."""

    image: np.ndarray
    masks: list[np.ndarray]


class SceneSource(Protocol):
    def scenes(self, step: int, rank: int, count: int) -> list[Scene]: ...


def step_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank])


class SyntheticScenes:
    """Generated scenes (``supernet.synthetic``) of ``size`` pixels with ground-truth masks."""

    def __init__(self, seed: int = 0, size: int = 256, num_objects: tuple[int, int] = (3, 7)) -> None:
        self.seed, self.size, self.num_objects = seed, size, num_objects

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        from .synthetic import render_scene

        rng = step_rng(self.seed, step, rank)
        out = []
        for _ in range(count):
            image, masks, _ = render_scene(rng, size=(self.size, self.size), num_objects=self.num_objects)
            out.append(Scene(image, [m for m in masks if m.any()]))
        return out


class FolderScenes:
    """Images from a folder, with masks from a COCO instances file when given (crowd skipped)."""

    def __init__(self, images_dir: str | Path, annotations: str | Path | None = None, seed: int = 0) -> None:
        from .images import list_images

        self.seed = seed
        self.paths = list_images(images_dir)
        self.coco = None
        if annotations is not None:
            self.coco, self.by_name = _load_coco(annotations)
            self.paths = [p for p in self.paths if p.name in self.by_name]
            if not self.paths:
                raise UserError(f"{annotations}: no annotated image of it is in {images_dir}")

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        from .images import load_image

        rng = step_rng(self.seed, step, rank)
        out = []
        while len(out) < count:
            path = self.paths[int(rng.integers(len(self.paths)))]
            try:
                image = load_image(path)
            except UserError:
                continue  # unreadable files are skipped; the source keeps drawing
            masks = []
            if self.coco is not None:
                ann_ids = self.coco.getAnnIds(imgIds=self.by_name[path.name], iscrowd=False)
                masks = [self.coco.annToMask(a).astype(bool) for a in self.coco.loadAnns(ann_ids)]
                masks = [m for m in masks if m.shape == image.shape[:2] and m.any()]
            out.append(Scene(image, masks))
        return out


def _load_coco(path: str | Path):
    import contextlib
    import io

    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: annotations file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except Exception as exc:
        raise UserError(f"{path}: not a COCO instances file ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(coco.dataset.get("images"), list) or not isinstance(coco.dataset.get("annotations"), list):
        raise UserError(f"{path}: not a COCO instances file (expected 'images' and 'annotations' lists)")
    return coco, {img["file_name"]: img["id"] for img in coco.dataset.get("images", [])}
