"""Loading SAM 2 checkpoints: Meta's ``sam2.1_hiera_*.pt`` / ``sam2_hiera_*.pt`` and Hugging Face ``Sam2Model``.

Meta's files hold ``{"model": state_dict}`` of the whole video model; its image path is loaded
exactly, and the video modules' keys are passed over only when they start with one of
:data:`VIDEO_KEY_PREFIXES` (any other unexpected key is an error). The model type is inferred
from the trunk's shapes. Hugging Face names are converted to Meta's (and back, for export)
with :func:`hf_state_dict_to_meta` and :func:`meta_state_dict_to_hf`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from infra.errors import CheckpointError
from supernet.checkpoint import IGNORED_KEYS, check_exact, read_state_dict
from supernet.modeling.sam2.arch import SAM2_ARCHS
from supernet.elastic.sam2_modules import ElasticHiera
from supernet.modeling.sam2.build import build_sam2
from supernet.modeling.sam2.hiera import Hiera
from supernet.modeling.sam2.model import Sam2

# SAM 2's video modules (memory attention and encoder, object pointers, temporal encodings):
# present in Meta's SAM 2.0 and 2.1 checkpoints, not part of the image model.
VIDEO_KEY_PREFIXES = (
    "memory_attention.", "memory_encoder.", "maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr",
    "no_obj_embed_spatial", "obj_ptr_proj.", "obj_ptr_tpos_proj.", "mask_downsample.",
)
_TRUNK = "image_encoder.trunk."
_HF_TRUNK = "vision_encoder.backbone."
_SAM1_ENCODER = ("image_encoder.blocks.", "vision_encoder.layers.")

# (Meta, Hugging Face) name pieces, applied in this order both ways; "^" anchors at the start and
# "{n}" stands for a number. MLP layer names are mapped separately (:func:`_rename_mlp`).
_RENAMES = [
    ("^image_encoder.trunk.", "^vision_encoder.backbone."),
    ("^image_encoder.neck.convs.{n}.conv.", "^vision_encoder.neck.convs.{n}."),
    ("^sam_prompt_encoder.", "^prompt_encoder."),
    ("^sam_mask_decoder.", "^mask_decoder."),
    ("^no_mem_embed", "^no_memory_embedding"),
    (".patch_embed.proj.", ".patch_embed.projection."),
    (".pe_layer.positional_encoding_gaussian_matrix", ".shared_embedding.positional_embedding"),
    (".mask_downscaling.0.", ".mask_embed.conv1."),
    (".mask_downscaling.1.", ".mask_embed.layer_norm1."),
    (".mask_downscaling.3.", ".mask_embed.conv2."),
    (".mask_downscaling.4.", ".mask_embed.layer_norm2."),
    (".mask_downscaling.6.", ".mask_embed.conv3."),
    (".output_upscaling.0.", ".upscale_conv1."),
    (".output_upscaling.1.", ".upscale_layer_norm."),
    (".output_upscaling.3.", ".upscale_conv2."),
    (".norm{n}.", ".layer_norm{n}."),
    (".norm_final_attn.", ".layer_norm_final_attn."),
    (".out_proj.", ".o_proj."),
]
_HF_POINT_EMBED = "prompt_encoder.point_embed.weight"  # (4, C): Meta's point_embeddings.{0..3}.weight, (1, C) each
_HF_SHARED_PE = "shared_image_embedding.positional_embedding"  # a copy of the prompt encoder's Fourier matrix


def _piece_regex(piece: str) -> str:
    anchored = piece.startswith("^")
    body = re.escape(piece.lstrip("^")).replace(re.escape("{n}"), r"(\d+)")
    return ("^" if anchored else "") + body


def _rename(key: str, to_hf: bool) -> str:
    for meta, hf in _RENAMES:
        src, dst = (meta, hf) if to_hf else (hf, meta)
        key = re.sub(_piece_regex(src), dst.lstrip("^").replace("{n}", r"\1"), key)
    return key


def _rename_mlp(key: str, depths: dict[str, int], to_hf: bool) -> str:
    """An n-layer MLP is ``layers.0 .. layers.(n-1)`` in Meta's names and ``proj_in, layers.0 ..
    layers.(n-3), proj_out`` in Hugging Face's; ``depths`` gives n per MLP (keyed by the HF prefix)."""
    pattern = r"(.*)\.layers\.(\d+)\.(weight|bias)$" if to_hf else r"(.*)\.(proj_in|proj_out|layers\.\d+)\.(weight|bias)$"
    match = re.match(pattern, key)
    if match is None or match.group(1) not in depths:
        return key
    prefix, part, kind = match.groups()
    n = depths[prefix]
    if to_hf:
        i = int(part)
        part = "proj_in" if i == 0 else "proj_out" if i == n - 1 else f"layers.{i - 1}"
    else:
        part = "layers.0" if part == "proj_in" else f"layers.{n - 1}" if part == "proj_out" else \
            f"layers.{int(part.split('.')[1]) + 1}"
    return f"{prefix}.{part}.{kind}"


def _mlp_depths(meta_keys) -> dict[str, int]:
    """Layers per MLP, keyed by the MLP's Hugging Face name, from Meta-layout keys."""
    depths: dict[str, int] = {}
    for key in meta_keys:
        match = re.match(r"(.*)\.layers\.(\d+)\.weight$", key)
        if match:
            prefix = _rename(match.group(1) + ".", to_hf=True)[:-1]
            depths[prefix] = max(depths.get(prefix, 0), int(match.group(2)) + 1)
    return depths


def hf_state_dict_to_meta(state_dict: dict[str, torch.Tensor], meta_keys) -> dict[str, torch.Tensor]:
    """A Hugging Face ``Sam2Model`` state dict in Meta's names; ``meta_keys`` are the model's (MLP depths).

    A key with no Meta counterpart keeps a name the model lacks, so the exact-load check reports it.
    """
    shared, prompt_pe = state_dict.get(_HF_SHARED_PE), state_dict.get("prompt_encoder.shared_embedding.positional_embedding")
    if shared is not None and prompt_pe is not None and not shared.is_meta and not torch.equal(shared, prompt_pe):
        raise CheckpointError(f"{_HF_SHARED_PE} differs from prompt_encoder.shared_embedding.positional_embedding; "
                              f"SAM 2 has one Fourier matrix for both")
    depths = _mlp_depths(meta_keys)
    out = {}
    for key, value in state_dict.items():
        if key == _HF_SHARED_PE:
            continue
        if key == _HF_POINT_EMBED:
            out.update({f"sam_prompt_encoder.point_embeddings.{i}.weight": row for i, row in enumerate(value.split(1))})
            continue
        out[_rename(_rename_mlp(key, depths, to_hf=False), to_hf=False)] = value
    return out


def meta_state_dict_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our image model's (Meta-layout) state dict in Hugging Face ``Sam2Model`` names."""
    depths = _mlp_depths(state_dict)
    points = [f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(4)]
    out = {_rename_mlp(_rename(k, to_hf=True), depths, to_hf=True): v
           for k, v in state_dict.items() if k not in points}
    out[_HF_POINT_EMBED] = torch.cat([state_dict[k] for k in points])
    out[_HF_SHARED_PE] = state_dict["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    return out


def sam2_layout(state_dict: dict[str, torch.Tensor]) -> str | None:
    """'meta' or 'hf' for a SAM 2 state dict (Hiera trunk keys), None for anything else."""
    if any(k.startswith(_TRUNK) for k in state_dict):
        return "meta"
    if any(k.startswith(_HF_TRUNK) for k in state_dict):
        return "hf"
    return None


def is_sam2_file(path: str | Path) -> bool:
    """Whether the checkpoint at ``path`` holds SAM 2 weights (either layout), judged by its key names.

    A zip-format PyTorch file is memory-mapped, not read; an unreadable file raises the same one-line
    :class:`CheckpointError` as loading it would.
    """
    try:
        keys = read_state_dict(path, mmap=True)
    except CheckpointError:  # an older, non-zip file cannot be mapped: read it (or name why it is unreadable)
        keys = read_state_dict(path)
    return sam2_layout(keys) is not None


def infer_sam2_model_type(state_dict: dict[str, torch.Tensor]) -> str:
    """The SAM 2 model type whose trunk width, blocks per stage and neck width match a Meta-layout state dict."""
    try:
        embed_dim = state_dict[_TRUNK + "patch_embed.proj.weight"].shape[0]
        bkg = tuple(state_dict[_TRUNK + "pos_embed"].shape[2:])
        d_model = state_dict["image_encoder.neck.convs.0.conv.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"{exc.args[0]} missing: cannot tell the SAM 2 model type") from None
    depth = 1 + max(int(k.split(".")[3]) for k in state_dict if k.startswith(_TRUNK + "blocks."))
    firsts = [i for i in range(depth) if f"{_TRUNK}blocks.{i}.proj.weight" in state_dict]
    stages = tuple(b - a for a, b in zip([0, *firsts], [*firsts, depth]))
    for name, arch in SAM2_ARCHS.items():
        if (arch.embed_dim, arch.stages, arch.window_pos_embed_bkg, arch.d_model) == (embed_dim, stages, bkg, d_model):
            return name
    raise CheckpointError(f"trunk width {embed_dim}, blocks per stage {list(stages)}, neck width {d_model} "
                          f"match no SAM 2 model type of {sorted(SAM2_ARCHS)}")


def image_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Meta-layout SAM 2 state dict without the video modules' keys (:data:`VIDEO_KEY_PREFIXES`) and pixel stats."""
    return {k: v for k, v in state_dict.items() if not k.startswith(VIDEO_KEY_PREFIXES) and k not in IGNORED_KEYS}


def sam2_state_dict_from_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str, str]:
    """A SAM 2 checkpoint's image-model tensors in Meta names, its layout ('meta' or 'hf') and model type.

    A SAM 1 checkpoint, or anything without a Hiera trunk, is a one-line :class:`CheckpointError`.
    """
    raw = read_state_dict(path)
    layout = sam2_layout(raw)
    if layout is None:
        if any(k.startswith(_SAM1_ENCODER) for k in raw):
            raise CheckpointError(f"{path}: a SAM 1 checkpoint (ViT encoder keys image_encoder.blocks.*); expected "
                                  f"SAM 2 / 2.1 (Hiera trunk keys image_encoder.trunk.*): use a SAM 1 model type")
        raise CheckpointError(f"{path}: no image_encoder.trunk.* (Meta) or vision_encoder.backbone.* (Hugging Face) "
                              f"keys: not a SAM 2 checkpoint")
    try:
        if layout == "hf":
            probe = {_rename(k, to_hf=False): v for k, v in raw.items() if k.startswith(_HF_TRUNK)}
            probe["image_encoder.neck.convs.0.conv.weight"] = raw.get("vision_encoder.neck.convs.0.weight")
            with torch.device("meta"):  # key names only
                keys = list(build_sam2(infer_sam2_model_type(probe)).state_dict())
            raw = hf_state_dict_to_meta(raw, keys)
        state = image_state_dict(raw)
        model_type = infer_sam2_model_type(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return state, layout, model_type


def load_sam2(path: str | Path, model_type: str | None = None, img_size: int | None = None,
              elastic: bool = False) -> Sam2:
    """Build the SAM 2 image model a checkpoint describes and load it exactly.

    ``model_type`` (``sam2_hiera_t``, ...) is checked against the file when given, inferred
    otherwise; ``img_size`` is the input side in pixels (default the model's, 1024). With
    ``elastic`` the trunk is the supernet's (``supernet.elastic.sam2_modules.ElasticHiera``;
    same keys, and the same outputs until a subnet is activated).
    """
    state, _, found = sam2_state_dict_from_file(path)
    if model_type is not None and model_type != found:
        raise CheckpointError(f"{path}: model type {model_type} given, but the weights are a {found} model")
    with torch.device("meta"):
        model = build_sam2(found, img_size=img_size, trunk_cls=ElasticHiera if elastic else Hiera)
    return assign_exact(model, state, str(path))


def assign_exact(model: Sam2, state: dict[str, torch.Tensor], source: str) -> Sam2:
    """``model``, built on the meta device, holding exactly ``state`` (fp32); a one-line CheckpointError
    naming ``source`` when the key sets or shapes differ."""
    check_exact(model.state_dict(), state, source)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    # non-persistent buffers were built on the meta device: rebuild them on the weights' device
    model.pixel_mean = torch.tensor(model.arch.pixel_mean).view(-1, 1, 1)
    model.pixel_std = torch.tensor(model.arch.pixel_std).view(-1, 1, 1)
    return model.eval()
