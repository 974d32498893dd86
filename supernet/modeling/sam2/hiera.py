"""SAM 2's Hiera trunk: a hierarchical ViT with windowed attention and q-pool stage transitions.

Layout and parameter names follow Meta's ``sam2.modeling.backbones.hieradet`` so that official
checkpoints load unchanged (``patch_embed.proj``, ``pos_embed``, ``pos_embed_window``,
``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.layers.{0,1}, proj}``). Tokens are kept as
``(B, H, W, C)`` grids between blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.modeling.sam2.arch import Sam2BlockSpec


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> zero-padded windows ``(B * nW, window, window, C)`` and the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, pad_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: windows -> ``(B, H, W, C)`` with the padding cropped."""
    (hp, wp), (h, w) = pad_hw, hw
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :] if hp > h or wp > w else x


def pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool of a ``(B, H, W, C)`` grid (stride 2, floor)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """7x7 convolution, stride 4, padding 3: ``(B, 3, R, R)`` pixels -> ``(B, R/4, R/4, C)`` tokens."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class HieraMLP(nn.Module):
    """``layers.1(gelu(layers.0(x)))`` (Meta's two-layer ``MLP`` with GELU)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden), nn.Linear(hidden, dim)])
        self.act = nn.GELU()

    @property
    def lin1(self) -> nn.Linear:
        """``layers.0`` under SAM's name (ranking and slicing treat both MLPs alike)."""
        return self.layers[0]

    @property
    def lin2(self) -> nn.Linear:
        """``layers.1`` under SAM's name."""
        return self.layers[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.act(self.layers[0](x)))


class MultiScaleAttention(nn.Module):
    """Attention over a ``(B, H, W, dim)`` grid (or its windows); with ``q_pool`` the queries are 2x2 max-pooled.

    ``qkv`` maps ``dim`` to ``3 * heads * head_dim`` (the output side: at a transition it is wider
    than its input), ``proj`` maps ``heads * head_dim`` to ``dim_out``.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, head_dim: int, q_pool: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.q_pool = heads, head_dim, q_pool
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim_out)

    @property
    def num_heads(self) -> int:
        """``heads`` under SAM's name (ranking treats both attentions alike)."""
        return self.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x), self.heads))

    def attend(self, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        """``qkv`` ``(B, H, W, 3 * heads * head_dim)`` -> per-head outputs ``(B, H', W', heads * head_dim)``."""
        b, h, w, _ = qkv.shape
        q, k, v = qkv.reshape(b, h * w, 3, heads, self.head_dim).unbind(2)
        if self.q_pool:
            q = pool_2x2(q.reshape(b, h, w, -1))
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, heads, self.head_dim)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x.transpose(1, 2).reshape(b, h, w, -1)


class MultiScaleBlock(nn.Module):
    """One Hiera block: (windowed) attention and MLP, each with a residual; a transition also pools.

    At a transition (``dim != dim_out``) the shortcut is ``pool(proj(norm1(x)))``, and the attention
    output, pooled inside each window, is unpartitioned with the halved window.
    ``attention_cls`` and ``mlp_cls`` let the supernet (``supernet.elastic.sam2_modules``) swap in
    elastic parts with the same parameters.
    """

    attention_cls: type[MultiScaleAttention] = MultiScaleAttention
    mlp_cls: type[HieraMLP] = HieraMLP

    def __init__(self, spec: Sam2BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.dim, self.dim_out, self.window_size = spec.dim, spec.dim_out, spec.window
        self.norm1 = nn.LayerNorm(spec.dim, eps=1e-6)
        self.attn = self.attention_cls(spec.dim, spec.dim_out, spec.heads, spec.head_dim, spec.q_pool)
        self.norm2 = nn.LayerNorm(spec.dim_out, eps=1e-6)
        self.mlp = self.mlp_cls(spec.dim_out, spec.mlp_dim)
        if spec.dim != spec.dim_out:
            self.proj = nn.Linear(spec.dim, spec.dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, H', W', dim_out)`` (``H' = H // 2`` at a transition)."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.spec.q_pool:
                shortcut = pool_2x2(shortcut)
        window, hw = self.window_size, x.shape[1:3]
        if window > 0:
            x, pad_hw = window_partition(x, window)
        x = self.attn(x)
        if self.spec.q_pool:
            window, hw = window // 2, shortcut.shape[1:3]
            pad_hw = tuple(n + (window - n % window) % window for n in hw) if window else hw
        if self.window_size > 0:
            x = window_unpartition(x, window, pad_hw, hw)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """The trunk: ``(B, 3, R, R)`` -> one ``(B, C_s, R/4/2^s, R/4/2^s)`` map per stage s (stride 4 first).

    ``blocks_spec`` lists the blocks in order (:meth:`Sam2Arch.block_specs` for the full model);
    a stage's output is its last block's. The position embedding is the background embedding
    interpolated (bicubic) to the token grid plus the first-stage window embedding tiled over it.
    ``block_cls`` is :class:`MultiScaleBlock`, or the supernet's elastic block.
    """

    block_cls: type[MultiScaleBlock] = MultiScaleBlock

    def __init__(self, blocks_spec: list[Sam2BlockSpec], window_pos_embed_bkg: tuple[int, int],
                 first_window: int) -> None:
        super().__init__()
        embed_dim = blocks_spec[0].dim
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, first_window, first_window))
        self.blocks = nn.ModuleList(self.block_cls(spec) for spec in blocks_spec)
        self.stage_ends = [i for i, spec in enumerate(blocks_spec)
                           if i == len(blocks_spec) - 1 or blocks_spec[i + 1].stage != spec.stage]
        self.channel_list = [blocks_spec[i].dim_out for i in self.stage_ends[::-1]]

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """``(1, H, W, C)``: the interpolated background plus the tiled window embedding."""
        pos = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile([p // q for p, q in zip(pos.shape, window.shape)])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            if self.runs_block(i):
                x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

    def runs_block(self, index: int) -> bool:
        """Whether block ``index`` runs (always here; the supernet skips blocks)."""
        return True
