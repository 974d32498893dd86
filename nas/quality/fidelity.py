"""Fidelity to the full model on unlabelled images: works with any checkpoint, needs no labels.

For each image the full model (the supernet's full config) is run once, when the evaluator
is built: its image embedding, and its masks for ``prompts_per_image`` single positive
points drawn uniformly over the image (seeded per image). A subnet is then compared with it:

- ``embedding_cosine``: the cosine similarity over channels at each grid cell, averaged over
  the grid and the images (1 = same direction everywhere);
- ``embedding_mse``: the mean squared difference of all embedding values;
- ``mask_iou``: for each point prompt, the IoU between the full model's best mask (highest
  predicted IoU of the multimask outputs) and the subnet's best mask chosen the same way,
  both at the original image size; averaged over all prompts of all images.

SAM 2 runs the same way through its own predictor path (``Sam2Predictor``: prompts in its
square input frame, masks at the original size); its embedding is the one the decoder reads
(``no_mem_embed`` added).

A subnet at a lower resolution has a smaller embedding grid (``resolution / 16`` cells a
side). Because every resolution resizes the image's longest side to the input side and
pads the same fraction of the square (SAM 2: resizes the whole image to the square), grid
cells line up proportionally: the subnet's
embedding is resized to the full grid with bilinear interpolation (``align_corners=False``)
before both distances, and the whole grid (padding cells included) is compared.

``score`` is the mean mask IoU: it measures what a user of the masks sees, at any
resolution, and lies in [0, 1]; the embedding distances are logged as metrics only.
``num_items`` is the number of images scored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from infra.errors import UserError
from scenes.images import read_images
from supernet.modeling.predictor import SamPredictor, predictor_for
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2
from supernet.modeling.sam2.predictor import Sam2Predictor

from .base import Evaluator, QualityResult, full_model, mask_iou


@dataclass
class _Reference:
    """One image and the full model's outputs on it."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    points: np.ndarray  # (P, 2) float (x, y) in original-image pixels
    embedding: torch.Tensor  # (1, C, g, g) full model's image embedding
    masks: torch.Tensor  # (P, H, W) bool, full model's best mask per point


def sample_points(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
    """``count`` points ``(x, y)`` uniform over an ``height x width`` image -> ``(count, 2)`` float pixels."""
    return np.stack([rng.uniform(0, width, count), rng.uniform(0, height, count)], axis=1)


def point_masks(predictor: SamPredictor | Sam2Predictor, points: np.ndarray) -> torch.Tensor:
    """Best mask (highest predicted IoU of the multimask outputs) per single positive point.

    ``points (P, 2)`` in original-image pixels -> ``(P, H, W)`` bool at the original size. The best output is
    picked on the low-res logits and only it is upscaled: the same masks as upscaling all three and picking
    after (upscaling is per channel), at a third of the cost that dominates this evaluator on a photo.
    """
    coords = predictor.transform.apply_coords(points, predictor.original_size)
    coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None, :]
    labels_t = torch.ones(coords_t.shape[:2], dtype=torch.int, device=predictor.device)
    low_res, iou = predictor.predict_low_res(coords_t, labels_t, multimask_output=True)
    best = low_res[torch.arange(len(low_res), device=low_res.device), iou.argmax(dim=1)][:, None]
    return predictor.upscale_logits(best, predictor.input_size, predictor.original_size)[:, 0] > predictor.model.mask_threshold


def embedding_distances(embedding: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """``(cosine, mse)`` between embeddings ``(1, C, h, w)`` and ``(1, C, g, g)``.

    The first is resized bilinearly to the reference grid when the grids differ.
    """
    if embedding.shape[-2:] != reference.shape[-2:]:
        embedding = F.interpolate(embedding, reference.shape[-2:], mode="bilinear", align_corners=False)
    cosine = F.cosine_similarity(embedding, reference, dim=1).clamp(-1.0, 1.0).mean()
    mse = (embedding - reference).pow(2).mean()
    return float(cosine), float(mse)


# Point prompts per image by default. Each prompt's IoU is close to all or nothing (a point picks a part or the
# whole), so the mean over few prompts carries noise of its own per subnet: on sam_micro and 6 coco128 photos, two
# seeded prompt sets scored 40 subnets with a correlation of 0.90 at 8 prompts (noise sd 0.023 per score, a third
# of the subnets' own spread) and 0.976 at 32 (sd 0.011). A search keeps the subnets whose noise happened to be
# high, so at 8 prompts its front is partly luck (docs/decisions.md, issue 28).
DEFAULT_PROMPTS = 32


class FidelityEvaluator(Evaluator):
    """Agreement of a subnet with the full model on unlabelled images (see the module docstring).

    ``images``: a folder, or a sequence of image paths and/or ``(H, W, 3)`` uint8 arrays.
    Unreadable files are skipped and named in ``skipped``; at most ``max_images`` readable
    images are used.
    """

    name = "fidelity"

    def __init__(self, model: Sam | Sam2, images, prompts_per_image: int = DEFAULT_PROMPTS, seed: int = 0,
                 max_images: int | None = None) -> None:
        super().__init__()
        if prompts_per_image < 1:
            raise UserError(f"prompts_per_image must be at least 1, got {prompts_per_image}")
        self.prompts_per_image, self.seed = prompts_per_image, seed
        self._images = read_images(images, self.skip, max_images)
        if not self._images:
            raise UserError(f"fidelity evaluator: no readable image among the {len(self.skipped)} given")
        self.references: list[_Reference] = []
        self.prepare(model)

    def prepare(self, model: Sam | Sam2) -> None:
        """Run the full model once per image: embeddings, seeded points and reference masks."""
        self.references = []
        predictor = predictor_for(model)
        with torch.inference_mode(), full_model(model):
            for index, (name, image) in enumerate(self._images):
                rng = np.random.default_rng([self.seed, index])
                points = sample_points(rng, image.shape[0], image.shape[1], self.prompts_per_image)
                predictor.set_image(image)
                masks = point_masks(predictor, points)
                self.references.append(_Reference(name, image, points, predictor.get_image_embedding(), masks))

    def measure(self, model: Sam | Sam2) -> QualityResult:
        predictor = predictor_for(model)
        cosines, mses, ious = [], [], []
        for ref in self.references:
            predictor.set_image(ref.image)
            cosine, mse = embedding_distances(predictor.get_image_embedding(), ref.embedding)
            cosines.append(cosine)
            mses.append(mse)
            ious.append(mask_iou(point_masks(predictor, ref.points), ref.masks))
        iou = float(torch.cat(ious).mean())
        metrics = {"mask_iou": iou, "embedding_cosine": float(np.mean(cosines)), "embedding_mse": float(np.mean(mses))}
        return self.result(iou, metrics, len(self.references))


__all__ = ["FidelityEvaluator", "embedding_distances", "point_masks", "sample_points"]
