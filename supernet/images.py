"""Reading images: folders, single files, and generated images for demos with no data.

Plain PIL + numpy. Images come back as ``(H, W, 3)`` uint8 RGB arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; UserError when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: image folder does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder}: expected a folder of images, got a file")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def load_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, EXIF orientation applied; UserError naming the file when unreadable."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except Exception as exc:  # PIL raises several types for truncated or foreign files
        raise UserError(f"{path}: unreadable image ({type(exc).__name__}: {str(exc)[:120]})") from None


class ImageReader:
    """Iterates readable images, skipping unreadable ones and remembering them in ``skipped``."""

    def __init__(self, on_skip: Callable[[str, str], None] | None = None) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.on_skip = on_skip

    def read(self, paths: Iterable[str | Path]) -> Iterator[tuple[Path, np.ndarray]]:
        for path in paths:
            try:
                yield Path(path), load_image(path)
            except UserError as exc:
                self.skipped.append((str(path), str(exc)))
                if self.on_skip:
                    self.on_skip(str(path), str(exc))


def iter_images(paths: Iterable[str | Path], on_skip: Callable[[str, str], None] | None = None):
    """``(path, image)`` for each readable file; ``on_skip(path, reason)`` for the others."""
    return ImageReader(on_skip).read(paths)


def generated_images(n: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic scenes of ``size`` x ``size`` pixels (objects on textured backgrounds), seeded."""
    from .synthetic import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size=(size, size))[0] for _ in range(n)]
