"""Prompted segmentation of one image with SAM 2: embed once, then answer any number of prompts.

The API follows the official ``SAM2ImagePredictor`` (``set_image``, ``predict``) so code written
for it runs unchanged; the input side is the model's ``resolution``, so 512 px works without
patching feature sizes.
"""
from __future__ import annotations

import numpy as np
import torch

from supernet.modeling.sam2.model import Sam2


class Sam2Predictor:
    """Wraps a :class:`Sam2` for repeated prompting of one image."""

    def __init__(self, model: Sam2) -> None:
        self.model = model
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.features: dict | None = None
        self.original_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Embed an ``(H, W, 3)`` uint8 RGB image."""
        self.reset_image()
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=self.device).permute(2, 0, 1)[None]
        self.features = self.model.embed_images(self.model.preprocess(pixels))
        self.original_size = (image.shape[0], image.shape[1])

    @torch.no_grad()
    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output: bool = True,
                return_logits: bool = False, normalize_coords: bool = True):
        """Masks ``(M, H, W)`` (0/1 float32 as the official predictor's, or logits), IoU ``(M,)`` and low-res logits ``(M, R/4, R/4)`` as numpy.

        ``point_coords`` ``(N, 2)`` pixel ``(x, y)``, ``point_labels`` ``(N,)``, ``box`` ``(4,)`` XYXY, in
        the original image (``normalize_coords``) or already in the ``R x R`` frame; ``mask_input``
        ``(1, R/4, R/4)`` logits from an earlier call.
        """
        if self.features is None:
            raise RuntimeError("call set_image(...) before predict(...)")
        to_frame = (lambda c: self.model.transform_coords(c, self.original_size)) if normalize_coords else \
            (lambda c: c.float())
        points = boxes = masks = None
        if point_coords is not None:
            coords = to_frame(torch.as_tensor(point_coords, dtype=torch.float, device=self.device))
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
            points = (coords[None], labels[None]) if coords.ndim == 2 else (coords, labels)
        if box is not None:
            boxes = to_frame(torch.as_tensor(box, dtype=torch.float, device=self.device).reshape(-1, 2, 2))
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)
            masks = masks[None] if masks.ndim == 3 else masks
        low_res, iou = self.model.decode(self.features, points=points, boxes=boxes, masks=masks,
                                         multimask_output=multimask_output)
        full = self.model.postprocess_masks(low_res, self.original_size)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            full = full > self.model.mask_threshold
        return full[0].float().cpu().numpy(), iou[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()
