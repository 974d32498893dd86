"""Reading images: folders, single files, and generated images for demos with no data.

Plain PIL + numpy. Images come back as ``(H, W, 3)`` uint8 RGB arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from infra.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (not its subfolders), sorted by name.

    A file counts when its suffix is one of :data:`IMAGE_SUFFIXES`, in any case. Raises
    UserError naming the folder when it is missing, is a file, or holds no image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: image folder does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder}: expected a folder of images, got a file")
    try:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise UserError(f"{folder}: cannot list the image folder ({exc.strerror or exc})") from None
    if not paths:
        raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def load_image(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, EXIF orientation applied; UserError naming the file when unreadable.

    Grayscale, palette, RGBA (alpha dropped) and CMYK files are converted to RGB; 16-bit and
    float grayscale is scaled to 0-255 (see :func:`to_rgb8`).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                pass
            return to_rgb8(img)
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except Exception as exc:  # PIL raises several types for truncated or foreign files
        raise UserError(f"{path}: unreadable image ({type(exc).__name__}: {str(exc)[:120]})") from None


def to_rgb8(img: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a PIL image of any mode.

    PIL's own conversion clips 16-bit and float grayscale at 255 (a white image), so these are
    scaled: ``I;16*`` by 255/65535; ``I`` the same when it holds values over 255; ``F`` by 255
    when its values lie in [0, 1], otherwise clipped to [0, 255].
    """
    if img.mode == "F" or img.mode == "I" or img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if img.mode.startswith("I;16") or (img.mode == "I" and top > 255):
            values = values * (255.0 / 65535.0)
        elif img.mode == "F" and top <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.array(img.convert("RGB"))


class ImageReader:
    """Reads images one by one, skipping unreadable files instead of failing.

    ``skipped`` lists ``(path, reason)`` for every file passed over, so that a run can end
    with "skipped N unreadable images"; ``on_skip(path, reason)`` is also called at once.
    """

    def __init__(self, on_skip: Callable[[str, str], None] | None = None) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.on_skip = on_skip

    def skip(self, path: str | Path, reason: str) -> None:
        """Record one skipped item (also usable for items skipped for other reasons)."""
        self.skipped.append((str(path), reason))
        if self.on_skip:
            self.on_skip(str(path), reason)

    def read(self, paths: Iterable[str | Path]) -> Iterator[tuple[Path, np.ndarray]]:
        """``(path, (H, W, 3) uint8 image)`` for each readable file of ``paths``, in order."""
        for path in paths:
            try:
                image = load_image(path)
            except UserError as exc:
                self.skip(path, str(exc))
                continue
            yield Path(path), image


def read_image_folder(folder: str | Path, max_images: int | None = None,
                      on_skip: Callable[[str, str], None] | None = None) -> tuple[list[tuple[Path, np.ndarray]], list]:
    """``([(path, image)], skipped [(path, reason)])``: the first ``max_images`` readable images of ``folder``.

    :func:`read_images` of a folder, for callers that report the skipped files at the end:
    ``on_skip(path, reason)`` is also called at once. UserError naming the folder when none is readable.
    """
    skipped: list[tuple[str, str]] = []

    def skip(path: str, reason: str) -> None:
        skipped.append((path, reason))
        if on_skip:
            on_skip(path, reason)

    images = [(Path(name), image) for name, image in read_images(folder, skip, max_images or None)]
    if not images:
        raise UserError(f"{folder}: no readable images ({len(skipped)} skipped)")
    return images, skipped


def generated_images(n: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic scenes of ``size`` x ``size`` pixels (objects on textured backgrounds), seeded."""
    from scenes.synthetic import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size=(size, size))[0] for _ in range(n)]


def read_images(images, skip, max_images: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Images as ``(name, (H, W, 3) uint8)``: from a folder, or a sequence of paths and/or arrays.

    Unreadable files are passed to ``skip(name, reason)`` and left out; ``max_images``
    readable images at most. Raises UserError for a folder with no image.
    """
    if isinstance(images, (str, Path)):
        images = list_images(images)
    elif isinstance(images, np.ndarray):
        images = [images]
    out = []
    for index, item in enumerate(images):
        if max_images is not None and len(out) >= max_images:
            break
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
                skip(f"image[{index}]", f"expected an HxWx3 uint8 array, got {item.dtype} {item.shape}")
                continue
            out.append((f"image[{index}]", item))
            continue
        try:
            out.append((str(item), load_image(item)))
        except UserError as exc:
            skip(str(item), str(exc))
    return out
