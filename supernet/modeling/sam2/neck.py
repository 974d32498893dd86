"""SAM 2's FPN neck and image encoder (trunk + neck), images only.

Names follow Meta's ``sam2.modeling.backbones.image_encoder`` (``image_encoder.trunk.*``,
``image_encoder.neck.convs.N.conv.*``). The neck's sine position encodings feed only the video
memory attention, so they are not computed here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.modeling.sam2.hiera import Hiera


class FpnNeck(nn.Module):
    """1x1 lateral convolutions to ``d_model`` channels, top-down nearest 2x upsampling and sum.

    ``backbone_channel_list`` is the trunk's stage widths, lowest resolution first (``convs.0``
    takes the stride-32 stage). Only levels in ``fpn_top_down_levels`` (counted from the
    stride-4 level) add the upsampled coarser level; the others are their lateral conv alone.
    """

    def __init__(self, d_model: int, backbone_channel_list: list[int], fpn_top_down_levels: tuple[int, ...]) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(level)
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Stage maps (stride 4 first) -> one ``(B, d_model, h, w)`` map per level, stride 4 first."""
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * (n + 1)  # type: ignore[list-item]
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                top_down = F.interpolate(prev.to(dtype=torch.float32), scale_factor=2.0, mode="nearest",
                                         align_corners=None, antialias=False)
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = prev
        return out


class Sam2ImageEncoder(nn.Module):
    """Trunk then neck: ``(B, 3, R, R)`` -> FPN maps at strides 4, 8 and 16 (the stride-32 level dropped).

    ``scalp`` is how many of the coarsest levels are dropped (1 in every SAM 2 config).
    """

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(f"trunk widths {trunk.channel_list} != neck inputs {neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward_with_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The trunk's stage outputs (stride 4 first) and the kept FPN levels (stride 4 first)."""
        stages = self.trunk(x)
        levels = self.neck(stages)
        return stages, levels[: len(levels) - self.scalp]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_stages(x)[1]
