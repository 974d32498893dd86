"""SAM's prompt encoder: points, boxes and low-resolution masks -> sparse and dense embeddings.

Coordinates are in pixels of the model input frame (after the longest side was resized
to the input resolution). The input and embedding sizes are arguments of the forward
pass so that one encoder serves every elastic resolution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from supernet.modeling.common import LayerNorm2d


class RandomFourierPositions(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al.)."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` coordinates in [0, 1] -> ``(..., 2*num_feats)`` features."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an ``(h, w)`` grid: ``(C, h, w)``."""
        h, w = size
        ones = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device, dtype=torch.float32)
        y = (ones.cumsum(dim=0) - 0.5) / h
        x = (ones.cumsum(dim=1) - 0.5) / w
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Pixel ``(x, y)`` coordinates ``(B, N, 2)`` in an ``(h, w)`` frame -> ``(B, N, C)``."""
        coords = coords.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self.encode(coords.to(torch.float))


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Point labels: 1 foreground, 0 background, -1 padding. Boxes are XYXY pixels.
    Masks are ``(B, 1, 4h, 4w)`` logits for an ``(h, w)`` image embedding.
    """

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int], input_image_size: tuple[int, int],
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = RandomFourierPositions(embed_dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def set_resolution(self, input_size: int, embedding_size: int) -> None:
        """Switch the frame for an elastic input resolution (pixels) and its embedding grid."""
        self.input_image_size = (input_size, input_size)
        self.image_embedding_size = (embedding_size, embedding_size)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: ``(1, C, h, w)``."""
        return self.pe_layer.grid(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, torch.zeros((coords.shape[0], 1, 2), device=coords.device)], dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), device=labels.device)], dim=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        emb[labels == -1] = 0.0
        emb[labels == -1] += self.not_a_point_embed.weight
        emb[labels == 0] += self.point_embeddings[0].weight
        emb[labels == 1] += self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.points(corners, self.input_image_size)
        emb[:, 0, :] += self.point_embeddings[2].weight
        emb[:, 1, :] += self.point_embeddings[3].weight
        return emb

    def forward(self, points=None, boxes=None, masks=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse ``(B, N, C)`` and dense ``(B, C, h, w)`` embeddings.

        ``points`` is ``(coords (B, N, 2), labels (B, N))`` or None; ``boxes`` ``(B, 4)``;
        ``masks`` ``(B, 1, 4h, 4w)``.
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.point_embeddings[0].weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            sparse = torch.cat([sparse, self._embed_points(points[0], points[1], pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
