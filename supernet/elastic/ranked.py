"""Ranked supernet checkpoints: a Meta-layout state dict plus a JSON sidecar.

The weights stay a valid SAM checkpoint (any SAM loader reads them); ``<name>.json`` beside
them records the ranking method, calibration images, model type, date and the orders.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import torch

from supernet.checkpoint import load_sam
from infra.fileio import atomic_torch_save, atomic_write_text, read_format_json
from supernet.modeling.sam import Sam

RANKED_FORMAT = "samnas-ranked/1"


def sidecar_path(checkpoint: str | Path) -> Path:
    """``ranked.pt`` -> ``ranked.json``."""
    return Path(checkpoint).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_ranked(model: Sam, ranking: dict, out: str | Path, source: str | Path | None,
                images: list[str]) -> Path:
    """Write the permuted weights to ``out`` and the metadata to ``out``'s ``.json`` sidecar."""
    out = Path(out)
    atomic_torch_save(model.state_dict(), out)
    meta = {
        "format": RANKED_FORMAT,
        "model_type": model.arch.name,
        "method": ranking["method"],
        "calibration_images": images,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": str(source) if source else None,
        "source_sha256": file_sha256(source) if source and Path(source).is_file() else None,
        "torch": torch.__version__,
        "blocks": ranking["blocks"],
    }
    atomic_write_text(sidecar_path(out), json.dumps(meta, indent=1) + "\n")
    return out


def read_ranking(checkpoint: str | Path) -> dict | None:
    """The sidecar metadata of a ranked checkpoint, or None for an unranked one."""
    path = sidecar_path(checkpoint)
    if not path.is_file():
        return None
    return read_format_json(path, RANKED_FORMAT)


def load_ranked(checkpoint: str | Path, model_type: str | None = None) -> tuple[Sam, dict | None]:
    """A (possibly ranked) SAM checkpoint and its ranking metadata (None when it was never ranked)."""
    meta = read_ranking(checkpoint)
    model = load_sam(checkpoint, model_type or (meta or {}).get("model_type"))
    return model, meta
