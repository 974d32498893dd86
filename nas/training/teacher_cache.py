"""Teacher image embeddings, computed once per (teacher weights, image, input side) and reused.

Supernet training distils every subnet from the frozen full model. Its image embedding (SAM 2: the
embedding and the two high-resolution maps, :func:`supernet.modeling.predictor.decoder_inputs`) is the
expensive part of the teacher (the whole ViT at the student's input side) and does not change
while the teacher is frozen, so each is computed once and kept:

- in memory, up to ``max_memory_mb`` (least recently used dropped first);
- on disk, when a folder is given, as one safetensors file per image (tensor ``embedding``, and SAM 2's
  ``high_res_0`` and ``high_res_1``), so that a resumed or
  repeated run on the same photos skips the teacher's encoder altogether.

The key is a digest of everything the embedding depends on: the teacher's weights
(:func:`supernet.checkpoint.state_digest`, so another checkpoint, even under the same file name,
never hits), the model type, the input side, and the image itself (its shape and every pixel, so
a changed photo under the same name never hits). Files are written to a temporary name and
renamed, so an interrupted run leaves no half-written embedding behind; a file that cannot be
read back is ignored and recomputed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from supernet.checkpoint import state_digest
from supernet.modeling.predictor import decoder_inputs
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

PART_NAMES = ("embedding", "high_res_0", "high_res_1")  # the file's name of each decoder input, in order


class TeacherCache:
    """Image embeddings of a frozen ``teacher``, keyed by weights, model type, input side and image."""

    def __init__(self, teacher: Sam | Sam2, folder: str | Path | None = None, max_memory_mb: float = 2048) -> None:
        self.teacher = teacher
        self.weights = state_digest(teacher)
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = int(max_memory_mb * 2**20)
        self._memory: OrderedDict[str, list[torch.Tensor]] = OrderedDict()  # key -> the image's decoder inputs
        self._bytes = 0
        self.hits = self.misses = 0

    def key(self, image: np.ndarray, resolution: int) -> str:
        """Digest of what the embedding of ``image`` (``(H, W, 3)`` uint8) at ``resolution`` depends on."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.weights}|{self.teacher.arch.name}|{resolution}|{image.shape}|{image.dtype}|".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return h.hexdigest()

    def embeddings(self, images: list[np.ndarray], inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's image embeddings ``(B, C, g, g)`` of ``inputs`` ``(B, 3, R, R)``, the preprocessed
        ``images`` (the first of :meth:`features`)."""
        return self.features(images, inputs)[0]

    def features(self, images: list[np.ndarray], inputs: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's decoder inputs (:func:`~supernet.modeling.predictor.decoder_inputs`, each ``(B, ...)``)
        of ``inputs`` ``(B, 3, R, R)``, the preprocessed ``images``.

        Only the images not cached are encoded, in one batch, at the teacher's active resolution
        (which must be ``R``).
        """
        resolution = inputs.shape[-1]
        keys = [self.key(image, resolution) for image in images]
        found = [self._get(k) for k in keys]
        missing = [i for i, e in enumerate(found) if e is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                computed = decoder_inputs(self.teacher, inputs[missing])
            for row, i in enumerate(missing):
                found[i] = [part[row] for part in computed]
                self._put(keys[i], found[i])
        return [torch.stack([parts[k].to(inputs.device) for parts in found]) for k in range(len(found[0]))]

    def _get(self, key: str) -> list[torch.Tensor] | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            from safetensors.torch import load_file

            data = load_file(str(path))
            parts = [data[name] for name in PART_NAMES if name in data]
        except Exception:  # a damaged file is recomputed, never trusted
            return None
        if not parts or len(parts) != len(data):
            return None
        self._remember(key, parts)
        return parts

    def _put(self, key: str, parts: list[torch.Tensor]) -> None:
        parts = [part.detach().cpu().contiguous() for part in parts]
        self._remember(key, parts)
        path = self._path(key)
        if path is None:
            return
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(dict(zip(PART_NAMES, parts)), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _remember(self, key: str, parts: list[torch.Tensor]) -> None:
        size = _nbytes(parts)
        if size > self.max_bytes:
            return
        self._memory[key] = parts
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._memory.popitem(last=False)
            self._bytes -= _nbytes(old)

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.safetensors"


def _nbytes(parts: list[torch.Tensor]) -> int:
    return sum(part.numel() * part.element_size() for part in parts)


__all__ = ["PART_NAMES", "TeacherCache"]
