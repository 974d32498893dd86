"""ONNX export of a subnet's image encoder and prompt decoder, checked against PyTorch with ONNX Runtime.

The prompt encoder + mask decoder export (:func:`export_decoder_onnx`) follows SAM's own ONNX
contract (``segment_anything.utils.onnx.SamOnnxModel``, see :class:`PromptDecoderOnnx`), with a
dynamic batch of prompt sets besides the dynamic number of points.

A subnet with int8 blocks (``supernet.elastic.quantize``) is exported fp32 first and then
quantized by ONNX Runtime's dynamic quantization (:func:`quantize_encoder_onnx`), restricted
to the int8 blocks' linear layers (attention qkv/proj, the MLP's two, and a SAM 2 transition's
shortcut proj: :data:`ENCODER_INT8_LAYERS`), the same layers ``quantize_subnet`` quantizes in PyTorch.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from infra.fileio import new_file_mode
from supernet.elastic.subnet_config import SubnetConfig
from supernet.elastic.quantize import is_quantized
from supernet.modeling.sam import Sam

OPSET = 17


def export_encoder_onnx(model: Sam, path: str | Path, resolution: int | None = None) -> Path:
    """Write ``model.image_encoder`` as ONNX (input ``images`` ``(1, 3, R, R)`` -> ``embeddings``), atomically.

    Uses the TorchScript-based exporter (``dynamo=False``): on torch 2.13 the dynamo
    exporter fails to translate the relative-position attention.
    """
    if is_quantized(model):
        raise ValueError("export the fp32 subnet (extract(..., quantize=False)) and quantize the ONNX model "
                         "with quantize_encoder_onnx: torch's dynamic int8 layers do not export to ONNX")
    path = Path(path)
    res = resolution or model.resolution
    example = torch.zeros(1, 3, res, res)
    with _temp_beside(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.image_encoder.eval(), (example,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=["images"], output_names=["embeddings"])
    return path


class _temp_beside:
    """Context manager: a temp file name next to ``path``, moved onto ``path`` when the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would make the model unreadable to other users
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


class _quiet_root_logger:
    """Silence the root logger's warnings for a block: ORT's quantizer logs advice on the root logger."""

    def __enter__(self) -> None:
        import logging

        self.logger = logging.getLogger()
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        self.logger.setLevel(self.level)


# The ONNX names of the linear layers ``quantize_subnet`` quantizes in encoder block ``i`` (every
# ``nn.Linear`` of the block), per model family: where the exported encoder holds its blocks, the layers
# every block has, and the layers only some blocks have. SAM's ViT block has four; SAM 2's Hiera block
# (exported inside ``Sam2EncoderCall``) names its MLP's layers ``layers.0`` / ``layers.1``, and a stage's
# transition block adds the shortcut's ``proj`` (dim -> dim_out). Attention's own MatMuls (q k^T, the
# weighted sum) are not linear layers and stay fp32 in both runtimes. A module holding a single block as
# ``blocks.0`` (the latency profiler's block kinds) passes its own ``prefix`` with its family's layers.
ENCODER_INT8_LAYERS = {
    "sam": ("/blocks.{i}/", ("attn/qkv", "attn/proj", "mlp/lin1", "mlp/lin2"), ()),
    "sam2": ("/image_encoder/trunk/blocks.{i}/", ("attn/qkv", "attn/proj", "mlp/layers.0", "mlp/layers.1"), ("proj",)),
}


def model_family(model: nn.Module) -> str:
    """A subnet's model family, the key of :data:`ENCODER_INT8_LAYERS` and the card's ``family``: ``sam2``
    for a SAM 2 model, else ``sam``."""
    from supernet.modeling.sam2.model import Sam2

    return "sam2" if isinstance(model, Sam2) else "sam"


def int8_matmul_nodes(onnx_path: str | Path, blocks: list[int], *, family: str,
                      prefix: str | None = None) -> list[str]:
    """Names of the MatMul nodes of the linear layers of encoder ``blocks`` (subnet numbering) in an
    exported graph; ValueError when a layer every block has is missing (the exporter named them otherwise).

    ``family`` (``sam`` / ``sam2``, :func:`model_family`; the caller knows it, a graph's names do not always
    tell: a single Hiera block exports as ``blocks.0`` like SAM's) picks the layer names of
    :data:`ENCODER_INT8_LAYERS`. ``prefix`` (e.g. ``/blocks.{i}/``) is where the graph holds block ``i``; None:
    where the family's exported encoder holds it.
    """
    import onnx

    names = {n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type == "MatMul"}
    encoder_prefix, layers, optional = ENCODER_INT8_LAYERS[family]
    prefix = prefix or encoder_prefix
    wanted = [f"{prefix.format(i=i)}{layer}/MatMul" for i in blocks for layer in layers]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{onnx_path}: no MatMul node named {missing[0]} (and {len(missing) - 1} more); "
                         "the exporter's node names changed")
    extra = [f"{prefix.format(i=i)}{layer}/MatMul" for i in blocks for layer in optional]
    return wanted + [name for name in extra if name in names]


def quantize_encoder_onnx(fp32_path: str | Path, out_path: str | Path, config: SubnetConfig, reduce_range: bool = True,
                          *, family: str) -> Path:
    """Write ``out_path``: the fp32 encoder at ``fp32_path`` (of model ``family``, see
    :func:`int8_matmul_nodes`) with the int8 blocks of ``config`` dynamically quantized by ONNX Runtime
    (weights int8 per tensor, activations uint8 per call).

    ``reduce_range`` (7-bit weights, the default) keeps the u8 x s8 products from saturating on
    CPUs without VNNI, where ONNX Runtime's AVX2 kernel adds pairs of them in 16 bits
    (``benchmarks/int8.py`` compares both).
    """
    return quantize_onnx_blocks(fp32_path, out_path, config.int8_blocks(), reduce_range, family=family)


def quantize_onnx_blocks(fp32_path: str | Path, out_path: str | Path, blocks: list[int], reduce_range: bool = True,
                         *, family: str, prefix: str | None = None) -> Path:
    """Write ``out_path``: the ONNX model at ``fp32_path`` with the linear layers of its encoder ``blocks``
    dynamically quantized, as :func:`quantize_encoder_onnx` describes; ``family`` and ``prefix`` say where
    the blocks' layers are (:func:`int8_matmul_nodes`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    nodes = int8_matmul_nodes(fp32_path, blocks, family=family, prefix=prefix)
    with _temp_beside(out_path) as tmp, warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(fp32_path), tmp, op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         weight_type=QuantType.QInt8, per_channel=False, reduce_range=reduce_range)
    return out_path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads, default: ORT's choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # errors only: shape-inference notes on traced graphs are not the user's concern
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_max_abs_diff(model: Sam, path: str | Path, seed: int = 0) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch embeddings on one random input."""
    return embedding_error(model, path, seed)["max_abs"]


def embedding_error(model: Sam, path: str | Path, seed: int = 0) -> dict:
    """ONNX Runtime's embeddings against ``model``'s in PyTorch on one random input (``seed``):
    ``max_abs``, ``rel_l2`` (||onnx - torch|| / ||torch||) and ``cosine`` (of the flattened embeddings)."""
    res = model.resolution
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.image_encoder(x).numpy().astype(np.float64).ravel()
    sess = onnx_session(path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].astype(np.float64).ravel()
    return compare_embeddings(got, ref)


# How far the int8 ONNX encoder may be from the same subnet quantized in PyTorch (the two runtimes
# quantize activations alike but round differently).
ONNX_INT8_TOLERANCE = {"max_rel_l2": 0.05, "min_cosine": 0.998}


def int8_within_tolerance(error: dict) -> bool:
    """Whether a :func:`compare_embeddings` result is within :data:`ONNX_INT8_TOLERANCE`."""
    return error["rel_l2"] <= ONNX_INT8_TOLERANCE["max_rel_l2"] and error["cosine"] >= ONNX_INT8_TOLERANCE["min_cosine"]


def worst_error(errors: dict[str, dict]) -> dict:
    """The worst of several :func:`compare_embeddings` results (one per encoder output): the largest
    ``max_abs`` and ``rel_l2``, the smallest ``cosine``; one result comes back as it is."""
    values = list(errors.values())
    return {"max_abs": max(e["max_abs"] for e in values), "rel_l2": max(e["rel_l2"] for e in values),
            "cosine": min(e["cosine"] for e in values)}


def compare_embeddings(got: np.ndarray, ref: np.ndarray) -> dict:
    """``max_abs``, ``rel_l2`` and ``cosine`` of embeddings ``got`` against the reference ``ref``."""
    got, ref = np.asarray(got, dtype=np.float64).ravel(), np.asarray(ref, dtype=np.float64).ravel()
    return {"max_abs": float(np.abs(got - ref).max()),
            "rel_l2": float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
            "cosine": float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))}


# ---------------------------------------------------------------------------- prompt decoder

DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")


class PromptDecoderOnnx(nn.Module):
    """Prompt encoder + mask decoder + mask upscaling of ``model`` on SAM's ONNX contract.

    Inputs: ``image_embeddings (1, C, h, w)``; ``point_coords (B, N, 2)`` float px ``(x, y)`` in the
    resized input frame; ``point_labels (B, N)`` float (1 fg, 0 bg, 2/3 box corners, -1 padding point:
    add one ``(0, 0)`` with label -1 when a prompt set has no box, as SAM's predictor does);
    ``mask_input (1, 1, 4h, 4w)`` low-res logits used when ``has_mask_input (1,)`` is 1;
    ``orig_im_size (2,)`` float ``(H, W)`` px. Outputs (all ``num_mask_tokens`` = 4 masks; SAM's
    multimask outputs are 1-3, the single mask 0): ``masks (B, 4, H, W)`` logits at the original
    size, ``iou_predictions (B, 4)``, ``low_res_masks (B, 4, 4h, 4w)``. SAM's batch is 1; B is dynamic here.
    """

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model
        self.resolution = model.resolution

    @property
    def prompt_encoder(self):
        """The model's prompt encoder (SAM 2's subclass names it differently)."""
        return self.model.prompt_encoder

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        emb = pe.pe_layer.encode((coords + 0.5) / self.resolution)  # square input frame: one scale for x and y
        labels = labels.unsqueeze(-1).expand_as(emb)
        emb = emb * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for i, point_embedding in enumerate(pe.point_embeddings):
            emb = emb + point_embedding.weight * (labels == i)
        return emb

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        return (has_mask_input * pe.mask_downscaling(mask_input)
                + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1))

    def _upscale(self, low_res: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """``Sam.postprocess_masks`` with the resized frame computed in the graph, in integers
        (``round(side * R / longest)`` exactly, as ``preprocess_shape`` rounds)."""
        size = orig_im_size.to(torch.int64)
        longest = torch.max(size)
        resized = (2 * size * self.resolution + longest) // (2 * longest)
        masks = F.interpolate(low_res, (self.resolution, self.resolution), mode="bilinear", align_corners=False)
        masks = masks[..., : resized[0], : resized[1]]
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        low_res, iou = self.model.mask_decoder.predict_masks(
            image_embeddings, self.model.prompt_encoder.get_dense_pe(),
            self._embed_points(point_coords, point_labels), self._embed_mask(mask_input, has_mask_input))
        return self._upscale(low_res, orig_im_size), iou, low_res


def decoder_shapes(model: Sam) -> dict:
    """The decoder's tensor shapes for ``model`` (``B`` prompt sets, ``N`` points, original ``H x W``)."""
    c, g = model.prompt_encoder.embed_dim, model.resolution // model.image_encoder.patch_size
    m = model.mask_decoder.num_mask_tokens
    return {"image_embeddings": [1, c, g, g], "point_coords": ["B", "N", 2], "point_labels": ["B", "N"],
            "mask_input": [1, 1, 4 * g, 4 * g], "has_mask_input": [1], "orig_im_size": [2],
            "masks": ["B", m, "H", "W"], "iou_predictions": ["B", m], "low_res_masks": ["B", m, 4 * g, 4 * g]}


def decoder_example(model: Sam, batch: int = 1, points: int = 2, orig_hw=(300, 400), seed: int = 0) -> dict:
    """A feed for the decoder (numpy float32, names :data:`DECODER_INPUTS`): random embeddings,
    points in the input frame and labels in {-1, 0, 1, 2, 3}, a random mask input used (has_mask_input 1)."""
    shapes = decoder_shapes(model)
    rng = np.random.default_rng(seed)
    return {"image_embeddings": rng.standard_normal(shapes["image_embeddings"]).astype(np.float32),
            "point_coords": (rng.random((batch, points, 2)) * model.resolution).astype(np.float32),
            "point_labels": rng.integers(-1, 4, (batch, points)).astype(np.float32),
            "mask_input": rng.standard_normal(shapes["mask_input"]).astype(np.float32),
            "has_mask_input": np.ones(1, np.float32), "orig_im_size": np.array(orig_hw, np.float32)}


def export_decoder_onnx(model: Sam, path: str | Path) -> Path:
    """Write ``model``'s :class:`PromptDecoderOnnx` as ONNX, atomically; axes ``B``, ``N`` (points) and
    the original ``H, W`` are dynamic (TorchScript-based exporter, as :func:`export_encoder_onnx`)."""
    return write_decoder_onnx(PromptDecoderOnnx(model), decoder_example(model), DECODER_INPUTS, path)


def write_decoder_onnx(decoder: nn.Module, feed: dict, input_names, path: str | Path) -> Path:
    """Write a prompt decoder on SAM's contract (SAM's or SAM 2's) as ONNX, atomically, traced on ``feed``
    (``input_names`` in order); ``B``, ``N`` and the original ``H, W`` are dynamic axes."""
    path = Path(path)
    example = tuple(torch.from_numpy(feed[name]) for name in input_names)
    points = {0: "B", 1: "N"}
    dynamic = {"point_coords": points, "point_labels": points, "masks": {0: "B", 2: "H", 3: "W"},
               "iou_predictions": {0: "B"}, "low_res_masks": {0: "B"}}
    with _temp_beside(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(decoder.eval(), example, tmp, dynamo=False, opset_version=OPSET,
                              input_names=list(input_names), output_names=list(DECODER_OUTPUTS),
                              dynamic_axes=dynamic)
    return path


# How far the exported decoder may be from PyTorch: IoU predictions and low-res logits (max abs), and the
# share of pixels where the thresholded masks at the original size agree (the lowest over the prompt cases).
DECODER_TOLERANCE = {"max_abs": 1e-3, "min_mask_agreement": 0.999}


def decoder_prompt_cases(resolution: int, seed: int = 0) -> dict[str, dict]:
    """Prompt sets in the input frame for checking a decoder export: ``points`` (fg + bg), ``box``,
    ``points+box`` and ``mask_input`` (points with a low-res mask), each ``{"coords" (1, N, 2) | None,
    "labels" (1, N) | None, "box" (1, 4) | None, "mask": bool}``."""
    rng = np.random.default_rng(seed)
    coords = (rng.random((1, 3, 2)) * resolution).astype(np.float32)
    labels = np.array([[1, 0, 1]], np.float32)
    corners = np.sort(rng.random((2, 2)) * resolution, axis=0).astype(np.float32)
    box = corners.reshape(1, 4)
    return {"points": {"coords": coords, "labels": labels, "box": None, "mask": False},
            "box": {"coords": None, "labels": None, "box": box, "mask": False},
            "points+box": {"coords": coords[:, :1], "labels": labels[:, :1], "box": box, "mask": False},
            "mask_input": {"coords": coords, "labels": labels, "box": None, "mask": True}}


def contract_points(coords, labels, box) -> tuple[np.ndarray, np.ndarray]:
    """One prompt set as SAM's ONNX contract takes it: the points, then the box's corners (labels 2, 3)
    or, with no box, SAM's padding point ``(0, 0)`` labelled -1. Shapes ``(1, N, 2)``, ``(1, N)``."""
    coords = np.zeros((1, 0, 2), np.float32) if coords is None else np.asarray(coords, np.float32)
    labels = np.zeros((1, 0), np.float32) if labels is None else np.asarray(labels, np.float32)
    extra = (np.asarray(box, np.float32).reshape(1, 2, 2), np.array([[2, 3]], np.float32)) if box is not None \
        else (np.zeros((1, 1, 2), np.float32), np.array([[-1]], np.float32))
    return np.concatenate([coords, extra[0]], axis=1), np.concatenate([labels, extra[1]], axis=1)


def _torch_decoder_outputs(model: Sam, emb, case: dict, mask, orig_hw) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's all-token masks at ``orig_hw`` and IoU predictions for one case: the single mask
    (``multimask_output=False``) then the three multimask outputs, as the ONNX graph orders them."""
    from supernet.modeling.transforms import preprocess_shape

    points = None if case["coords"] is None else (torch.from_numpy(case["coords"]), torch.from_numpy(case["labels"]))
    box = None if case["box"] is None else torch.from_numpy(case["box"])
    with torch.no_grad():
        outs = [model.decode(emb, points=points, boxes=box, masks=mask, multimask_output=multi) for multi in (False, True)]
        low, iou = torch.cat([outs[0][0], outs[1][0]], dim=1), torch.cat([outs[0][1], outs[1][1]], dim=1)
        masks = model.postprocess_masks(low, preprocess_shape(*orig_hw, model.resolution), orig_hw)
    return masks.numpy(), iou.numpy()


def decoder_error(model: Sam, run, orig_hw=(300, 400), seed: int = 0) -> dict:
    """The exported decoder against ``model`` in PyTorch on :func:`decoder_prompt_cases`.

    ``run``: a path (run with ONNX Runtime) or a callable ``feed dict -> [masks, iou, low_res]``.
    Returns ``max_abs`` (IoU predictions, the largest over cases) and ``mask_agreement`` (the lowest
    share of original-size pixels where both thresholded masks agree).
    """
    feed = decoder_example(model, orig_hw=orig_hw, seed=seed)
    emb = torch.from_numpy(feed["image_embeddings"])
    return decoder_cases_error(model, run, feed, contract_points,
                               lambda case, mask: _torch_decoder_outputs(model, emb, case, mask, orig_hw), seed)


def decoder_cases_error(model, run, feed: dict, to_contract, reference, seed: int = 0) -> dict:
    """The worst of an exported decoder against PyTorch over :func:`decoder_prompt_cases` (SAM's or SAM 2's).

    ``run`` as :func:`decoder_error`; ``feed`` the decoder's inputs but the prompts, which
    ``to_contract(coords, labels, box) -> (point_coords, point_labels)`` puts on the contract;
    ``reference(case, mask or None) -> (masks, iou)`` PyTorch's, ordered as the graph's outputs.
    """
    if not callable(run):
        sess = onnx_session(run)
        run = lambda feed: sess.run(list(DECODER_OUTPUTS), feed)  # noqa: E731
    worst = {"max_abs": 0.0, "mask_agreement": 1.0}
    for case in decoder_prompt_cases(model.resolution, seed).values():
        feed["point_coords"], feed["point_labels"] = to_contract(case["coords"], case["labels"], case["box"])
        feed["has_mask_input"] = np.array([float(case["mask"])], np.float32)
        ref_masks, ref_iou = reference(case, torch.from_numpy(feed["mask_input"]) if case["mask"] else None)
        masks, iou, _ = run(feed)
        thr = model.mask_threshold
        worst["max_abs"] = max(worst["max_abs"], float(np.abs(iou - ref_iou).max()))
        worst["mask_agreement"] = min(worst["mask_agreement"], float(((masks > thr) == (ref_masks > thr)).mean()))
    return worst


def decoder_within_tolerance(error: dict) -> bool:
    """Whether a :func:`decoder_error` result is within :data:`DECODER_TOLERANCE`."""
    return (error["max_abs"] <= DECODER_TOLERANCE["max_abs"]
            and error["mask_agreement"] >= DECODER_TOLERANCE["min_mask_agreement"])
