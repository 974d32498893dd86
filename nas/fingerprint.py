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


def machine_fingerprint() -> dict:
    """A JSON-ready description of this machine and the libraries that time the models."""
    import torch

    from .timing import allocator_setup

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
        "allocator": allocator_setup(),  # timings here run with this malloc set-up (see nas.timing); unchanged here
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info
