"""Ranked supernet checkpoints: a Meta-layout state dict plus a JSON sidecar.

The weights stay a valid SAM (or SAM 2 image-model) checkpoint (any SAM loader reads them);
``<name>.json`` beside them records the ranking method, calibration images, model type, date and
the orders. SAM 2's weights hold the image path only (no video modules), in Meta's names.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import torch

from supernet.checkpoint import load_sam
from supernet.checkpoint_sam2 import is_sam2_file, load_sam2
from infra.fileio import atomic_torch_save, atomic_write_text, read_format_json
from supernet.modeling.arch import ARCHS
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.arch import SAM2_ARCHS
from supernet.modeling.sam2.model import Sam2

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


def save_ranked(model: Sam | Sam2, ranking: dict, out: str | Path, source: str | Path | None,
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


def load_ranked(checkpoint: str | Path, model_type: str | None = None) -> tuple[Sam | Sam2, dict | None]:
    """A (possibly ranked) SAM or SAM 2 checkpoint as a supernet, and its ranking metadata (None when
    it was never ranked).

    ``model_type`` (else the sidecar's) picks the family; without either, the file's key names do
    (:func:`supernet.checkpoint_sam2.is_sam2_file`). A file of the other family than ``model_type``
    says so in one line naming it.
    """
    meta = read_ranking(checkpoint)
    model_type = model_type or (meta or {}).get("model_type")
    sam2 = model_type in SAM2_ARCHS if model_type in SAM2_ARCHS or model_type in ARCHS else is_sam2_file(checkpoint)
    if sam2:
        return load_sam2(checkpoint, model_type, elastic=True), meta
    return load_sam(checkpoint, model_type), meta
