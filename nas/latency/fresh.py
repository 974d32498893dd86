"""Time one exported subnet in a fresh process, as a user's own program would run it.

``samnas latency validate`` runs this file as a script (``python nas/latency/fresh.py JOB.json``),
one process per subnet, and reads one JSON line from its stdout. The job names a subnet
folder written by :func:`supernet.elastic.extract.save_subnet` (backend ``torch``: loaded with
:func:`supernet.elastic.extract.load_subnet`, its image encoder run by ``embed_images`` under
``inference_mode``: for SAM 2 with the decoder's high-resolution projections) or an ONNX file
(backend ``onnxruntime``: a new ONNX Runtime CPU session with :func:`ort_session_options`,
as profiling uses); only that backend's libraries are imported (not ``nas.latency``,
scikit-learn or, for ONNX Runtime, torch). Set-up as in profiling: the thread count of the
device, glibc malloc's thresholds fixed first (:func:`nas.measure.timing.steady_allocator`), warm-up
runs, then at least ``repeats`` timed runs and ``min_seconds`` of them
(:func:`nas.measure.timing.time_callable`).

Job fields: ``backend`` (``torch``, ``onnxruntime`` or ``openvino``: the ONNX file read by OpenVINO's CPU
plugin), ``precision`` (``fp32`` or ``bf16``; absent: fp32), ``path``, ``resolution``, ``threads``, ``repeats``, ``warmup``,
``min_seconds``, ``seed``; optionally ``probe_path`` and ``probe_resolution`` (a drift probe
subnet, saved the same way, timed interleaved with the subnet). Output: the
:class:`nas.measure.timing.Timing` fields plus ``pid``, ``threads`` and ``allocator`` (and
``probe_median_ms`` with a probe).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PROBE_ROUNDS = 4  # interleaved rounds of subnet and probe, when the job names a probe


def load_runner(backend: str, path: str, resolution: int, threads: int, seed: int = 0, precision: str = "fp32"):
    """A zero-argument callable running the saved subnet (folder) or ONNX file at ``path`` on one fixed image.

    ``precision`` bf16: torch runs under bf16 autocast, OpenVINO compiles with the bf16 hint."""
    import numpy as np

    # Both runtimes' settings come from the torch-free runner, so a timing here runs a model as a deployment does.
    from deploy.engines import openvino_config, ort_session_options

    images = np.random.default_rng(seed).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    if backend == "torch":
        import torch

        from supernet.elastic.extract import load_subnet

        torch.set_num_threads(threads)
        model = load_subnet(path).eval()
        x = torch.from_numpy(images)

        def run():  # SAM's embeddings; SAM 2's image embedding and its two high-resolution features
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                return model.embed_images(x)
        return run
    if backend == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", openvino_config(precision, threads))
        request = compiled.create_infer_request()
        return lambda: request.infer({0: images})
    if backend == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), sess_options=ort_session_options(ort, threads),
                                    providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: images}
        return lambda: sess.run(None, feeds)
    raise ValueError(f"unknown backend {backend!r}")


def time_job(job: dict) -> dict:
    """Load and time the job's subnet in this process; the result as a JSON-ready dict.

    With ``probe_path`` (and ``probe_resolution``) in the job, the drift probe's subnet is
    loaded too and the two are timed in :data:`PROBE_ROUNDS` interleaved rounds
    (:func:`nas.measure.timing.time_rounds`, each with ``repeats``, ``warmup`` and ``min_seconds`` of
    its own): ``probe_median_ms`` is then the probe's speed at the very time the subnet ran.
    """
    from nas.measure.timing import steady_allocator, time_callable, time_rounds

    with steady_allocator() as allocator:  # from before any model memory is allocated
        threads, seed = int(job["threads"]), int(job.get("seed", 0))
        precision = job.get("precision", "fp32")
        run = load_runner(job["backend"], job["path"], int(job["resolution"]), threads, seed, precision)
        repeats, warmup, min_seconds = int(job["repeats"]), int(job["warmup"]), float(job["min_seconds"])
        extra = {}
        if job.get("probe_path"):
            probe = load_runner(job["backend"], job["probe_path"], int(job["probe_resolution"]), threads, seed,
                                precision)
            rounds = time_rounds([run, probe], rounds=PROBE_ROUNDS, repeats=max(repeats, PROBE_ROUNDS),
                                 warmup=max(warmup, PROBE_ROUNDS), min_seconds=min_seconds, shuffle_seed=seed)
            timing, probe_timing = rounds.timings
            extra = {"probe_median_ms": probe_timing.median_ms, "probe_repeats": probe_timing.repeats}
        else:
            timing = time_callable(run, repeats=repeats, warmup=warmup, min_seconds=min_seconds)
    return {**timing.as_dict(), **extra, "pid": os.getpid(), "threads": threads, "allocator": allocator}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python nas/latency/fresh.py JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(json.dumps(time_job(job)), flush=True)
    return 0


if __name__ == "__main__":
    # Run as a script: make the repository importable without importing nas.latency's package. Python put this
    # file's folder first on sys.path, where profile.py would shadow the standard library's `profile` (which
    # cProfile imports, e.g. torch._dynamo when a SAM 2 subnet is built on the meta device): replace it.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))
