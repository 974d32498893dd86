"""ONNX export of a subnet's image encoder, checked against PyTorch with ONNX Runtime.

A subnet with int8 blocks (``supernet.elastic.quantize``) is exported fp32 first and then
quantized by ONNX Runtime's dynamic quantization (:func:`quantize_encoder_onnx`), restricted
to the int8 blocks' four linear layers (attention qkv/proj, MLP lin1/lin2), the same layers
``quantize_subnet`` quantizes in PyTorch.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

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


INT8_LAYERS = ("attn/qkv", "attn/proj", "mlp/lin1", "mlp/lin2")  # what quantize_subnet quantizes per block


def int8_matmul_nodes(onnx_path: str | Path, blocks: list[int]) -> list[str]:
    """Names of the MatMul nodes of the linear layers of encoder ``blocks`` (subnet numbering) in the
    exported encoder; ValueError when one is missing (the exporter named them otherwise)."""
    import onnx

    names = {n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.op_type == "MatMul"}
    wanted = [f"/blocks.{i}/{layer}/MatMul" for i in blocks for layer in INT8_LAYERS]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"{onnx_path}: no MatMul node named {missing[0]} (and {len(missing) - 1} more); "
                         "the exporter's node names changed")
    return wanted


def quantize_encoder_onnx(fp32_path: str | Path, out_path: str | Path, config: SubnetConfig, reduce_range: bool = True) -> Path:
    """Write ``out_path``: the fp32 encoder at ``fp32_path`` with the int8 blocks of ``config``
    dynamically quantized by ONNX Runtime (weights int8 per tensor, activations uint8 per call).

    ``reduce_range`` (7-bit weights, the default) keeps the u8 x s8 products from saturating on
    CPUs without VNNI, where ONNX Runtime's AVX2 kernel adds pairs of them in 16 bits
    (``benchmarks/int8.py`` compares both).
    """
    return quantize_onnx_blocks(fp32_path, out_path, config.int8_blocks(), reduce_range)


def quantize_onnx_blocks(fp32_path: str | Path, out_path: str | Path, blocks: list[int],
                         reduce_range: bool = True) -> Path:
    """Write ``out_path``: the ONNX model at ``fp32_path`` (any module whose encoder blocks are
    ``blocks.<i>``) with the linear layers of ``blocks`` dynamically quantized, as
    :func:`quantize_encoder_onnx` describes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    nodes = int8_matmul_nodes(fp32_path, blocks)
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


def compare_embeddings(got: np.ndarray, ref: np.ndarray) -> dict:
    """``max_abs``, ``rel_l2`` and ``cosine`` of embeddings ``got`` against the reference ``ref``."""
    got, ref = np.asarray(got, dtype=np.float64).ravel(), np.asarray(ref, dtype=np.float64).ravel()
    return {"max_abs": float(np.abs(got - ref).max()),
            "rel_l2": float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
            "cosine": float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))}
