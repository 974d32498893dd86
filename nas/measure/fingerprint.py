"""Where a measurement was taken: CPU, threads, library versions and GPU, as plain JSON."""
from __future__ import annotations

import os
import platform
import socket


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else platform's best guess."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# /proc/cpuinfo flags that decide which precisions run natively here (x86: AVX512-BF16 and AMX for bf16,
# VNNI and AMX-INT8 for int8 matrix products).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BF16_FEATURES = ("avx512_bf16", "amx_bf16")  # either one runs bf16 matrix products natively


def cpu_features() -> list[str]:
    """The :data:`CPU_FEATURES` this CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in CPU_FEATURES if f in flags]
    except OSError:
        pass
    return []


def bf16_problem(fingerprint: dict) -> str | None:
    """Why bf16 cannot be timed on the machine a fingerprint describes (None when it can).

    Without AVX512-BF16 or AMX-BF16 the runtimes fall back to fp32 or emulate bf16 in software, so a
    bf16 device there would measure something other than what its name says.
    """
    features = fingerprint.get("cpu_features")
    if features is None:
        return (f"its fingerprint ({fingerprint.get('cpu', 'unknown CPU')}) does not list the CPU's features; "
                "profile bf16 on the machine itself")
    if not any(f in features for f in BF16_FEATURES):
        return (f"CPU {fingerprint.get('cpu', '?')!r} lacks AVX512-BF16 and AMX-BF16 "
                f"(its features: {', '.join(features) or 'none of ' + ', '.join(CPU_FEATURES)})")
    return None


def bf16_problem_here() -> str | None:
    """:func:`bf16_problem` for this machine's CPU."""
    return bf16_problem({"cpu": cpu_model(), "cpu_features": cpu_features()})


def machine_fingerprint() -> dict:
    """A JSON-ready description of this machine and the libraries that time the models."""
    import torch

    from nas.measure.timing import allocator_setup

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "host": socket.gethostname(),
        "cpu_features": cpu_features(),
        "allocator": allocator_setup(),  # timings here run with this malloc set-up (see nas.measure.timing); unchanged here
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info
