"""ONNX export of a subnet's image encoder, checked against PyTorch with ONNX Runtime."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from infra.fileio import new_file_mode
from supernet.modeling.sam import Sam

OPSET = 17


def export_encoder_onnx(model: Sam, path: str | Path, resolution: int | None = None) -> Path:
    """Write ``model.image_encoder`` as ONNX (input ``images`` ``(1, 3, R, R)`` -> ``embeddings``), atomically.

    Uses the TorchScript-based exporter (``dynamo=False``): on torch 2.13 the dynamo
    exporter fails to translate the relative-position attention.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    res = resolution or model.resolution
    example = torch.zeros(1, 3, res, res)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would make the model unreadable to other users
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.image_encoder.eval(), (example,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=["images"], output_names=["embeddings"])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads, default: ORT's choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_max_abs_diff(model: Sam, path: str | Path, seed: int = 0) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch embeddings on one random input."""
    res = model.resolution
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.image_encoder(x).numpy()
    sess = onnx_session(path)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - ref).max())
