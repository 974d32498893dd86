"""The SAM 2 supernet's elastic modules: a Hiera trunk whose blocks run a sub-network of themselves.

As SAM 1's :mod:`supernet.elastic.modules`: every block keeps its full weights and runs the
*active* sub-network by slicing them at run time, the first ``k`` heads (head-major, on the
output side of ``qkv``: at a transition ``qkv`` maps ``dim`` to ``3 * heads * head_dim`` of
the wider stage) and the first ``k`` MLP neurons; a skipped block is the identity. Stage
widths never change: a transition block's shortcut ``proj`` (``dim -> dim_out``) is never
sliced, and block 0 and the transition blocks always run. Each class subclasses its plain
counterpart in ``supernet.modeling.sam2.hiera`` and adds no parameters, so the state dicts
agree (a checkpoint loads into either) and, with everything active, the forward pass is the
plain model's bit for bit.

Which sub-network is active is set by ``supernet.elastic.activation``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.elastic.modules import first_heads, first_hidden
from supernet.modeling.sam2.arch import Sam2BlockSpec
from supernet.modeling.sam2.hiera import Hiera, HieraMLP, MultiScaleAttention, MultiScaleBlock


class ElasticMultiScaleAttention(MultiScaleAttention):
    """:class:`MultiScaleAttention` of the supernet: only the first ``active_heads`` heads run."""

    def __init__(self, dim: int, dim_out: int, heads: int, head_dim: int, q_pool: bool) -> None:
        super().__init__(dim, dim_out, heads, head_dim, q_pool)
        self.active_heads = heads
        # parameter-free probe on the input of ``proj``: forward hooks see the per-head outputs (ranking)
        self.proj_input = nn.Identity()

    def qkv_slice(self, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(3 * heads * head_dim, dim)`` and bias of the first ``heads`` heads."""
        return first_heads(self.qkv, self.heads, self.head_dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.active_heads
        weight, bias = self.qkv_slice(heads)
        out = self.proj_input(self.attend(F.linear(x, weight, bias), heads))
        return F.linear(out, self.proj.weight[:, : heads * self.head_dim], self.proj.bias)


class ElasticHieraMLP(HieraMLP):
    """:class:`HieraMLP` of the supernet: only the first ``active_hidden`` hidden units run."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(dim, hidden)
        self.hidden = hidden
        self.active_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.active_hidden
        if m == self.hidden:
            return super().forward(x)
        return first_hidden(x, self.layers[0], self.layers[1], self.act, m)


class ElasticMultiScaleBlock(MultiScaleBlock):
    """:class:`MultiScaleBlock` of the supernet: elastic in heads and MLP width."""

    attention_cls = ElasticMultiScaleAttention
    mlp_cls = ElasticHieraMLP


class ElasticHiera(Hiera):
    """The supernet's trunk: elastic blocks, and depth elasticity through ``active_blocks``.

    A skipped block passes its input on; a stage whose last block is skipped outputs its last
    kept block's tokens (block 0 and the transitions always run, so each stage keeps one).
    """

    block_cls = ElasticMultiScaleBlock

    def __init__(self, blocks_spec: list[Sam2BlockSpec], window_pos_embed_bkg: tuple[int, int],
                 first_window: int) -> None:
        super().__init__(blocks_spec, window_pos_embed_bkg, first_window)
        self.active_blocks: list[bool] = [True] * len(self.blocks)  # False skips the block (identity)

    def runs_block(self, index: int) -> bool:
        return self.active_blocks[index]
