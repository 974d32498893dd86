"""Builders: SAM 2 model type or architecture -> a randomly initialised :class:`Sam2`.

``build_sam2("sam2_hiera_t")`` gives the original architecture; :func:`build_sam2_from_spec`
takes per-block :class:`Sam2BlockSpec` so that subnets (fewer blocks, heads or MLP neurons) are
built by the same code.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from supernet.modeling.build import init_layer
from supernet.modeling.sam2.arch import Sam2Arch, Sam2BlockSpec, check_side, get_sam2_arch
from supernet.modeling.sam2.hiera import Hiera
from supernet.modeling.sam2.mask_decoder import Sam2MaskDecoder
from supernet.modeling.sam2.model import BACKBONE_STRIDE, Sam2
from supernet.modeling.sam2.neck import FpnNeck, Sam2ImageEncoder
from supernet.modeling.sam2.prompt_encoder import Sam2PromptEncoder
from supernet.modeling.sam2.transformer import TwoWayTransformer


def build_sam2_from_spec(arch: Sam2Arch, blocks_spec: list[Sam2BlockSpec], img_size: int | None = None,
                        trunk_cls: type[Hiera] = Hiera) -> Sam2:
    """A SAM 2 whose trunk has the given blocks; ``img_size`` in pixels (a multiple of 32).

    ``trunk_cls``: the plain :class:`Hiera` by default; the supernet passes its elastic trunk
    (``supernet.elastic.sam2_modules.ElasticHiera``: run-time slicing, depth skipping).
    """
    img_size = check_side(img_size or arch.img_size)
    trunk = trunk_cls(blocks_spec, arch.window_pos_embed_bkg, arch.window_spec[0])
    neck = FpnNeck(arch.d_model, trunk.channel_list, arch.fpn_top_down_levels)
    grid = img_size // BACKBONE_STRIDE
    prompt_encoder = Sam2PromptEncoder(arch.d_model, (grid, grid), (img_size, img_size), arch.mask_in_chans)
    decoder = Sam2MaskDecoder(
        transformer_dim=arch.d_model,
        transformer=TwoWayTransformer(arch.decoder_depth, arch.d_model, arch.decoder_heads, arch.decoder_mlp_dim),
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
        stability_delta=arch.stability_delta,
        stability_thresh=arch.stability_thresh,
    )
    return Sam2(replace(arch, img_size=img_size), Sam2ImageEncoder(trunk, neck), prompt_encoder, decoder).eval()


def build_sam2(model_type: str | Sam2Arch, seed: int | None = None, img_size: int | None = None,
               trunk_cls: type[Hiera] = Hiera) -> Sam2:
    """The full SAM 2 image model of ``model_type``, random weights, trunk ``trunk_cls``.

    With ``seed`` every value comes from a local ``torch.Generator`` (the global one is neither
    read nor changed); without, modules initialise as PyTorch does. Either way the position
    embeddings and ``no_mem_embed`` get small random values (std 0.02) so that tests exercise them.
    Under ``torch.device("meta")`` nothing is allocated (key names and shapes only).
    """
    arch = get_sam2_arch(model_type) if isinstance(model_type, str) else model_type
    if seed is None:
        model = build_sam2_from_spec(arch, arch.block_specs(), img_size, trunk_cls)
        gen = None
    else:
        with torch.device("meta"):
            model = build_sam2_from_spec(arch, arch.block_specs(), img_size, trunk_cls)
        model = model.to_empty(device="cpu")
        gen = torch.Generator().manual_seed(seed)
        _initialise(model, gen)
    if model.no_mem_embed.device.type != "meta":
        with torch.no_grad():
            for tensor in _small_random(model):
                tensor.normal_(std=0.02, generator=gen)
    return model


def _small_random(model: Sam2) -> list[torch.Tensor]:
    trunk = model.image_encoder.trunk
    return [trunk.pos_embed, trunk.pos_embed_window, model.no_mem_embed]


@torch.no_grad()
def _initialise(model: Sam2, gen: torch.Generator) -> None:
    """Fill an uninitialised (``to_empty``) model as its constructors would, drawing from ``gen``.

    Linear and (transposed) convolutions Kaiming-uniform (a = sqrt(5)) with biases uniform in
    +-1/sqrt(fan_in); norms 1 and 0; embeddings and the Fourier frequencies standard normal; the
    pixel statistics from the architecture. Tensors :func:`build_sam2` sets are left to it; any
    other tensor is an error, so a new module type cannot keep uninitialised memory.
    """
    done = {id(t) for t in _small_random(model)}
    for module in model.modules():
        if init_layer(module, gen):
            pass
        elif isinstance(module, Sam2):
            module.pixel_mean.copy_(torch.tensor(module.arch.pixel_mean).view(-1, 1, 1))
            module.pixel_std.copy_(torch.tensor(module.arch.pixel_std).view(-1, 1, 1))
        else:
            continue
        done.update(id(t) for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)])
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if id(t) not in done]
    if left:
        raise TypeError(f"build_sam2(seed=...): no initialisation rule for {left[:5]}")
