"""SAM 2's prompt encoder: SAM's, with box corners as points (labels 2 and 3).

SAM 2 hands boxes to the encoder as two corner points labelled 2 (top-left) and 3 (bottom-right)
before any clicks, with ``boxes=None``, so the padding point (label -1) is always appended.
Parameter names are SAM's (``pe_layer``, ``point_embeddings.N``, ``not_a_point_embed``,
``mask_downscaling``, ``no_mask_embed``).
"""
from __future__ import annotations

import torch

from supernet.modeling.prompt_encoder import PromptEncoder


class Sam2PromptEncoder(PromptEncoder):
    """:class:`PromptEncoder` whose point labels 2 and 3 take the box-corner embeddings.

    Labels: 1 foreground, 0 background, 2 box top-left, 3 box bottom-right, -1 padding.
    """

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, torch.zeros((coords.shape[0], 1, 2), device=coords.device)], dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), device=labels.device)], dim=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        emb = torch.where((labels == -1).unsqueeze(-1), torch.zeros_like(emb) + self.not_a_point_embed.weight, emb)
        for label in range(4):
            emb = torch.where((labels == label).unsqueeze(-1), emb + self.point_embeddings[label].weight, emb)
        return emb
