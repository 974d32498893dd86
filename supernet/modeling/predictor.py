"""Prompted segmentation of one image: embed once, then answer any number of prompts.

The API follows the official ``SamPredictor`` so code written for it runs unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2, feature_tuple
from supernet.modeling.sam2.predictor import Sam2Predictor
from supernet.modeling.transforms import ResizeLongestSide


def image_to_model_input(model: Sam | Sam2, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(H, W, 3)`` uint8 RGB -> the normalised, padded ``(1, 3, R, R)`` encoder input and the resized ``(h, w)``.

    SAM 2 resizes the whole image to ``R x R`` (no padding), so its ``(h, w)`` is ``(R, R)``.
    """
    if isinstance(model, Sam2):
        pixels = torch.as_tensor(np.ascontiguousarray(image), device=model.device).permute(2, 0, 1)[None]
        return model.preprocess(pixels), (model.resolution, model.resolution)
    resized = ResizeLongestSide(model.resolution).apply_image(np.ascontiguousarray(image))
    tensor = torch.as_tensor(resized, device=model.device).permute(2, 0, 1).contiguous()[None].float()
    return model.preprocess(tensor), (resized.shape[0], resized.shape[1])


def decoder_inputs(model: Sam | Sam2, images: torch.Tensor) -> list[torch.Tensor]:
    """What the mask decoder reads of preprocessed ``(B, 3, R, R)`` images: SAM's embedding
    ``[(B, C, R/16, R/16)]``, or SAM 2's embedding and its two high-resolution maps
    ``[(B, C, R/16, R/16), (B, C/8, R/4, R/4), (B, C/4, R/8, R/8)]``."""
    if isinstance(model, Sam2):
        return list(feature_tuple(model.embed_images(images)))
    return [model.embed_images(images)]


def decode_parts(model: Sam | Sam2, parts: list[torch.Tensor], **prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.decode`` of :func:`decoder_inputs` ``parts`` (any rows of them) and ``prompts`` (``points``,
    ``boxes``, ``masks``, ``multimask_output``) -> low-res mask logits and IoU predictions."""
    if isinstance(model, Sam2):
        return model.decode({"image_embed": parts[0], "high_res_feats": list(parts[1:])}, **prompts)
    return model.decode(parts[0], **prompts)


class SamPredictor:
    """Wraps a :class:`Sam` (or an extracted subnet) for repeated prompting of one image."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.reset_image()

    @property
    def transform(self) -> ResizeLongestSide:
        """Resizer to the model's active input resolution."""
        return ResizeLongestSide(self.model.resolution)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an ``(H, W, 3)`` uint8 image in ``image_format`` ('RGB' or 'BGR')."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3, got shape {image.shape}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(tensor, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Embed an already resized ``(1, 3, h, w)`` image whose longest side is the model resolution."""
        if transformed_image.ndim != 4 or transformed_image.shape[1] != 3 or \
                max(transformed_image.shape[2:]) != self.model.resolution:
            raise ValueError(f"set_torch_image needs 1x3xHxW with a longest side of {self.model.resolution}")
        self.reset_image()
        self.original_size = tuple(int(v) for v in original_image_size)
        self.input_size = tuple(int(v) for v in transformed_image.shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image.float()))
        self.is_image_set = True

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True, return_logits: bool = False):
        """Prompts in original-image pixels -> ``(masks (M, H, W), iou (M,), low_res_logits (M, 4h, 4w))`` numpy."""
        self._require_image()
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = self.transform.apply_coords(point_coords, self.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)[None]
        if box is not None:
            box_t = torch.as_tensor(self.transform.apply_boxes(box, self.original_size), dtype=torch.float,
                                    device=self.device)[None]
            box_t = box_t.reshape(-1, 4)
        if mask_input is not None:
            mask_t = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)[None]
        masks, iou, low_res = self.predict_torch(coords_t, labels_t, box_t, mask_t, multimask_output, return_logits)
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None,
                      multimask_output: bool = True, return_logits: bool = False):
        """Batched prompts already in the model input frame.

        ``point_coords (B, N, 2)``, ``point_labels (B, N)``, ``boxes (B, 4)``, ``mask_input (B, 1, 4h, 4w)``.
        Returns masks ``(B, M, H, W)`` (bool unless ``return_logits``), IoU ``(B, M)``, low-res logits.
        """
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        low_res, iou = self.model.decode(self.features, points=points, boxes=boxes, masks=mask_input,
                                         multimask_output=multimask_output)
        masks = self.upscale_logits(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def predict_low_res(self, point_coords, point_labels, multimask_output: bool = True):
        """:meth:`predict_torch` without the upscaling: ``(low_res_logits (B, M, 4h, 4w), iou (B, M))``.

        Segment-everything upscales only the candidates that pass its predicted-IoU filter
        (:meth:`upscale_logits`), which on a 640x480 photo is most of the dense grid's time.
        """
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        return self.model.decode(self.features, points=points, multimask_output=multimask_output)

    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, int],
                       original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits ``(B, M, 4h, 4w)`` of an image resized to ``input_size`` ``(h, w)`` px -> logits at
        ``original_size`` ``(B, M, H, W)``: SAM's ``postprocess_masks`` (to the padded input, crop, resize)."""
        return self.model.postprocess_masks(low_res, input_size, original_size)

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding ``(1, C, h, w)``."""
        self._require_image()
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image() before predicting")


def predictor_for(model: Sam | Sam2) -> "SamPredictor | Sam2Predictor":
    """The prompted-segmentation predictor of ``model``'s family: both answer ``set_image``, ``predict``,
    ``predict_torch``, ``get_image_embedding`` and ``transform.apply_coords`` / ``apply_boxes`` alike."""
    return Sam2Predictor(model) if isinstance(model, Sam2) else SamPredictor(model)
