"""Subnet extraction: a standalone, physically smaller SAM with sliced weights.

``extract(supernet, config)`` copies the active slices into a plain model (``nn.Linear``
layers of the subnet's own widths, no run-time slicing, so quantizers, ``torch.compile``
and exporters accept it); skipped blocks are dropped, the position embedding and the global
blocks' relative positions are resampled once to the subnet resolution. Its outputs equal
the supernet's with the same config active. ``save_subnet`` writes ``subnet.pt`` (state
dict) and ``subnet.json`` (config + architecture), which ``load_subnet`` reads back with
no supernet at hand.

Precision: blocks whose config says ``precision: int8`` are dynamically quantized
(``supernet.elastic.quantize``) by ``extract`` and ``load_subnet`` unless asked for the fp32
weights (``quantize=False``). A saved subnet always holds the fp32 weights; ``subnet.json``'s
config carries the precision, so loading quantizes it again (dynamic quantization is a
deterministic function of the weights). ``subnet.json`` format 2 added precision; format 1
files (from before) are read as all-fp32.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from supernet.modeling.arch import SamArch
from supernet.modeling.build import build_from_spec
from supernet.checkpoint import load_state_dict_exact, read_state_dict
from supernet.elastic.activation import check_fits
from supernet.elastic.quantize import is_quantized, quantize_subnet
from supernet.elastic.sam2_extract import FAMILY as SAM2_FAMILY
from supernet.elastic.sam2_extract import build_sam2_subnet, extract_sam2, read_sam2_subnet_shape, sam2_subnet_metadata
from supernet.elastic.subnet_config import SubnetConfig
from infra.errors import CheckpointError, ConfigError
from supernet.modeling.image_encoder import resize_pos_embed, resize_rel_pos
from infra.fileio import atomic_torch_save, atomic_write_text, read_format_json
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

SUBNET_FORMAT = "samnas-subnet/2"  # 2: the config's blocks may carry `precision`
SUBNET_FORMATS_READ = ("samnas-subnet/1", SUBNET_FORMAT)  # 1 predates precision: every block fp32


def subnet_blocks_spec(model: Sam, config: SubnetConfig) -> list[tuple[int, int, int]]:
    """``(heads, mlp, window)`` of each kept block, in order."""
    return [
        (spec.heads, spec.mlp, block.window_size)
        for spec, block in zip(config.blocks, model.image_encoder.blocks)
        if spec.keep
    ]


@torch.no_grad()
def extract(model: Sam | Sam2, config: SubnetConfig, quantize: bool = True) -> Sam | Sam2:
    """A standalone, plain :class:`Sam` holding only ``config``'s weights (nothing sliced at run time);
    for a SAM 2 supernet a plain :class:`Sam2` (:func:`supernet.elastic.sam2_extract.extract_sam2`).

    With ``quantize`` (the default) the config's int8 blocks come dynamically quantized, as the
    subnet runs; ``quantize=False`` returns the fp32 weights (what ``save_subnet`` stores and the
    ONNX exporter traces).
    """
    if isinstance(model, Sam2):
        sub2 = extract_sam2(model, config)
        return quantize_subnet(sub2, config, inplace=True) if quantize else sub2
    check_fits(model, config)
    res = config.resolution
    grid = res // model.image_encoder.patch_size
    sub = build_from_spec(model.arch, subnet_blocks_spec(model, config), img_size=res)
    src_enc, dst_enc = model.image_encoder, sub.image_encoder
    dst_enc.patch_embed.load_state_dict(src_enc.patch_embed.state_dict())
    dst_enc.pos_embed.copy_(resize_pos_embed(src_enc.pos_embed, grid))
    dst_enc.neck.load_state_dict(src_enc.neck.state_dict())
    kept = [(spec, blk) for spec, blk in zip(config.blocks, src_enc.blocks) if spec.keep]
    for (spec, src), dst in zip(kept, dst_enc.blocks):
        _copy_block(src, dst, spec.heads, spec.mlp, grid)
    sub.prompt_encoder.load_state_dict(model.prompt_encoder.state_dict())
    sub.mask_decoder.load_state_dict(model.mask_decoder.state_dict())
    sub.eval()
    return quantize_subnet(sub, config, inplace=True) if quantize else sub


def _copy_block(src, dst, heads: int, mlp: int, grid: int) -> None:
    hd = src.attn.head_dim
    dst.norm1.load_state_dict(src.norm1.state_dict())
    dst.norm2.load_state_dict(src.norm2.state_dict())
    weight, bias = src.attn.qkv_slice(heads)
    dst.attn.qkv.weight.copy_(weight)
    dst.attn.qkv.bias.copy_(bias)
    dst.attn.proj.weight.copy_(src.attn.proj.weight[:, : heads * hd])
    dst.attn.proj.bias.copy_(src.attn.proj.bias)
    size = grid if src.is_global else src.window_size
    dst.attn.rel_pos_h.copy_(resize_rel_pos(src.attn.rel_pos_h, size))
    dst.attn.rel_pos_w.copy_(resize_rel_pos(src.attn.rel_pos_w, size))
    dst.mlp.lin1.weight.copy_(src.mlp.lin1.weight[:mlp])
    dst.mlp.lin1.bias.copy_(src.mlp.lin1.bias[:mlp])
    dst.mlp.lin2.weight.copy_(src.mlp.lin2.weight[:, :mlp])
    dst.mlp.lin2.bias.copy_(src.mlp.lin2.bias)


def subnet_metadata(model: Sam | Sam2, config: SubnetConfig, **extra) -> dict:
    """What ``subnet.json`` holds: format, config, the base architecture and each kept block's shape.

    SAM 2 (``family: sam2``): the subnet's own architecture and each kept block's spec as a mapping.
    """
    if isinstance(model, Sam2):
        return {"format": SUBNET_FORMAT, "config": config.to_dict(), "resolution": config.resolution,
                **sam2_subnet_metadata(model, config), **extra}
    return {
        "format": SUBNET_FORMAT,
        "model_type": model.arch.name,
        "config": config.to_dict(),
        "resolution": config.resolution,
        "arch": model.arch.to_dict(),
        "blocks_spec": [list(s) for s in subnet_blocks_spec(model, config)],
        **extra,
    }


def save_subnet(subnet: Sam | Sam2, metadata: dict, out_dir: str | Path) -> Path:
    """Write ``subnet.pt`` and ``subnet.json`` into ``out_dir`` atomically; returns the folder.

    ``subnet`` must hold fp32 weights (``extract(..., quantize=False)``): ``metadata``'s config
    carries the precision, and ``load_subnet`` quantizes on load.
    """
    if is_quantized(subnet):
        raise ValueError("save_subnet stores fp32 weights: pass extract(model, config, quantize=False); "
                         "the config's precision makes load_subnet quantize the int8 blocks")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(subnet.state_dict(), out / "subnet.pt")
    atomic_write_text(out / "subnet.json", json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return out


def load_subnet(folder: str | Path, quantize: bool = True) -> Sam | Sam2:
    """Rebuild an extracted subnet from ``subnet.json`` + ``subnet.pt`` without the supernet.

    With ``quantize`` (the default) the int8 blocks of ``subnet.json``'s config are quantized.
    """
    folder = Path(folder)
    meta_path = folder / "subnet.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: not found; expected a folder written by `samnas extract`")
    meta = read_format_json(meta_path, SUBNET_FORMATS_READ)
    if meta.get("family") == SAM2_FAMILY:
        return _load_sam2_subnet(folder, meta, quantize)
    try:
        arch_fields = dict(meta["arch"])
        arch_fields["global_attn_indexes"] = tuple(arch_fields["global_attn_indexes"])
        for key in ("pixel_mean", "pixel_std"):
            arch_fields[key] = tuple(arch_fields[key])
        arch = SamArch(**arch_fields)
        spec = [tuple(int(v) for v in s) for s in meta["blocks_spec"]]
        res = int(meta["resolution"])
        config = SubnetConfig.from_dict(meta["config"])
        if len(config.kept_blocks) != len(spec):
            raise ValueError(f"config keeps {len(config.kept_blocks)} blocks, blocks_spec has {len(spec)}")
    except ConfigError as exc:
        raise CheckpointError(f"{meta_path}: missing or malformed field (config.{exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{meta_path}: missing or malformed field ({exc})") from None
    model = build_from_spec(arch, spec, img_size=res)
    load_state_dict_exact(model, read_state_dict(folder / "subnet.pt"), str(folder / "subnet.pt"))
    model.eval()
    return quantize_subnet(model, config, inplace=True) if quantize else model



def _load_sam2_subnet(folder: Path, meta: dict, quantize: bool) -> Sam2:
    """:func:`load_subnet` of a SAM 2 subnet folder (``subnet.json`` with ``family: sam2``)."""
    meta_path, weights = folder / "subnet.json", folder / "subnet.pt"
    try:
        config = SubnetConfig.from_dict(meta["config"])
        if len(config.kept_blocks) != len(meta["blocks_spec"]):
            raise ValueError(f"config keeps {len(config.kept_blocks)} blocks, blocks_spec has "
                             f"{len(meta['blocks_spec'])}")
        arch, specs = read_sam2_subnet_shape(meta)
        resolution = int(meta["resolution"])
    except ConfigError as exc:
        raise CheckpointError(f"{meta_path}: missing or malformed field (config.{exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{meta_path}: missing or malformed field ({exc})") from None
    model = build_sam2_subnet(arch, specs, resolution, read_state_dict(weights), str(weights))
    return quantize_subnet(model, config, inplace=True) if quantize else model
