"""The torch-free runner of an exported subnet: prompts and segment-everything on ONNX Runtime or OpenVINO.

A SAM 2 export (``card.json`` ``family: sam2``) answers prompts with SAM 2's preprocessing (square
resize, ImageNet mean and std) and its decoder contract (the encoder's three outputs in, box corners
first, the padding point always), and segments everything as ``samnas everything`` does on SAM 2 (prompts in
its square frame, masks upscaled straight from the low-res logits)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engines import Engine, available_runtimes
from .errors import DeployError
from .preprocess import (load_image, model_input, sam2_model_input, sam2_upscale_logits, to_input_frame,
                         to_square_frame, upscale_logits)

CARD = "card.json"
ENCODER, DECODER = "image_encoder", "prompt_decoder"
SAM2_FEATURES = ("image_embed", "high_res_feats_0", "high_res_feats_1")  # SAM 2's encoder outputs = decoder inputs


@dataclass(frozen=True)
class Contract:
    """What the runner reads from an export's ``card.json``: input side (px), normalisation, the
    embedding grid ``(C, g, g)``, the mask threshold, the OpenVINO precision the export was made for, and the
    model family (``sam`` or ``sam2``)."""

    folder: Path
    resolution: int
    pixel_mean: tuple
    pixel_std: tuple
    embedding: tuple
    mask_threshold: float
    openvino_precision: str | None
    family: str = "sam"

    @classmethod
    def read(cls, folder: str | Path) -> "Contract":
        folder = Path(folder)
        path = folder / CARD
        if not path.is_file():
            raise DeployError(f"{folder}: no {CARD}: not a samnas export folder (write one with "
                              f"`samnas export --config SUBNET.yaml --out {folder}`)")
        card = json.loads(path.read_text(encoding="utf-8"))
        if not (folder / f"{DECODER}.onnx").is_file() or "onnx_decoder" not in card:
            raise DeployError(f"{folder}: no {DECODER}.onnx: the export was made by an older samnas; re-export it "
                              f"with `{reexport_command(folder, card)}`")
        enc, dec = card["onnx_input"], card["onnx_decoder"]
        family = card.get("family", "sam")
        if family not in ("sam", "sam2"):
            raise DeployError(f"{path}: family {family!r}: this runner runs 'sam' and 'sam2' exports")
        embedding = dec["inputs"]["image_embed" if family == "sam2" else "image_embeddings"]
        return cls(folder, int(enc["shape"][-1]), tuple(enc["normalise"]["pixel_mean"]),
                   tuple(enc["normalise"]["pixel_std"]), tuple(embedding[1:]),
                   float(dec.get("mask_threshold", 0.0)), (card.get("openvino") or {}).get("precision"), family)


def reexport_command(folder: Path, card: dict) -> str:
    """The ``samnas export`` command that rewrites ``folder`` from its card (same config, checkpoint, device)."""
    parts = ["samnas export", f"--config {folder / CARD}"]
    if card.get("source_checkpoint"):
        parts.append(f"--checkpoint {card['source_checkpoint']}")
    if card.get("device"):
        parts.append(f"--device {card['device']}")
    return " ".join(parts + [f"--out {folder}"])


def _pick_runtime(runtime: str, folder: Path, precision: str | None) -> str:
    """``auto``: OpenVINO when the export has its IR or a bf16 precision, else ONNX Runtime, else what is installed."""
    have = available_runtimes()
    if runtime == "auto":
        wanted = "openvino" if (folder / f"{ENCODER}.xml").is_file() or precision == "bf16" else "onnxruntime"
        runtime = wanted if wanted in have else (have[0] if have else wanted)
    if runtime not in ("onnxruntime", "openvino"):
        raise DeployError(f"runtime {runtime!r}: expected 'auto', 'onnxruntime' or 'openvino'")
    if runtime not in have:
        raise DeployError(f"runtime {runtime}: not installed (pip install {runtime})")
    return runtime


class Runner:
    """An exported subnet on ONNX Runtime or OpenVINO; see :meth:`from_folder`."""

    def __init__(self, contract: Contract, encoder: Engine, decoder: Engine) -> None:
        self.contract, self.encoder, self.decoder = contract, encoder, decoder
        self.runtime = encoder.runtime
        self._image_key = None
        self._embedding = None

    @classmethod
    def from_folder(cls, path: str | Path, runtime: str = "auto", threads: int | None = None,
                    precision: str | None = None) -> "Runner":
        """Load ``path`` (a ``samnas export`` folder). ``runtime``: ``auto`` (OpenVINO for an export made for
        an OpenVINO device, else ONNX Runtime), ``onnxruntime`` or ``openvino`` (its IR when the export has
        it, else the ONNX files). ``threads``: the runtime's inference threads (default: its choice).
        ``precision`` (OpenVINO): ``fp32`` or ``bf16``; default the export's (fp32 when it names none)."""
        contract = Contract.read(path)
        runtime = _pick_runtime(runtime, contract.folder, contract.openvino_precision)
        precision = precision or (contract.openvino_precision if runtime == "openvino" else None) or "fp32"

        def engine(stem: str) -> Engine:
            ir = contract.folder / f"{stem}.xml"
            file = ir if runtime == "openvino" and ir.is_file() else contract.folder / f"{stem}.onnx"
            return Engine(file, runtime, threads, precision)

        return cls(contract, engine(ENCODER), engine(DECODER))

    # ---- image ----------------------------------------------------------------------------------
    def embed(self, image) -> tuple[np.ndarray | dict, tuple[int, int], tuple[int, int]]:
        """``(embedding (1, C, g, g), resized (h, w), original (H, W))`` of an image (path, PIL or uint8
        array); the last image's embedding is kept, so prompting one image again costs no encoder call.
        SAM 2: the embedding is ``{name: array}`` of the encoder's three outputs, resized ``(R, R)``."""
        image = load_image(image)
        key = hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).hexdigest()
        if key != self._image_key:
            c = self.contract
            if c.family == "sam2":
                out = self.encoder({"images": sam2_model_input(image, c.resolution, c.pixel_mean, c.pixel_std)})
                self._embedding = ({name: out[name] for name in SAM2_FEATURES}, (c.resolution,) * 2, image.shape[:2])
            else:
                x, resized = model_input(image, c.resolution, c.pixel_mean, c.pixel_std)
                self._embedding = (self.encoder({"images": x})["embeddings"], resized, image.shape[:2])
            self._image_key = key
        return self._embedding

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, original_hw,
               mask_input: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One decoder call on SAM's ONNX contract: ``coords (B, N, 2)`` in the resized frame, ``labels (B, N)``
        (padding and box corners included), optional ``mask_input (1, 1, 4g, 4g)``; all four mask tokens.
        ``embedding``: :meth:`embed`'s (SAM 2: the dict of the three encoder outputs)."""
        g = self.contract.embedding[-1]
        has_mask = mask_input is not None
        images = embedding if isinstance(embedding, dict) else {"image_embeddings": embedding}
        feed = {**images, "point_coords": np.asarray(coords, np.float32),
                "point_labels": np.asarray(labels, np.float32),
                "mask_input": (np.asarray(mask_input, np.float32).reshape(1, 1, 4 * g, 4 * g) if has_mask
                               else np.zeros((1, 1, 4 * g, 4 * g), np.float32)),
                "has_mask_input": np.array([float(has_mask)], np.float32),
                "orig_im_size": np.asarray(original_hw, np.float32)}
        return self.decoder(feed)

    # ---- prompts --------------------------------------------------------------------------------
    def predict(self, image, points=None, labels=None, boxes=None, mask_input=None, multimask: bool = True):
        """Prompts in original-image pixels -> ``(masks (M, H, W) bool, iou (M,), low_res_logits (M, 4g, 4g))``,
        as ``SamPredictor.predict`` returns them (M = 3 with ``multimask``, else 1).

        ``points (N, 2)`` ``(x, y)`` with ``labels (N,)`` (1 foreground, 0 background); ``boxes (4,)`` XYXY,
        or ``(K, 4)`` for K prompt sets sharing the points (outputs then gain a leading K axis);
        ``mask_input (1, 4g, 4g)``: low-res logits from an earlier call.
        """
        embedding, _, original = self.embed(image)
        prompt_sets = _sam2_prompt_sets if self.contract.family == "sam2" else _prompt_sets
        coords, labs = prompt_sets(points, labels, boxes, original, self.contract.resolution)
        out = self.decode(embedding, coords, labs, original, mask_input)
        chosen = slice(1, None) if multimask else slice(0, 1)
        masks = out["masks"][:, chosen] > self.contract.mask_threshold
        iou, low = out["iou_predictions"][:, chosen], out["low_res_masks"][:, chosen]
        if boxes is not None and np.asarray(boxes).ndim == 2:
            return masks, iou, low
        return masks[0], iou[0], low[0]

    def everything(self, image, policy) -> list[dict]:
        """Segment everything in ``image`` with ``policy`` (a ``samnas tune-everything`` file or its mapping):
        mask records as ``samnas everything`` gives them in binary-mask mode, see :mod:`deploy.everything`."""
        from .everything import generate

        return generate(self, load_image(image), policy)

    def to_frame(self, coords, original_hw: tuple[int, int]) -> np.ndarray:
        """``(..., 2)`` pixel ``(x, y)`` of an ``(H, W)`` image -> the model's input frame (float64): SAM's
        resized one, SAM 2's square one."""
        c = self.contract
        return (to_square_frame if c.family == "sam2" else to_input_frame)(coords, original_hw, c.resolution)

    def upscale(self, low_res: np.ndarray, input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
        """Low-res logits ``(N, 4g, 4g)`` of an image resized to ``input_hw`` -> logits at ``out_hw``
        ``(N, H, W)`` float32, as the family's ``postprocess_masks`` (SAM 2's ignores ``input_hw``, its ``(R, R)``)."""
        if self.contract.family == "sam2":
            return sam2_upscale_logits(low_res, out_hw)
        return upscale_logits(low_res, self.contract.resolution, input_hw, out_hw)


def _clicks(points, labels, boxes) -> tuple[np.ndarray, np.ndarray]:
    """The clicks ``(N, 2)`` and labels ``(N,)`` of a predict call (float, original pixels), checked."""
    if points is None and boxes is None:
        raise DeployError("predict: give points (with labels) or boxes")
    pts = np.zeros((0, 2)) if points is None else np.asarray(points, float).reshape(-1, 2)
    labs = np.zeros(0) if labels is None else np.asarray(labels, float).reshape(-1)
    if len(labs) != len(pts):
        raise DeployError(f"predict: {len(pts)} points but {len(labs)} labels (one label per point: 1 fg, 0 bg)")
    return pts, labs


def _sam2_prompt_sets(points, labels, boxes, original_hw, side) -> tuple[np.ndarray, np.ndarray]:
    """Prompts in original pixels -> SAM 2 contract ``coords (K, N, 2)``, ``labels (K, N)`` in the square frame:
    each box's corners (labels 2, 3), the clicks, then the padding point ``(0, 0)`` labelled -1."""
    pts, labs = _clicks(points, labels, boxes)
    pts = to_square_frame(pts, original_hw, side)
    if boxes is None:
        corners, corner_labels = np.zeros((1, 0, 2)), np.zeros((1, 0))
    else:
        corners = to_square_frame(np.asarray(boxes, float).reshape(-1, 2, 2), original_hw, side)
        corner_labels = np.tile([2.0, 3.0], (len(corners), 1))
    k = len(corners)
    coords = np.concatenate([corners, np.broadcast_to(pts, (k,) + pts.shape), np.zeros((k, 1, 2))], axis=1)
    labels = np.concatenate([corner_labels, np.broadcast_to(labs, (k, len(labs))), -np.ones((k, 1))], axis=1)
    return coords.astype(np.float32), labels.astype(np.float32)


def _prompt_sets(points, labels, boxes, original_hw, side) -> tuple[np.ndarray, np.ndarray]:
    """Prompts in original pixels -> contract ``coords (K, N, 2)`` and ``labels (K, N)`` in the resized frame."""
    pts, labs = _clicks(points, labels, boxes)
    pts = to_input_frame(pts, original_hw, side)
    if boxes is None:
        return (np.concatenate([pts, [[0.0, 0.0]]])[None].astype(np.float32),
                np.concatenate([labs, [-1.0]])[None].astype(np.float32))
    bx = np.asarray(boxes, float).reshape(-1, 4)
    corners = to_input_frame(bx.reshape(-1, 2, 2), original_hw, side)
    k = len(bx)
    coords = np.concatenate([np.broadcast_to(pts, (k,) + pts.shape), corners], axis=1)
    labels = np.concatenate([np.broadcast_to(labs, (k, len(labs))), np.tile([2.0, 3.0], (k, 1))], axis=1)
    return coords.astype(np.float32), labels.astype(np.float32)
