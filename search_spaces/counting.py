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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from supernet.elastic.activation import check_fits
from supernet.elastic.extract import extract
from supernet.elastic.subnet_config import SubnetConfig
from supernet.modeling.sam import Sam


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


def count_flops_fvcore(model: Sam, config: SubnetConfig) -> int:
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


def count_flops(model: Sam, config: SubnetConfig) -> int:
    """Encoder multiply-adds of ``config``, closed form (equal to :func:`count_flops_fvcore`)."""
    check_fits(model, config)
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


def count_params(model: Sam, config: SubnetConfig) -> tuple[int, int]:
    """``(encoder, whole model)`` parameter counts of the standalone subnet, closed form."""
    check_fits(model, config)
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


def count(model: Sam, config: SubnetConfig) -> Counts:
    """Parameters and FLOPs of ``config``."""
    enc_params, total = count_params(model, config)
    return Counts(enc_params, total, count_flops(model, config))
