"""The SAM model: image encoder + prompt encoder + mask decoder, with pre- and post-processing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.modeling.arch import SamArch
from supernet.modeling.image_encoder import ImageEncoderViT
from supernet.modeling.mask_decoder import MaskDecoder
from supernet.modeling.prompt_encoder import PromptEncoder


def upscale_mask_logits(masks: torch.Tensor, resolution: int, input_size: tuple[int, int],
                        original_size: tuple[int, int]) -> torch.Tensor:
    """SAM's mask upscaling: low-res logits ``(B, M, r, r)`` over the padded ``resolution`` px input
    -> bilinear to ``resolution``, crop to the resized image ``input_size (h, w)``, bilinear to
    ``original_size (H, W)``: ``(B, M, H, W)``."""
    masks = F.interpolate(masks, (resolution, resolution), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


class Sam(nn.Module):
    """Segment Anything; ``resolution`` is the active input side in pixels.

    The encoder is elastic in the supernet (``supernet.elastic.modules.ElasticImageEncoderViT``), plain in an
    extracted subnet.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, arch: SamArch, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.arch = arch
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(arch.pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(arch.pixel_std).view(-1, 1, 1), False)
        self.resolution = image_encoder.img_size

    def set_resolution(self, resolution: int) -> None:
        """Make ``resolution`` (pixels, a multiple of the patch size, at most ``img_size``) the active input side."""
        patch = self.image_encoder.patch_size
        if resolution % patch or not 0 < resolution <= self.image_encoder.img_size:
            raise ValueError(
                f"resolution {resolution} must be a positive multiple of {patch} and at most {self.image_encoder.img_size}"
            )
        self.resolution = resolution
        self.prompt_encoder.set_resolution(resolution, resolution // patch)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, h, w)`` pixels in [0, 255] and zero-pad to ``(B, 3, R, R)``."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.resolution - w, 0, self.resolution - h))

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res mask logits ``(B, M, 4h, 4w)`` -> logits at the original image size ``(B, M, H, W)``."""
        return upscale_mask_logits(masks, self.resolution, input_size, original_size)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``(B, 3, R, R)`` images -> image embeddings ``(B, C, R/16, R/16)``."""
        return self.image_encoder(images)

    def decode(self, image_embeddings: torch.Tensor, points=None, boxes=None, masks=None,
               multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts for one or more images -> low-res mask logits ``(B, M, 4h, 4w)`` and IoU predictions ``(B, M)``.

        ``image_embeddings`` is ``(1, C, h, w)`` (shared by every prompt set) or ``(B, C, h, w)``.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
