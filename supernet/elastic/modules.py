"""The supernet's elastic modules: SAM's ViT encoder whose blocks run a sub-network of themselves.

:class:`ElasticImageEncoderViT` is the weight-sharing supernet (and, at full width, the
original SAM encoder): every block keeps its full weights and runs the *active*
sub-network by slicing them at run time. Heads are sliced head-major (the first ``k``
heads), MLP neurons the first ``k`` hidden units, so importance ranking
(``supernet.elastic.ranking``) permutes the weights to put the best first. With every
block active at full width and the input at ``img_size``, its forward pass is exactly
the original SAM encoder. Each class subclasses its plain counterpart in
``supernet.modeling.image_encoder`` and adds no parameters, so the state dicts of both agree
(a checkpoint loads into either).

Which sub-network is active is set by ``supernet.elastic.activation``; shapes as the plain
encoder: images ``(B, 3, R, R)`` -> embeddings ``(B, out_chans, R/16, R/16)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.modeling.common import FeedForward
from supernet.modeling.image_encoder import Attention, EncoderBlock, ImageEncoderViT


class HeadSlicing(nn.Module):
    """Mixin (first base) making an attention module elastic: only the first ``active_heads`` heads run.

    The attention (SAM's :class:`Attention`, SAM 2's ``MultiScaleAttention``) provides ``qkv``
    (outputs laid out ``(3, num_heads, head_dim)``: q, k and v, head after head), ``proj``,
    ``num_heads``, ``head_dim`` and ``attend(qkv_output, heads)``. Adds no parameters.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.active_heads = self.num_heads
        # Parameter-free probe on the input of ``proj``: forward hooks here see the
        # per-head attention output (importance ranking records it).
        self.proj_input = nn.Identity()

    def qkv_slice(self, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(3*heads*hd, dim)`` and bias ``(3*heads*hd,)`` of the first ``heads`` heads."""
        hd = self.head_dim
        weight = self.qkv.weight.view(3, self.num_heads, hd, -1)[:, :heads].reshape(3 * heads * hd, -1)
        bias = self.qkv.bias.view(3, self.num_heads, hd)[:, :heads].reshape(-1)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.active_heads
        weight, bias = self.qkv_slice(heads)
        out = self.proj_input(self.attend(F.linear(x, weight, bias), heads))
        return F.linear(out, self.proj.weight[:, : heads * self.head_dim], self.proj.bias)


class NeuronSlicing(nn.Module):
    """Mixin (first base) making ``lin2(act(lin1(x)))`` elastic: only the first ``active_hidden`` hidden units run.

    The MLP's constructor takes ``(dim, hidden)``. Adds no parameters.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(dim, hidden)
        self.hidden = hidden
        self.active_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.active_hidden
        if m == self.hidden:
            return super().forward(x)
        hidden = self.act(F.linear(x, self.lin1.weight[:m], self.lin1.bias[:m]))
        return F.linear(hidden, self.lin2.weight[:, :m], self.lin2.bias)


class ElasticAttention(HeadSlicing, Attention):
    """:class:`Attention` of the supernet: only the first ``active_heads`` heads run, by slicing the weights."""


class ElasticMLP(NeuronSlicing, FeedForward):
    """``lin2(GELU(lin1(x)))`` of the supernet, with only the first ``active_hidden`` hidden units."""


class ElasticEncoderBlock(EncoderBlock):
    """:class:`EncoderBlock` of the supernet: elastic in heads and MLP width."""

    attention_cls = ElasticAttention
    mlp_cls = ElasticMLP


class ElasticImageEncoderViT(ImageEncoderViT):
    """The supernet's encoder: elastic blocks, and depth elasticity through ``active_blocks``."""

    block_cls = ElasticEncoderBlock

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Depth elasticity: False skips the block (identity).
        self.active_blocks: list[bool] = [True] * len(self.blocks)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block, active in zip(self.blocks, self.active_blocks):
            if active:
                x = self.run_block(block, x)
        return x
