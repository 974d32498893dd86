"""Per-block precision of a subnet, and dynamic int8 quantization of an extracted subnet in PyTorch.

A kept block of a subnet config may say ``precision: int8`` (``fp32`` when absent): its
attention ``qkv``/``proj`` and MLP ``lin1``/``lin2`` linear layers then run as dynamic int8
(weights int8 per tensor, activations quantized per call, ``torch.ao.quantization.quantize_dynamic``).
The patch embedding, neck, prompt encoder and mask decoder stay fp32. In SAM 2 a block is a Hiera
block, whose linear layers include a transition's shortcut ``proj``.

Quantization needs plain ``nn.Linear`` layers, so it runs on an *extracted* subnet
(``supernet.elastic.extract``), never on the weight-sharing supernet, which slices its weights
at run time and so runs fp32 only.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from supernet.elastic.subnet_config import SubnetConfig
from supernet.elastic.build import encoder_blocks
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

def is_quantized(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is a dynamically quantized linear layer."""
    return any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


def quantize_subnet(sub: Sam | Sam2, config: SubnetConfig, inplace: bool = False) -> Sam | Sam2:
    """``sub`` (extracted from ``config``) with its int8 blocks' linear layers dynamically quantized.

    Returns ``sub`` itself when ``config`` has no int8 block; otherwise a copy (or ``sub``,
    changed in place, with ``inplace``). Raises ValueError when ``sub``'s blocks do not match
    the config's kept blocks, or when ``sub`` still slices weights at run time (the supernet).
    """
    blocks = encoder_blocks(sub)
    kept = len(config.kept_blocks)
    if len(blocks) != kept:
        raise ValueError(f"the subnet has {len(blocks)} encoder blocks but the config keeps {kept}; "
                         "quantize the subnet extracted from this config")
    chosen = config.int8_blocks()
    if not chosen:
        return sub
    if any("Elastic" in type(m).__name__ for m in sub.image_encoder.modules()):
        raise ValueError("the weight-sharing supernet slices its weights at run time and runs fp32 only; "
                         "extract the subnet (supernet.elastic.extract.extract) to quantize it")
    if not inplace:
        sub = copy.deepcopy(sub)
    for i in chosen:
        quantize_modules(encoder_blocks(sub)[i])
    return sub


def quantize_modules(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Linear`` in it dynamically quantized to int8, in place (returned)."""
    with warnings.catch_warnings():  # torch.ao's eager-mode quantization warns that it is deprecated
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


__all__ = ["is_quantized", "quantize_modules", "quantize_subnet"]
