"""SAM's preprocessing in numpy, equal to samnas's PyTorch path (``supernet.modeling.transforms``,
``Sam.preprocess``): longest side resized with PIL's bilinear filter, ``(pixel - mean) / std`` in
float32, zeros padded at the bottom and right; prompt coordinates scaled by the same factors.

SAM 2's (``Sam2.preprocess``): pixels / 255 resized to the square input whatever the aspect ratio,
bilinear and antialiased (PIL's bilinear filter on float32 channels computes what torch's
``interpolate(..., antialias=True)`` does), then ``(x - mean) / std``; prompts scaled per axis."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DeployError


def preprocess_shape(old_h: int, old_w: int, long_side: int) -> tuple[int, int]:
    """``(h, w)`` px when the longer of ``old_h, old_w`` becomes ``long_side`` (rounded half up)."""
    scale = long_side * 1.0 / max(old_h, old_w)
    return int(old_h * scale + 0.5), int(old_w * scale + 0.5)


def load_image(image) -> np.ndarray:
    """A path, PIL image or ``(H, W, 3)`` uint8 RGB array -> ``(H, W, 3)`` uint8 RGB array."""
    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise DeployError(f"{image}: image file not found")
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DeployError(f"image: expected an (H, W, 3) uint8 RGB array, a PIL image or a path, "
                          f"got {arr.dtype} {arr.shape}")
    return arr


def model_input(image: np.ndarray, side: int, mean, std) -> tuple[np.ndarray, tuple[int, int]]:
    """``(H, W, 3)`` uint8 -> the encoder input ``(1, 3, side, side)`` float32 and the resized ``(h, w)``."""
    h, w = preprocess_shape(image.shape[0], image.shape[1], side)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR))
    x = resized.transpose(2, 0, 1).astype(np.float32)
    x = (x - np.asarray(mean, np.float32).reshape(3, 1, 1)) / np.asarray(std, np.float32).reshape(3, 1, 1)
    out = np.zeros((1, 3, side, side), np.float32)
    out[0, :, :h, :w] = x
    return out, (h, w)


def sam2_model_input(image: np.ndarray, side: int, mean, std) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> SAM 2's encoder input ``(1, 3, side, side)`` float32 (see the module)."""
    x = image.astype(np.float32) / np.float32(255.0)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((side, side), Image.BILINEAR))
                for c in range(3)]
    x = np.stack(channels).astype(np.float32)
    x = (x - np.asarray(mean, np.float32).reshape(3, 1, 1)) / np.asarray(std, np.float32).reshape(3, 1, 1)
    return x[None]


def to_square_frame(coords, original_hw: tuple[int, int], side: int) -> np.ndarray:
    """``(..., 2)`` pixel ``(x, y)`` in the original image -> SAM 2's ``side x side`` input frame (float64)."""
    coords = np.array(coords, dtype=float, copy=True)
    coords[..., 0] = coords[..., 0] / original_hw[1] * side
    coords[..., 1] = coords[..., 1] / original_hw[0] * side
    return coords


def to_input_frame(coords, original_hw: tuple[int, int], side: int) -> np.ndarray:
    """``(..., 2)`` pixel ``(x, y)`` in the original image -> the resized frame (float64)."""
    old_h, old_w = original_hw
    new_h, new_w = preprocess_shape(old_h, old_w, side)
    coords = np.array(coords, dtype=float, copy=True)
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


def upscale_logits(low_res: np.ndarray, side: int, input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """SAM's mask upscaling (``Sam.postprocess_masks``) in numpy: ``(N, r, r)`` low-res logits -> bilinear
    to ``side`` px, crop to the resized image ``input_hw``, bilinear to ``out_hw``: ``(N, H, W)`` float32."""
    x = _resize_bilinear(np.asarray(low_res, np.float32), (side, side))
    return _resize_bilinear(x[:, : input_hw[0], : input_hw[1]], out_hw)


def sam2_upscale_logits(low_res: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """SAM 2's mask upscaling (``Sam2.postprocess_masks``) in numpy: ``(N, r, r)`` low-res logits -> bilinear
    straight to ``out_hw`` (the whole image was squeezed into the square input): ``(N, H, W)`` float32."""
    return _resize_bilinear(np.asarray(low_res, np.float32), out_hw)


def _resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` -> ``(N, H, W)``: bilinear, ``align_corners=False``, no antialiasing (torch's ``interpolate``)."""
    (y0, y1, wy), (x0, x1, wx) = _taps(x.shape[1], size[0]), _taps(x.shape[2], size[1])
    rows = x[:, y0, :] * (1 - wy)[:, None] + x[:, y1, :] * wy[:, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and the weight of the second one, per output index (float32, as torch computes them)."""
    scale = np.float64(np.float32(n_in) / np.float32(n_out))  # a float32 scale, applied in float64
    src = np.maximum((scale * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32), 0)
    lo = src.astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)
