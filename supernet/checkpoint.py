"""Loading SAM checkpoints: Meta's flat layout and the Hugging Face ``SamModel`` layout.

Files are read as data only: ``torch.load(weights_only=True)`` or safetensors, never pickle
code. Every load is exact: a missing or unexpected key or a shape mismatch raises one
:class:`CheckpointError` that names the file and the offending keys.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from supernet.modeling.arch import ARCHS
from supernet.elastic.build import build_sam
from infra.errors import CheckpointError
from supernet.modeling.sam import Sam

# Keys the official checkpoints may carry that are not parameters of the model.
IGNORED_KEYS = ("pixel_mean", "pixel_std")

# Meta -> Hugging Face renames, applied in order (transformers' SAM conversion convention).
_META_TO_HF = [
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
]
_HYPER_MLP = re.compile(r"output_hypernetworks_mlps\.(\d+)\.layers\.(\d)")
_HF_SHARED_PE = "shared_image_embedding.positional_embedding"


def meta_key_to_hf(key: str) -> str:
    """The Hugging Face ``SamModel`` name of a Meta-layout parameter name."""
    for old, new in _META_TO_HF:
        key = key.replace(old, new)
    return _HYPER_MLP.sub(lambda m: f"output_hypernetworks_mlps.{m.group(1)}." +
                          ("proj_in", "layers.0", "proj_out")[int(m.group(2))], key)


def _why_unreadable(path: Path, exc: Exception) -> str:
    """Words for why ``torch.load`` / safetensors refused ``path`` (their own messages can be bare opcodes)."""
    import zipfile

    head = path.open("rb").read(4096)
    if not head:
        return "the file is empty"
    if path.suffix != ".safetensors":
        if head.startswith(b"PK"):
            if not zipfile.is_zipfile(path):
                return "a damaged or truncated PyTorch zip archive"
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                return "it holds Python objects besides tensors, which weights-only loading refuses to run"
            return "a zip archive that is not a PyTorch checkpoint"
        try:
            head.decode("utf-8")
            return "a text file, not a PyTorch (.pt/.pth/.bin) or .safetensors checkpoint"
        except UnicodeDecodeError:
            pass
        if head[:1] != b"\x80":
            return "not a PyTorch checkpoint: neither a zip archive nor a pickle"
    detail = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {detail}" if len(detail) > 8 else "the file does not parse as a checkpoint"


def read_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.pth/.pt/.bin via ``torch.load(weights_only=True)``, or .safetensors).

    ``mmap``: map a zip-format PyTorch file instead of reading it (cheap when only the key names are
    needed); an older, non-zip file then is a CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # unpickling refused, truncated file, not a checkpoint at all
        raise CheckpointError(f"{path}: not a readable weights-only checkpoint ({_why_unreadable(path, exc)})") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    elif isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got {type(data).__name__}")
    return dict(data)


def detect_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """'meta' for ``image_encoder.*`` keys, 'hf' for ``vision_encoder.*`` keys; a SAM 2 checkpoint is an error."""
    if any(k.startswith(("image_encoder.trunk.", "vision_encoder.backbone.")) for k in state_dict):
        raise CheckpointError(f"a SAM 2 checkpoint (Hiera trunk keys image_encoder.trunk.*); expected SAM 1 "
                              f"(ViT encoder keys image_encoder.blocks.*, model types {sorted(ARCHS)})")
    if any(k.startswith("image_encoder.") for k in state_dict):
        return "meta"
    if any(k.startswith("vision_encoder.") for k in state_dict):
        return "hf"
    raise CheckpointError("no image_encoder.* (Meta) or vision_encoder.* (Hugging Face) keys: not a SAM checkpoint")


def infer_model_type(state_dict: dict[str, torch.Tensor], prefix: str = "image_encoder",
                     blocks: str = "blocks") -> str:
    """Model type whose encoder width, depth and input grid match a state dict's encoder tensors."""
    pos = state_dict.get(f"{prefix}.pos_embed")
    if pos is None or pos.ndim != 4:
        raise CheckpointError(f"{prefix}.pos_embed missing or not (1, G, G, C): cannot tell the model type")
    depth = len({k.split(".")[2] for k in state_dict if k.startswith(f"{prefix}.{blocks}.")})
    for name, arch in ARCHS.items():
        if (arch.embed_dim, arch.depth, arch.grid_size) == (pos.shape[3], depth, pos.shape[1]):
            return name
    raise CheckpointError(
        f"encoder width {pos.shape[3]}, depth {depth}, grid {pos.shape[1]} match no model type of {sorted(ARCHS)}"
    )


def to_meta_layout(state_dict: dict[str, torch.Tensor], reference_keys: list[str]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face state dict to Meta names, given the Meta names the model expects.

    Keys with no Meta counterpart are kept as they are, so the exact-load check reports them.
    """
    hf_to_meta = {meta_key_to_hf(k): k for k in reference_keys}
    out = {}
    for key, value in state_dict.items():
        if key == _HF_SHARED_PE:  # tied copy of the prompt encoder's PE matrix
            out.setdefault("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", value)
            continue
        out[hf_to_meta.get(key, key)] = value
    return out


def check_exact(model_sd: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], source: str) -> None:
    """Raise one CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    missing = sorted(set(model_sd) - set(loaded))
    unexpected = sorted(set(loaded) - set(model_sd))
    mismatched = [f"{k} {tuple(loaded[k].shape)} vs expected {tuple(model_sd[k].shape)}"
                  for k in sorted(set(model_sd) & set(loaded)) if loaded[k].shape != model_sd[k].shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(f"{source}: does not match the model exactly; " + "; ".join(problems))


def load_state_dict_exact(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``model``, refusing any partial or mis-shaped load."""
    model_sd = model.state_dict()
    check_exact(model_sd, state_dict, source)
    model.load_state_dict({k: v.to(model_sd[k].dtype) for k, v in state_dict.items()}, strict=True)


def sam_state_dict_from_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's tensors in Meta layout, and its layout name ('meta' or 'hf')."""
    raw = {k: v for k, v in read_state_dict(path).items() if k not in IGNORED_KEYS}
    try:
        layout = detect_layout(raw)
        if layout == "hf":
            model_type = infer_model_type(raw, prefix="vision_encoder", blocks="layers")
            with torch.device("meta"):  # key names only: allocate nothing
                reference_keys = list(build_sam(model_type).state_dict())
            raw = to_meta_layout(raw, reference_keys)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return raw, layout


def load_sam(path: str | Path, model_type: str | None = None) -> Sam:
    """Build the SAM a checkpoint describes and load it exactly.

    ``model_type`` (vit_b, vit_l, vit_h, micro) is checked against the file when given,
    inferred from tensor shapes otherwise.
    """
    state_dict, _ = sam_state_dict_from_file(path)
    try:
        found = infer_model_type(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if model_type is not None and model_type != found:
        raise CheckpointError(f"{path}: --model-type {model_type} given, but the weights are a {found} model")
    model = build_sam(found)
    load_state_dict_exact(model, state_dict, str(path))
    return model


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (every tensor's name, dtype, shape and values), first 16 hex digits.

    It follows the weights, not a file name: two checkpoints with equal weights share it, and
    any changed value changes it.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()[:16]
