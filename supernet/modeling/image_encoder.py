"""SAM's ViT image encoder, plain.

:class:`ImageEncoderViT` is a plain model: ``nn.Linear`` layers of the widths it was built
with, every block run. Extracted subnets are built from it, so quantizers, compilers and
exporters see an ordinary network. The supernet's elastic encoder subclasses it
(``supernet.elastic.modules``), with the same parameter names, so their state dicts agree.

It takes inputs smaller than ``img_size`` (elastic resolution): the position embedding
and relative positions are resampled to the input's grid.

Shapes: images ``(B, 3, R, R)`` with ``R`` a multiple of ``patch_size`` -> embeddings
``(B, out_chans, R/16, R/16)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from supernet.modeling.common import FeedForward, LayerNorm2d


def rel_pos_table(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis.

    ``table`` is ``(L, C)`` learned for ``L = 2 * size - 1`` offsets; it is resampled
    linearly when the axis length differs (elastic resolution). Returns ``(q_size, k_size, C)``.
    """
    table = resize_rel_pos(table, max(q_size, k_size))
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size)[:, None] * q_scale
    k_pos = torch.arange(k_size)[None, :] * k_scale
    offsets = (q_pos - k_pos) + (k_size - 1) * k_scale
    return table[offsets.long()]


def resize_rel_pos(table: torch.Tensor, size: int) -> torch.Tensor:
    """Resample a ``(L, C)`` relative-position table to the ``2*size-1`` offsets of an axis of ``size``."""
    needed = 2 * size - 1
    if table.shape[0] == needed:
        return table
    return F.interpolate(table.t().unsqueeze(0), size=needed, mode="linear").squeeze(0).t()


def decomposed_rel_pos_bias(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, hw: tuple[int, int]):
    """Additive attention bias from decomposed relative positions (MViTv2).

    ``q``: ``(N, T, C)`` un-scaled queries with ``T = H*W``. Returns ``(N, T, T)``.
    """
    h, w = hw
    table_h = rel_pos_table(h, h, rel_h)
    table_w = rel_pos_table(w, w, rel_w)
    n, _, c = q.shape
    q2d = q.reshape(n, h, w, c)
    bias_h = torch.einsum("nhwc,hkc->nhwk", q2d, table_h)
    bias_w = torch.einsum("nhwc,wkc->nhwk", q2d, table_w)
    return (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).reshape(n, h * w, h * w)


class Attention(nn.Module):
    """Multi-head self-attention with decomposed relative positions, all ``num_heads`` heads.

    Weights keep the official layout: ``qkv`` rows are (q|k|v) x heads x head_dim, and
    ``proj`` columns are heads x head_dim.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, rel_pos_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x), self.num_heads))

    def attend(self, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        """Projected ``(B, H, W, 3*heads*hd)`` q|k|v -> attention output ``(B, H, W, heads*hd)``."""
        b, h, w, _ = qkv.shape
        hd = self.head_dim
        qkv = qkv.reshape(b, h * w, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * heads, h * w, hd).unbind(0)
        attn_bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return out.view(b, heads, h, w, hd).permute(0, 2, 3, 1, 4).reshape(b, h, w, heads * hd)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nWindows, window, window, C)`` with zero padding; also the padded size."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int], hw: tuple[int, int]):
    """Inverse of :func:`window_partition`: back to ``(B, H, W, C)`` without the padding."""
    hp, wp = padded
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; ``window_size == 0`` means global attention."""

    attention_cls: type[Attention] = Attention
    mlp_cls: type[FeedForward] = FeedForward

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int, window_size: int, grid: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = self.attention_cls(dim, num_heads, head_dim, window_size if window_size > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = self.mlp_cls(dim, mlp_dim)
        self.window_size = window_size

    @property
    def is_global(self) -> bool:
        return self.window_size == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: ``(B, 3, R, R)`` -> ``(B, R/p, R/p, dim)``."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resampling of an absolute ``(1, G, G, C)`` position embedding to ``(1, grid, grid, C)``."""
    if pos_embed.shape[1] == grid and pos_embed.shape[2] == grid:
        return pos_embed
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """SAM's ViT encoder with plain blocks: every block runs all its heads and hidden units.

    ``blocks_spec`` lists, per block, ``(num_heads, mlp_dim, window_size)``; extracted
    subnets pass their reduced widths. ``img_size`` is the largest input side in pixels;
    the position embedding and the global blocks' relative positions are learned for it
    and resampled for smaller inputs.
    """

    block_cls: type[EncoderBlock] = EncoderBlock
    # Activation checkpointing: when True and gradients are on, each block keeps only its input for
    # the backward pass and runs its forward again there (``torch.utils.checkpoint``), trading
    # about a third more compute for the memory of all blocks' activations but one.
    checkpoint_blocks: bool = False

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        head_dim: int,
        blocks_spec: list[tuple[int, int, int]],
        out_chans: int,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            self.block_cls(embed_dim, heads, head_dim, mlp, window, grid) for heads, mlp, window in blocks_spec
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.patch_size or x.shape[-2] != x.shape[-1]:
            raise ValueError(f"encoder input must be square with a side divisible by {self.patch_size}, got {tuple(x.shape)}")
        x = self.patch_embed(x)
        x = x + resize_pos_embed(self.pos_embed, x.shape[1])
        x = self.run_blocks(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = self.run_block(block, x)
        return x

    def run_block(self, block: EncoderBlock, x: torch.Tensor) -> torch.Tensor:
        """``block(x)``, under activation checkpointing when :attr:`checkpoint_blocks` is set and grads are on."""
        if self.checkpoint_blocks and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)
