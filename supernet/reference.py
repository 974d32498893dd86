"""Packaged reference weights (``supernet/weights/sam_<model_type>.pt``), when they exist."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def reference_checkpoint(model_type: str) -> Path | None:
    """Path of the packaged trained weights for ``model_type``, or None while none are shipped."""
    path = WEIGHTS_DIR / f"sam_{model_type}.pt"
    return path if path.is_file() else None
