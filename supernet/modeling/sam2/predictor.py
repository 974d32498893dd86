"""Prompted segmentation of one image with SAM 2: embed once, then answer any number of prompts.

The API follows the official ``SAM2ImagePredictor`` (``set_image``, ``predict``) so code written
for it runs unchanged; the input side is the model's ``resolution``, so 512 px works without
patching feature sizes.
"""
from __future__ import annotations

import numpy as np
import torch

from supernet.modeling.sam2.model import Sam2


class SquareFrame:
    """Prompt coordinates into SAM 2's ``R x R`` input frame, numpy in and out: the ``transform`` of
    :class:`Sam2Predictor`, answering as SAM's ``ResizeLongestSide`` does (``apply_coords``, ``apply_boxes``)."""

    def __init__(self, model: Sam2) -> None:
        self.model = model

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """``(..., 2)`` pixel ``(x, y)`` of an ``(H, W)`` image -> the same points in the input frame."""
        return self.model.transform_coords(torch.as_tensor(np.asarray(coords)), original_size).numpy()

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """``(..., 4)`` XYXY pixel boxes -> the input frame."""
        boxes = np.asarray(boxes)
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(boxes.shape)


class Sam2Predictor:
    """Wraps a :class:`Sam2` for repeated prompting of one image.

    Besides the official API it answers as SAM's ``SamPredictor`` does where samnas's quality
    evaluators and segment-everything need it (``transform``, ``input_size``, ``predict_torch``,
    ``predict_low_res``, ``upscale_logits``, ``get_image_embedding``), so they run either family
    through its own predictor path.
    """

    def __init__(self, model: Sam2) -> None:
        self.model = model
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def transform(self) -> SquareFrame:
        """Prompt coordinates into the model's input frame."""
        return SquareFrame(self.model)

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    def reset_image(self) -> None:
        self.features: dict | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None  # (R, R): SAM 2 resizes the whole image to the square

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding ``(1, C, R/16, R/16)`` (``no_mem_embed`` added, as the decoder reads it)."""
        self._require_image()
        return self.features["image_embed"]

    def _require_image(self) -> None:
        if self.features is None:
            raise RuntimeError("call set_image(...) before predict(...)")

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Embed an ``(H, W, 3)`` uint8 RGB image."""
        self.reset_image()
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=self.device).permute(2, 0, 1)[None]
        self.features = self.model.embed_images(self.model.preprocess(pixels))
        self.original_size = (image.shape[0], image.shape[1])
        self.input_size = (self.model.resolution, self.model.resolution)

    @torch.no_grad()
    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output: bool = True,
                return_logits: bool = False, normalize_coords: bool = True):
        """Masks ``(M, H, W)`` (0/1 float32 as the official predictor's, or logits), IoU ``(M,)`` and low-res logits ``(M, R/4, R/4)`` as numpy.

        ``point_coords`` ``(N, 2)`` pixel ``(x, y)``, ``point_labels`` ``(N,)``, ``box`` ``(4,)`` XYXY, in
        the original image (``normalize_coords``) or already in the ``R x R`` frame; ``mask_input``
        ``(1, R/4, R/4)`` logits from an earlier call.
        """
        self._require_image()
        to_frame = (lambda c: self.model.transform_coords(c, self.original_size)) if normalize_coords else \
            (lambda c: c.float())
        coords = labels = boxes = masks = None
        if point_coords is not None:
            coords = to_frame(torch.as_tensor(point_coords, dtype=torch.float, device=self.device))
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
            coords, labels = (coords[None], labels[None]) if coords.ndim == 2 else (coords, labels)
        if box is not None:
            boxes = to_frame(torch.as_tensor(box, dtype=torch.float, device=self.device).reshape(-1, 2, 2))
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)
            masks = masks[None] if masks.ndim == 3 else masks
        full, iou, low_res = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits=True)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            full = full > self.model.mask_threshold
        return full[0].float().cpu().numpy(), iou[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output: bool = True,
                      return_logits: bool = False):
        """Batched prompts already in the input frame, as ``SamPredictor.predict_torch``.

        ``point_coords (B, N, 2)``, ``point_labels (B, N)``, ``boxes (B, 4)`` or ``(B, 2, 2)`` XYXY,
        ``mask_input (B, 1, R/4, R/4)``. Returns masks ``(B, M, H, W)`` at the original size (bool unless
        ``return_logits``), IoU ``(B, M)`` and the low-res logits ``(B, M, R/4, R/4)``.
        """
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        low_res, iou = self.model.decode(self.features, points=points, boxes=boxes, masks=mask_input,
                                         multimask_output=multimask_output)
        masks = self.upscale_logits(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    @torch.no_grad()
    def predict_low_res(self, point_coords, point_labels, multimask_output: bool = True):
        """:meth:`predict_torch` of points without the upscaling: ``(low_res_logits (B, M, R/4, R/4), iou (B, M))``,
        the logits unclamped (those ``SAM2ImagePredictor`` upscales); segment-everything upscales only the
        candidates it keeps (:meth:`upscale_logits`)."""
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        return self.model.decode(self.features, points=points, multimask_output=multimask_output)

    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, int],
                       original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits ``(B, M, R/4, R/4)`` -> logits at ``original_size`` ``(B, M, H, W)``: SAM 2 resizes
        straight from the low-res grid (``Sam2.postprocess_masks``); ``input_size`` is always ``(R, R)``
        (the whole square input), taken for the same call as :class:`SamPredictor`'s."""
        return self.model.postprocess_masks(low_res, original_size)
