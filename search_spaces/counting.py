"""Parameter and FLOP counts of subnet configs.

Convention (fvcore's): one multiply-add counts as **one flop**, so "FLOPs" here are MACs;
element-wise operations (activations, additions, softmax) are not counted, layer norms
count 5 per element. ``count_flops_fvcore`` traces the extracted subnet with
``fvcore.nn.FlopCountAnalysis`` (plus handlers for ``scaled_dot_product_attention``,
which fvcore lacks, and for ``einsum``, counted exactly as the product of its index
sizes where fvcore estimates it through numpy's contraction path); ``count_flops`` computes the same number in closed form, in
microseconds, for use inside a search. A test checks the two agree exactly.

Counts cover the image encoder (the searched part) at the config's resolution.
Parameters are reported both for the encoder and for the whole standalone subnet.

SAM 2 (a :class:`Sam2` supernet) counts its image encoder likewise: the Hiera trunk (patch
embedding, blocks on zero-padded windows, pooled queries at transitions, the transition
shortcuts) and the FPN neck (its four lateral convolutions and the one nearest upsampling);
the bicubic resampling of the position embedding and the max-pools are not counted (fvcore
has no rule for them), nor are the decoder's ``conv_s0``/``conv_s1``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from supernet.elastic.activation import check_fits
from supernet.elastic.extract import extract
from supernet.elastic.subnet_config import SubnetConfig
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.arch import Sam2BlockSpec
from supernet.modeling.sam2.model import Sam2


@dataclass(frozen=True)
class Counts:
    """Size of one subnet: parameters (count) and encoder FLOPs (multiply-adds)."""

    encoder_params: int
    total_params: int
    encoder_flops: int

    def as_dict(self) -> dict:
        return {"encoder_params": self.encoder_params, "params": self.total_params, "flops": self.encoder_flops}


def _sdpa_flop_handle(inputs, outputs) -> int:
    """fvcore handler: Q@K^T and A@V, each ``batch * Nq * Nk * d`` multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    batch = math.prod(q[:-2])
    return 2 * batch * q[-2] * k[-2] * q[-1]


def _einsum_flop_handle(inputs, outputs) -> int:
    """fvcore handler: an einsum's multiply-adds are the product of all its index sizes."""
    from fvcore.nn.jit_handles import get_shape

    equation = inputs[0].toIValue().replace(" ", "")
    operands = [get_shape(v) for v in inputs[1].node().inputs()]
    sizes: dict[str, int] = {}
    for letters, shape in zip(equation.split("->")[0].split(","), operands):
        sizes.update(zip(letters, shape))
    return math.prod(sizes.values())


def count_flops_fvcore(model: Sam | Sam2, config: SubnetConfig) -> int:
    """Encoder multiply-adds of ``config`` traced by fvcore on the extracted subnet."""
    from fvcore.nn import FlopCountAnalysis

    sub = extract(model, config, quantize=False)  # counts the same, whatever the precision
    res = config.resolution
    analysis = FlopCountAnalysis(sub.image_encoder, torch.zeros(1, 3, res, res))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_handle)
    analysis.set_op_handle("aten::einsum", _einsum_flop_handle)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total())


def count_flops(model: Sam | Sam2, config: SubnetConfig) -> int:
    """Encoder multiply-adds of ``config``, closed form (equal to :func:`count_flops_fvcore`)."""
    check_fits(model, config)
    if isinstance(model, Sam2):
        return _sam2_flops(model, config)
    enc = model.image_encoder
    c, p = enc.pos_embed.shape[-1], enc.patch_size
    out = enc.neck[0].out_channels
    g = config.resolution // p
    tokens = g * g
    flops = tokens * c * 3 * p * p  # patch embedding
    for spec, block in zip(config.blocks, enc.blocks):
        if not spec.keep:
            continue
        h, m, hd = spec.heads, spec.mlp, block.attn.head_dim
        side = block.window_size or g
        windows = math.ceil(g / side) ** 2 if block.window_size else 1
        padded = windows * side * side  # tokens after window padding
        flops += 2 * 5 * tokens * c  # two layer norms
        flops += padded * c * 3 * h * hd + padded * h * hd * c  # qkv, proj
        flops += 2 * windows * h * side * side * side * hd  # decomposed rel-pos einsums
        flops += 2 * windows * h * (side * side) ** 2 * hd  # attention: QK^T and AV
        flops += 2 * tokens * c * m  # MLP
    flops += tokens * c * out + tokens * out * out * 9  # neck convolutions
    return int(flops)


def count_params(model: Sam | Sam2, config: SubnetConfig) -> tuple[int, int]:
    """``(encoder, whole model)`` parameter counts of the standalone subnet, closed form."""
    check_fits(model, config)
    if isinstance(model, Sam2):
        return _sam2_params(model, config)
    enc = model.image_encoder
    g = config.resolution // enc.patch_size
    fixed_enc = sum(x.numel() for x in enc.patch_embed.parameters()) + sum(x.numel() for x in enc.neck.parameters())
    fixed_enc += g * g * enc.pos_embed.shape[-1]
    c = enc.pos_embed.shape[-1]
    blocks = 0
    for spec, block in zip(config.blocks, enc.blocks):
        if not spec.keep:
            continue
        h, m, hd = spec.heads, spec.mlp, block.attn.head_dim
        side = block.window_size or g
        blocks += 4 * c  # two layer norms
        blocks += (c + 1) * 3 * h * hd + h * hd * c + c  # qkv, proj
        blocks += 2 * (2 * side - 1) * hd  # rel-pos tables
        blocks += (c + 1) * m + m * c + c  # MLP
    encoder = fixed_enc + blocks
    rest = sum(x.numel() for x in model.prompt_encoder.parameters()) + sum(
        x.numel() for x in model.mask_decoder.parameters())
    return encoder, encoder + rest


def _hiera_block_flops(spec: Sam2BlockSpec, heads: int, mlp: int, side: int) -> int:
    """Multiply-adds of one Hiera block at ``heads`` and ``mlp`` on a ``side`` x ``side`` input grid (tokens)."""
    dim, out, hd, window = spec.dim, spec.dim_out, spec.head_dim, spec.window
    tokens = side * side
    side_out = side // 2 if spec.q_pool else side
    flops = 5 * tokens * dim + 5 * side_out * side_out * out  # two layer norms
    if dim != out:
        flops += tokens * dim * out  # the transition's shortcut projection, before pooling
    if window:
        windows, keys = math.ceil(side / window) ** 2, window * window  # zero-padded windows
        queries = (window // 2) ** 2 if spec.q_pool else keys
    else:
        windows, keys, queries = 1, tokens, side_out * side_out
    width = heads * hd
    flops += windows * keys * dim * 3 * width  # qkv
    flops += 2 * windows * heads * queries * keys * hd  # attention: QK^T and AV
    flops += windows * queries * width * out  # proj
    return flops + 2 * side_out * side_out * out * mlp  # MLP


def _sam2_flops(model: Sam2, config: SubnetConfig) -> int:
    """Image-encoder multiply-adds of a SAM 2 config (trunk and neck), fvcore's convention."""
    trunk, neck = model.image_encoder.trunk, model.image_encoder.neck
    side = config.resolution // 4  # the patch embedding's stride
    flops = side * side * trunk.patch_embed.proj.out_channels * 3 * 7 * 7
    sides = []
    for choice, block in zip(config.blocks, trunk.blocks):
        if choice.keep:
            flops += _hiera_block_flops(block.spec, choice.heads, choice.mlp, side)
        side = side // 2 if block.spec.q_pool else side
        if len(sides) == block.spec.stage:
            sides.append(side)  # each stage's output grid (a stage's first block is always kept)
    widths = trunk.channel_list[::-1]  # stage widths, stride 4 first
    flops += sum(s * s * c * neck.d_model for s, c in zip(sides, widths))  # lateral 1x1 convolutions
    top_down = [i for i in neck.fpn_top_down_levels if i < len(sides) - 1]  # the coarsest has none above it
    return int(flops + sum(sides[i] ** 2 * neck.d_model for i in top_down))  # nearest 2x upsampling


def _sam2_params(model: Sam2, config: SubnetConfig) -> tuple[int, int]:
    """``(image encoder, whole model)`` parameters of a SAM 2 subnet, closed form."""
    enc = model.image_encoder
    trunk = enc.trunk
    fixed = sum(p.numel() for p in [*trunk.patch_embed.parameters(), trunk.pos_embed, trunk.pos_embed_window,
                                    *enc.neck.parameters()])
    blocks = 0
    for choice, block in zip(config.blocks, trunk.blocks):
        if not choice.keep:
            continue
        spec, width, m = block.spec, choice.heads * block.spec.head_dim, choice.mlp
        dim, out = spec.dim, spec.dim_out
        blocks += 2 * dim + 2 * out  # layer norms
        blocks += (dim + 1) * 3 * width + width * out + out  # qkv, proj
        blocks += (out + 1) * m + m * out + out  # MLP
        if dim != out:
            blocks += dim * out + out  # the transition's shortcut projection
    encoder = fixed + blocks
    rest = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("image_encoder."))
    return encoder, encoder + rest


def count(model: Sam | Sam2, config: SubnetConfig) -> Counts:
    """Parameters and FLOPs of ``config``."""
    enc_params, total = count_params(model, config)
    return Counts(enc_params, total, count_flops(model, config))
