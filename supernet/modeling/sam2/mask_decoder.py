"""SAM 2's mask decoder: SAM's, plus high-resolution features, an object-score token and sigmoid IoU.

Names follow Meta's ``sam2.modeling.sam.mask_decoder`` (``obj_score_token``, ``conv_s0``,
``conv_s1``, ``pred_obj_score_head``). Every SAM 2 checkpoint uses ``use_high_res_features``,
``pred_obj_scores`` with an MLP head and ``iou_prediction_use_sigmoid``; this decoder is that one.
"""
from __future__ import annotations

import torch
from torch import nn

from supernet.modeling.common import MLP, LayerNorm2d
from supernet.modeling.sam2.transformer import TwoWayTransformer


class Sam2MaskDecoder(nn.Module):
    """Masks at 4x the embedding grid, a sigmoid IoU per mask and an object-score logit.

    Without ``multimask_output``, and when not training, the single-mask answer is replaced by the
    multimask answer of highest IoU wherever its stability score is below ``stability_thresh``
    (SAM 2's dynamic multimask).
    """

    def __init__(self, transformer_dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, stability_delta: float = 0.05,
                 stability_thresh: float = 0.98) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
                                       sigmoid_output=True)
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output: bool, high_res_features: list[torch.Tensor]):
        """Masks ``(B, M, 4h, 4w)`` logits, IoU ``(B, M)`` and object-score logits ``(B, 1)``.

        ``image_embeddings`` ``(1 or B, C, h, w)``; ``high_res_features`` the decoder-projected
        stride-4 and stride-8 maps ``[(1 or B, C/8, 4h, 4w), (1 or B, C/4, 2h, 2w)]``. M is 3
        with ``multimask_output``, else 1.
        """
        masks, iou_pred, object_score_logits = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features)
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:], object_score_logits
        if not self.training:
            masks, iou_pred = self.dynamic_multimask(masks, iou_pred)
            return masks, iou_pred, object_score_logits
        return masks[:, :1], iou_pred[:, :1], object_score_logits

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                      high_res_features):
        """All ``num_mask_tokens`` masks and IoU predictions, and the object-score logit, per prompt set."""
        tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((tokens, sparse_prompt_embeddings), dim=1)
        repeat = tokens.shape[0] // image_embeddings.shape[0]
        src = torch.repeat_interleave(image_embeddings, repeat, dim=0) + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        mask_tokens_out = hs[:, 2: 2 + self.num_mask_tokens, :]

        feat_s0, feat_s1 = (torch.repeat_interleave(f, repeat, dim=0) for f in high_res_features)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        upscaled = act1(ln1(dc1(src.transpose(1, 2).view(b, c, h, w)) + feat_s1))
        upscaled = act2(dc2(upscaled) + feat_s0)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(hs[:, 1, :]), self.pred_obj_score_head(hs[:, 0, :])

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of the masks thresholded at +delta and -delta: ``(B, M, H, W)`` -> ``(B, M)``."""
        flat = mask_logits.flatten(-2)
        area_i = torch.sum(flat > self.stability_delta, dim=-1).float()
        area_u = torch.sum(flat > -self.stability_delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def dynamic_multimask(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The single mask ``(B, 1, H, W)`` where stable, else the multimask of highest IoU, with its IoU ``(B, 1)``."""
        multi_masks, multi_iou = masks[:, 1:], iou[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.size(0), device=iou.device)
        best_masks, best_iou = multi_masks[rows, best].unsqueeze(1), multi_iou[rows, best].unsqueeze(1)
        single_masks, single_iou = masks[:, :1], iou[:, :1]
        stable = self.stability_scores(single_masks) >= self.stability_thresh
        return (torch.where(stable[..., None, None].expand_as(single_masks), single_masks, best_masks),
                torch.where(stable.expand_as(single_iou), single_iou, best_iou))
