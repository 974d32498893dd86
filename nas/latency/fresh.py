"""Time one exported subnet in a fresh process, as a user's own program would run it.

``samnas latency validate`` runs this file as a script (``python nas/latency/fresh.py JOB.json``),
one process per subnet, and reads one JSON line from its stdout. The job names a subnet
folder written by :func:`supernet.elastic.extract.save_subnet` (backend ``torch``: loaded with
:func:`supernet.elastic.extract.load_subnet` and run under ``inference_mode``) or an ONNX file
(backend ``onnxruntime``: a new ONNX Runtime CPU session with :func:`ort_session_options`,
as profiling uses); only that backend's libraries are imported (not ``nas.latency``,
scikit-learn or, for ONNX Runtime, torch). Set-up as in profiling: the thread count of the
device, glibc malloc's thresholds fixed first (:func:`nas.timing.steady_allocator`), warm-up
runs, then at least ``repeats`` timed runs and ``min_seconds`` of them
(:func:`nas.timing.time_callable`).

Job fields: ``backend``, ``path``, ``resolution``, ``threads``, ``repeats``, ``warmup``,
``min_seconds``, ``seed``. Output: the :class:`nas.timing.Timing` fields plus ``pid``,
``threads`` and ``allocator``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def ort_session_options(ort, threads: int):
    """ONNX Runtime session options for timing: ``threads`` intra-op threads, one inter-op thread, quiet."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def time_job(job: dict) -> dict:
    """Load and time the job's subnet in this process; the result as a JSON-ready dict."""
    from nas.timing import steady_allocator, time_callable

    allocator = steady_allocator()  # before any model memory is allocated
    import numpy as np

    threads, res = int(job["threads"]), int(job["resolution"])
    images = np.random.default_rng(job.get("seed", 0)).standard_normal((1, 3, res, res)).astype(np.float32)
    if job["backend"] == "torch":
        import torch

        from supernet.elastic.extract import load_subnet

        torch.set_num_threads(threads)
        encoder = load_subnet(job["path"]).image_encoder.eval()
        x = torch.from_numpy(images)

        def run():
            with torch.inference_mode():
                return encoder(x)
    elif job["backend"] == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(job["path"]), sess_options=ort_session_options(ort, threads),
                                    providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: images}

        def run():
            return sess.run(None, feeds)
    else:
        raise ValueError(f"unknown backend {job['backend']!r}")
    timing = time_callable(run, repeats=int(job["repeats"]), warmup=int(job["warmup"]),
                           min_seconds=float(job["min_seconds"]))
    return {**timing.as_dict(), "pid": os.getpid(), "threads": threads, "allocator": allocator}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python nas/latency/fresh.py JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(json.dumps(time_job(job)), flush=True)
    return 0


if __name__ == "__main__":
    # Run as a script: make the repository importable without importing nas.latency's package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))
