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

from infra.errors import UserError


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
    """Generated scenes (``scenes.synthetic``) of ``size`` pixels with ground-truth masks."""

    def __init__(self, seed: int = 0, size: int = 256, num_objects: tuple[int, int] = (3, 7)) -> None:
        self.seed, self.size, self.num_objects = seed, size, num_objects

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        from scenes.synthetic import render_scene

        rng = step_rng(self.seed, step, rank)
        out = []
        for _ in range(count):
            image, masks, _ = render_scene(rng, size=(self.size, self.size), num_objects=self.num_objects)
            out.append(Scene(image, [m for m in masks if m.any()]))
        return out


class FolderScenes:
    """Images from a folder, with masks from a COCO instances or panoptic file when given (crowd skipped).

    Images are read as they are, one by one, without augmentation (see :class:`CocoScenes`
    for augmented real photos held in memory).
    """

    def __init__(self, images_dir: str | Path, annotations: str | Path | None = None, seed: int = 0) -> None:
        from scenes.images import list_images

        self.seed = seed
        self.paths = list_images(images_dir)
        self.coco = None
        if annotations is not None:
            self.coco, self.by_name = _load_coco(annotations)
            self.paths = [p for p in self.paths if p.name in self.by_name]
            if not self.paths:
                raise UserError(f"{annotations}: no annotated image of it is in {images_dir}")

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        from scenes.images import load_image

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
                masks = instance_masks(self.coco, self.by_name[path.name], image.shape[:2])
            out.append(Scene(image, masks))
        return out


def instance_masks(coco, image_id, size: tuple[int, int]) -> list[np.ndarray]:
    """The non-crowd, non-empty ``(H, W)`` bool masks of one image whose size matches ``size``."""
    import warnings

    with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        masks = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))]
    return [m for m in masks if m.shape == tuple(size) and m.any()]


@dataclass(frozen=True)
class Augment:
    """Augmentation of one real photo per draw (sizes relative to the image, factors multiplicative).

    A random resized crop (area share ``crop_scale``, aspect ratio ``crop_ratio``, taken with
    probability ``crop_prob``; otherwise the whole image), a horizontal flip with probability
    ``flip_prob``, and colour jitter: brightness, contrast and saturation each scaled by a
    factor drawn uniformly from ``1 +- jitter``.
    """

    crop_prob: float = 0.7
    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.333)
    flip_prob: float = 0.5
    jitter: float = 0.3


class CocoScenes:
    """Annotated real photos (COCO instances or panoptic), held in memory and augmented per draw.

    ``datasets`` is a list of ``(images_dir, annotations_json)`` pairs; every non-crowd segment
    is a training mask (panoptic stuff included, as SAM trains on every region). Images are
    stored with their longest side at most ``2 * size`` and each drawn scene comes out with its
    longest side ``size`` pixels (the model input side), after :class:`Augment`.
    """

    def __init__(self, datasets: list[tuple[str | Path, str | Path]], seed: int = 0, size: int = 256,
                 augment: Augment | None = Augment(), min_mask_pixels: int = 4, progress: bool = False) -> None:
        from tqdm import tqdm

        from scenes.images import load_image

        self.seed, self.size, self.augment, self.min_mask_pixels = seed, size, augment, min_mask_pixels
        self.images: list[np.ndarray] = []  # (h, w, 3) uint8
        self.masks: list[np.ndarray] = []  # (k, h, w) bool
        self.names: list[str] = []
        for images_dir, annotations_file in datasets:
            coco, by_name = _load_coco(annotations_file)
            folder = Path(images_dir)
            if not folder.is_dir():
                raise UserError(f"{folder}: image folder not found (for {annotations_file})")
            names = sorted(n for n in by_name if (folder / n).is_file())
            if not names:
                raise UserError(f"{annotations_file}: none of its images is in {folder}")
            for name in tqdm(names, desc=f"loading {folder.name}", unit="image", disable=not progress):
                try:
                    image = load_image(folder / name)
                except UserError:
                    continue
                masks = instance_masks(coco, by_name[name], image.shape[:2])
                if not masks:
                    continue
                image, stacked = _shrink(image, np.stack(masks), 2 * size)
                self.images.append(image)
                self.masks.append(stacked)
                self.names.append(f"{folder.name}/{name}")
        if not self.images:
            raise UserError(f"no annotated image could be read from {[str(d) for d, _ in datasets]}")

    def __len__(self) -> int:
        return len(self.images)

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        rng = step_rng(self.seed, step, rank)
        out = []
        while len(out) < count:
            i = int(rng.integers(len(self.images)))
            scene = self.draw(self.images[i], self.masks[i], rng)
            if scene.masks:
                out.append(scene)
        return out

    def draw(self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> Scene:
        """One augmented view of ``image`` and its ``masks``, longest side ``size`` pixels."""
        import torch
        import torch.nn.functional as F

        aug = self.augment
        h, w = image.shape[:2]
        y0, x0, ch, cw = 0, 0, h, w
        if aug is not None and rng.random() < aug.crop_prob:
            area = h * w * rng.uniform(*aug.crop_scale)
            ratio = float(np.exp(rng.uniform(np.log(aug.crop_ratio[0]), np.log(aug.crop_ratio[1]))))
            cw = int(min(w, max(8, round(np.sqrt(area * ratio)))))
            ch = int(min(h, max(8, round(np.sqrt(area / ratio)))))
            y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        img = torch.from_numpy(image[y0:y0 + ch, x0:x0 + cw]).permute(2, 0, 1).float()
        m = torch.from_numpy(masks[:, y0:y0 + ch, x0:x0 + cw]).float()
        if aug is not None and rng.random() < aug.flip_prob:
            img, m = img.flip(-1), m.flip(-1)
        scale = self.size / max(ch, cw)
        out_hw = (max(1, int(ch * scale + 0.5)), max(1, int(cw * scale + 0.5)))
        img = F.interpolate(img[None], out_hw, mode="bilinear", align_corners=False, antialias=scale < 1)[0]
        m = F.interpolate(m[None], out_hw, mode="bilinear", align_corners=False)[0] > 0.5
        if aug is not None and aug.jitter:
            img = _colour_jitter(img, rng, aug.jitter)
        keep = m.flatten(1).sum(1) >= self.min_mask_pixels
        pixels = img.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return Scene(pixels, list(m[keep].numpy()))


def _shrink(image: np.ndarray, masks: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Downscale an image ``(H, W, 3)`` and its masks ``(K, H, W)`` so the longest side is at most ``long_side``."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image, masks
    scale = long_side / max(h, w)
    hw = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
    img = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, hw, mode="bilinear", align_corners=False, antialias=True)[0]
    m = F.interpolate(torch.from_numpy(masks)[None].float(), hw, mode="bilinear", align_corners=False)[0] > 0.5
    small = img.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return small, m.numpy()


def _colour_jitter(img, rng: np.random.Generator, amount: float):
    """Brightness, contrast and saturation of a ``(3, H, W)`` float image in [0, 255], each scaled by ``1 +- amount``."""
    b, c, s = (float(rng.uniform(1 - amount, 1 + amount)) for _ in range(3))
    img = img * b
    img = (img - img.mean()) * c + img.mean()
    gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    return (img - gray) * s + gray


class MixedScenes:
    """Scenes drawn from several sources: each scene comes from source ``i`` with probability ``weights[i]``."""

    def __init__(self, sources: list[SceneSource], weights: list[float], seed: int = 0) -> None:
        if len(sources) != len(weights) or not sources or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("MixedScenes needs one non-negative weight per source, not all zero")
        self.sources, self.seed = sources, seed
        self.weights = np.asarray(weights, dtype=float) / sum(weights)

    def scenes(self, step: int, rank: int, count: int) -> list[Scene]:
        rng = np.random.default_rng([self.seed, step, rank, 7919])
        counts = rng.multinomial(count, self.weights)
        out = []
        for source, n in zip(self.sources, counts):
            if n:
                out.extend(source.scenes(step, rank, int(n)))
        return out


def _load_coco(path: str | Path):
    """``(COCO index, {file name: image id})`` of an instances or panoptic file."""
    from scenes.annotations import load_coco

    coco = load_coco(path)
    return coco, {img["file_name"]: img["id"] for img in coco.dataset["images"]}
