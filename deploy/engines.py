"""One model file on one runtime (ONNX Runtime or OpenVINO), called with a feed dict of numpy arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DeployError

RUNTIMES = ("onnxruntime", "openvino")
# OpenVINO's CPU plugin computes in the precision its compile-time hint names (bf16 where the CPU has it).
OPENVINO_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_config(precision: str = "fp32", threads: int | None = None) -> dict:
    """OpenVINO CPU compile properties: precision hint (``fp32`` -> ``f32``, ``bf16``), latency mode,
    and ``threads`` inference threads when given (else OpenVINO's choice)."""
    if precision not in OPENVINO_PRECISION_HINTS:
        raise DeployError(f"precision {precision!r}: expected one of {sorted(OPENVINO_PRECISION_HINTS)}")
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION_HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def ort_session_options(ort, threads: int | None = None):
    """ONNX Runtime session options: ``threads`` intra-op threads when given (else ONNX Runtime's choice), one
    inter-op thread, warnings off. ``ort`` is the imported ``onnxruntime`` module."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def available_runtimes() -> list[str]:
    """The runtimes importable here, in :data:`RUNTIMES` order."""
    import importlib.util

    return [r for r in RUNTIMES if importlib.util.find_spec(r) is not None]


class Engine:
    """``path`` (``.onnx``, or ``.xml`` IR for OpenVINO) compiled for the CPU; ``engine(feed)`` -> ``{output name: array}``."""

    def __init__(self, path: str | Path, runtime: str, threads: int | None = None, precision: str = "fp32") -> None:
        self.path, self.runtime = Path(path), runtime
        if runtime == "onnxruntime":
            if precision != "fp32":
                raise DeployError(f"precision {precision!r}: ONNX Runtime runs these models in fp32 only")
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(path), sess_options=ort_session_options(ort, threads),
                                                 providers=["CPUExecutionProvider"])
            self.outputs = [o.name for o in self._session.get_outputs()]
        elif runtime == "openvino":
            import openvino as ov

            self._compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(precision, threads))
            self.outputs = [o.get_any_name() for o in self._compiled.outputs]
        else:
            raise DeployError(f"runtime {runtime!r}: expected one of {list(RUNTIMES)}")

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.runtime == "onnxruntime":
            values = self._session.run(self.outputs, feed)
        else:
            result = self._compiled(feed)  # copies the outputs out of the request's buffers
            values = [np.asarray(result[o]) for o in self._compiled.outputs]
        return dict(zip(self.outputs, values))
