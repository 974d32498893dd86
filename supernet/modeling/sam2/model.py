"""The SAM 2 image model: Hiera + FPN image encoder, prompt encoder and mask decoder, with SAM 2's
pre- and post-processing. Images only: the video memory modules are not part of it.

Parameter names are those of Meta's ``SAM2Base`` restricted to the image path
(``image_encoder.*``, ``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, ``no_mem_embed``).
Pre-processing is SAM 2's: pixels / 255, resized (bilinear, antialiased) to the square R x R
input whatever the aspect ratio, then normalised by ImageNet's mean and std; prompts are
scaled by ``R / W`` and ``R / H``; masks are upscaled straight from the ``R/4`` grid to the
original size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.modeling.sam2.arch import Sam2Arch, check_side
from supernet.modeling.sam2.mask_decoder import Sam2MaskDecoder
from supernet.modeling.sam2.neck import Sam2ImageEncoder
from supernet.modeling.sam2.prompt_encoder import Sam2PromptEncoder

BACKBONE_STRIDE = 16  # the image embedding's stride; the high-resolution maps are at 4 and 8


class Sam2(nn.Module):
    """SAM 2's image model; ``resolution`` is the active input side in pixels (a multiple of 32)."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, arch: Sam2Arch, image_encoder: Sam2ImageEncoder, prompt_encoder: Sam2PromptEncoder,
                 mask_decoder: Sam2MaskDecoder) -> None:
        super().__init__()
        self.arch = arch
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = prompt_encoder
        self.sam_mask_decoder = mask_decoder
        # added to the image embedding when no memory conditions it (every image-only prediction)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, arch.d_model))
        self.register_buffer("pixel_mean", torch.tensor(arch.pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(arch.pixel_std).view(-1, 1, 1), False)
        self.set_resolution(arch.img_size)

    def set_resolution(self, resolution: int) -> None:
        """Make ``resolution`` pixels (a positive multiple of 32) the input side; the decoder's grids follow."""
        self.resolution = check_side(resolution)
        self.sam_prompt_encoder.set_resolution(resolution, resolution // BACKBONE_STRIDE)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB pixels in [0, 255] -> the normalised ``(B, 3, R, R)`` encoder input."""
        x = F.interpolate(images.float() / 255.0, (self.resolution, self.resolution), mode="bilinear",
                          align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def transform_coords(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """``(..., 2)`` pixel ``(x, y)`` in an ``(H, W)`` image -> the ``R x R`` input frame."""
        h, w = original_size
        coords = coords.clone().float()
        coords[..., 0] = coords[..., 0] / w
        coords[..., 1] = coords[..., 1] / h
        return coords * self.resolution

    def postprocess_masks(self, masks: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits ``(B, M, R/4, R/4)`` -> logits at the original size ``(B, M, H, W)``."""
        return F.interpolate(masks.float(), original_size, mode="bilinear", align_corners=False)

    def embed_images(self, images: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Preprocessed ``(B, 3, R, R)`` -> ``image_embed`` ``(B, C, R/16, R/16)`` (with ``no_mem_embed``
        added) and ``high_res_feats`` ``[(B, C/8, R/4, R/4), (B, C/4, R/8, R/8)]`` (through ``conv_s0/s1``).
        """
        return self.features_from_levels(self.image_encoder(images))

    def features_from_levels(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The decoder's inputs from the FPN levels at strides 4, 8 and 16 (see :meth:`embed_images`)."""
        s0, s1, embed = levels
        decoder = self.sam_mask_decoder
        return {"image_embed": embed + self.no_mem_embed.view(1, -1, 1, 1),
                "high_res_feats": [decoder.conv_s0(s0), decoder.conv_s1(s1)]}

    def decode(self, features: dict, points=None, boxes=None, masks=None, multimask_output: bool = True):
        """Prompts in the input frame -> low-res mask logits ``(B, M, R/4, R/4)``, IoU ``(B, M)``.

        ``points`` ``(coords (B, N, 2), labels (B, N))``; ``boxes`` ``(B, 4)`` XYXY, which become
        two corner points (labels 2, 3) ahead of the clicks, as SAM 2 does; ``masks`` ``(B, 1, R/4, R/4)``.
        ``features`` from :meth:`embed_images` for one image (shared by all B prompt sets) or B.
        """
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(corners.size(0), 1)
            if points is not None:
                points = (torch.cat([corners, points[0]], dim=1), torch.cat([corner_labels, points[1]], dim=1))
            else:
                points = (corners, corner_labels)
        sparse, dense = self.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        low_res, iou, _ = self.sam_mask_decoder(
            image_embeddings=features["image_embed"], image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output,
            high_res_features=features["high_res_feats"],
        )
        return low_res, iou


def feature_tuple(features: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`Sam2.embed_images`'s dict as the tuple ``(image_embed, high_res_feats_0, high_res_feats_1)``."""
    return features["image_embed"], *features["high_res_feats"]


class Sam2EncoderCall(nn.Module):
    """SAM 2's image path as deployed, timed and exported: preprocessed ``(1, 3, R, R)`` images ->
    ``image_embed`` ``(1, C, R/16, R/16)`` and the high-resolution features ``(1, C/8, R/4, R/4)``,
    ``(1, C/4, R/8, R/8)`` (:meth:`Sam2.embed_images`, as a tuple)."""

    def __init__(self, sam: Sam2) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return feature_tuple(self.sam.embed_images(images))
