"""Builders of a plain :class:`Sam`, randomly initialised; the encoder class is a parameter.

:func:`build_full` gives the original architecture (every block full width); the supernet's
builder (``supernet.elastic.build.build_sam``) calls it with the elastic encoder. Extracted
subnets call :func:`build_from_spec` with their own widths and get a plain model.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from supernet.modeling.arch import SamArch, get_arch
from supernet.modeling.common import LayerNorm2d
from supernet.modeling.image_encoder import ImageEncoderViT
from supernet.modeling.mask_decoder import MaskDecoder
from supernet.modeling.prompt_encoder import PromptEncoder, RandomFourierPositions
from supernet.modeling.sam import Sam
from supernet.modeling.transformer import TwoWayTransformer


def full_blocks_spec(arch: SamArch) -> list[tuple[int, int, int]]:
    """Per block ``(heads, mlp_dim, window_size)`` of the original model; window 0 = global."""
    return [
        (arch.num_heads, arch.mlp_dim, 0 if i in arch.global_attn_indexes else arch.window_size)
        for i in range(arch.depth)
    ]


def build_from_spec(arch: SamArch, blocks_spec: list[tuple[int, int, int]], img_size: int | None = None,
                    encoder_cls: type[ImageEncoderViT] = ImageEncoderViT) -> Sam:
    """A SAM whose encoder blocks have the given ``(heads, mlp_dim, window_size)``; ``img_size`` in pixels.

    ``encoder_cls``: plain ``nn.Linear`` layers by default; the supernet passes its elastic encoder
    (``supernet.elastic.modules.ElasticImageEncoderViT``: run-time slicing, depth skipping).
    """
    img_size = img_size or arch.img_size
    encoder = encoder_cls(
        img_size=img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        head_dim=arch.head_dim,
        blocks_spec=blocks_spec,
        out_chans=arch.prompt_embed_dim,
    )
    grid = img_size // arch.patch_size
    prompt_encoder = PromptEncoder(arch.prompt_embed_dim, (grid, grid), (img_size, img_size))
    decoder = MaskDecoder(
        transformer_dim=arch.prompt_embed_dim,
        transformer=TwoWayTransformer(arch.decoder_depth, arch.prompt_embed_dim, arch.decoder_heads,
                                      arch.decoder_mlp_dim),
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
    )
    return Sam(replace(arch, img_size=img_size), encoder, prompt_encoder, decoder).eval()


def build_full(model_type: str | SamArch, seed: int | None = None,
               encoder_cls: type[ImageEncoderViT] = ImageEncoderViT) -> Sam:
    """The full model of ``model_type`` (vit_b, vit_l, vit_h, micro), random weights, encoder ``encoder_cls``.

    Random initialisation follows PyTorch defaults; position embeddings and relative
    positions get small random values (not zeros) so that tests exercise them. With ``seed``,
    every random value comes from a local ``torch.Generator`` seeded with it (torch's global
    generator is neither read nor changed); without, from the global generator, as any module.
    """
    arch = get_arch(model_type) if isinstance(model_type, str) else model_type
    gen = None
    if seed is None:
        model = build_from_spec(arch, full_blocks_spec(arch), encoder_cls=encoder_cls)
    else:
        with torch.device("meta"):  # shapes only: no global random draws, no memory
            model = build_from_spec(arch, full_blocks_spec(arch), encoder_cls=encoder_cls)
        model = model.to_empty(device="cpu")
        gen = torch.Generator().manual_seed(seed)
        _initialise(model, gen)
    with torch.no_grad():
        model.image_encoder.pos_embed.normal_(std=0.02, generator=gen)
        for block in model.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(std=0.02, generator=gen)
            block.attn.rel_pos_w.normal_(std=0.02, generator=gen)
    return model


_SET_BY_BUILD_FULL = ("pos_embed", "rel_pos_h", "rel_pos_w")  # small random values drawn in build_full


@torch.no_grad()
def init_layer(module: nn.Module, gen: torch.Generator) -> bool:
    """Seeded initialisation of one standard layer (linear and conv layers as torch's defaults, norms to 1/0,
    embeddings and Fourier positions normal), drawing from ``gen``; False when ``module`` is none of them.
    SAM 1's and SAM 2's seeded builders share it, so equal modules draw equal weights."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=gen)
        if module.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(module.bias, -bound, bound, generator=gen)
    elif isinstance(module, (nn.LayerNorm, LayerNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, generator=gen)
    elif isinstance(module, RandomFourierPositions):
        module.positional_encoding_gaussian_matrix.normal_(generator=gen)
    else:
        return False
    return True


@torch.no_grad()
def _initialise(model: Sam, gen: torch.Generator) -> None:
    """Fill an uninitialised model (``to_empty``) as its constructors would, drawing from ``gen``.

    PyTorch's defaults: Linear and (transposed) convolutions Kaiming-uniform with a = sqrt(5)
    and biases uniform in +-1/sqrt(fan_in); norms 1 and 0; embeddings and the prompt encoder's
    Fourier frequencies standard normal; the pixel mean and std from the architecture. The
    position embeddings and relative positions are left to :func:`build_full`. A tensor no rule
    covers is an error, so a new module type cannot silently keep uninitialised memory.
    """
    done: set[int] = set()
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
        if isinstance(module, Sam):
            module.pixel_mean.copy_(torch.tensor(module.arch.pixel_mean).view(-1, 1, 1))
            module.pixel_std.copy_(torch.tensor(module.arch.pixel_std).view(-1, 1, 1))
        elif any(name not in _SET_BY_BUILD_FULL for name in own):
            if not init_layer(module, gen):
                raise TypeError(f"build_full(seed=...): no initialisation rule for {type(module).__name__} "
                                f"({', '.join(own)})")
        done.update(id(t) for t in own.values())
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
            if id(t) not in done and name.rsplit(".", 1)[-1] not in _SET_BY_BUILD_FULL]
    if left:
        raise TypeError(f"build_full(seed=...): uninitialised tensors {left[:5]}")

