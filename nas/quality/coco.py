"""Ground-truth mIoU on COCO-format annotations, instances or panoptic (``scenes.annotations``).

Of a panoptic file only the *things* are scored (stuff regions have no meaningful box prompt).

Every non-crowd annotation is one item, prompted two ways:

- **box**: its GT box, ``bbox`` XYWH turned into XYXY (when ``bbox`` is missing or
  degenerate, the tight box of the mask is used instead);
- **point**: one positive point at the mask pixel farthest from the mask boundary, the
  maximum of the Euclidean distance transform of the mask padded with one background pixel
  (so that the image border counts as boundary), as in the SAM paper's protocol. Ties go
  to the maximal pixel nearest the maxima's mean position, then to the first in row-major
  order, so a rectangle gets its centre.

SAM 2 models run through their own predictor path (``Sam2Predictor``), with the same prompts.

A point asks for the three multimask outputs (a single point is ambiguous); a box asks for
SAM's single output (``multimask_output=False``, as SAM's predictor advises for unambiguous
prompts and as samnas trains box prompts). Each output's IoU with the GT mask is taken at the
original image size. Reported per prompt type, averaged over instances: ``<type>_miou`` for
the output the model itself scores best (highest predicted IoU, what a user gets) and
``<type>_miou_oracle`` for the best output against the GT (an upper bound, so
``oracle >= best-scoring``; equal for boxes). ``score`` is the mean of ``box_miou`` and
``point_miou``; ``num_items`` the number of instances scored.

``box_fill_miou`` is the trivial baseline on the same instances: the prompt box itself taken as
the mask (the pixels whose centres lie inside the XYXY box, :func:`box_fill_mask`), against the GT
mask. A model whose ``box_miou`` is below it does worse than not running at all.

By object size (COCO's area ranges, in original-image pixels of the GT mask: small below
32², medium up to 96², large above), :meth:`CocoEvaluator.by_size` gives the same three mIoUs
per range after a measurement; :func:`nas.commands.evaluate.evaluate_model` and the reference card report
them (a range without instances is ``None``). They are not part of ``metrics`` (always floats).

``mask_ceiling_miou`` bounds what any SAM at the model's input size can score on the same
instances: the GT masks after a round trip through the model's low-res mask frame
(:func:`mask_ceiling`; SAM 2's frame is the whole image squeezed to the square, without padding). It depends on the input resolution and the labels only, not on the
weights, and tells a model's own errors from the detail its mask grid cannot hold.

Crowd annotations (``iscrowd=1``) are left out by protocol and counted in ``num_crowd``,
not in ``skipped``. Images that cannot be read (missing file, corrupt, size unlike the
annotation's) and annotations that cannot be decoded or are empty are named in
``skipped`` and left out; the evaluation goes on without them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from scenes.annotations import load_coco
from infra.errors import UserError
from supernet.modeling.predictor import SamPredictor, predictor_for
from supernet.modeling.sam import Sam, upscale_mask_logits
from supernet.modeling.sam2.model import Sam2
from supernet.modeling.sam2.predictor import Sam2Predictor
from supernet.modeling.transforms import preprocess_shape

from .base import Evaluator, QualityResult, batches, mask_iou, pick_by_score

PROMPT_BATCH = 16  # prompts decoded at once; bounds the memory of full-size masks
SIZE_RANGES = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, math.inf))
"""COCO's object-size ranges: ``(name, lowest area, area bound)`` in pixels, lower bound inclusive."""


@dataclass
class _Item:
    """One image with its usable instances (K of them)."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (K, 4) float XYXY pixels
    points: np.ndarray  # (K, 2) float (x, y) pixels
    masks: torch.Tensor  # (K, H, W) bool ground truth
    box_fill: np.ndarray  # (K,) IoU of the filled prompt box with the ground truth (the baseline)
    areas: np.ndarray  # (K,) GT mask areas in pixels


def size_range_masks(areas: np.ndarray) -> dict[str, np.ndarray]:
    """Which of ``areas (N,)`` pixels fall in each COCO size range: ``{name: (N,) bool}``."""
    areas = np.asarray(areas, dtype=float)
    return {name: (areas >= low) & (areas < high) for name, low, high in SIZE_RANGES}


def size_range_means(values: np.ndarray, areas: np.ndarray) -> dict[str, tuple[int, float | None]]:
    """Mean of ``values (N,)`` per COCO size range of ``areas (N,)`` pixels: ``{name: (count, mean or None)}``."""
    values = np.asarray(values, dtype=float)
    return {name: (int(chosen.sum()), float(values[chosen].mean()) if chosen.any() else None)
            for name, chosen in size_range_masks(areas).items()}


def farthest_point(mask: np.ndarray) -> np.ndarray:
    """The pixel of a ``(H, W)`` bool mask farthest from its boundary -> ``(x, y)`` float pixels.

    Distance transform of the mask padded by one background pixel; ties go to the maximal
    pixel nearest the maxima's mean position, then to the first in row-major order.
    Raises ValueError for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("empty mask has no interior point")
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(dist == dist.max())
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return np.array([cols[k], rows[k]], dtype=float)


def gt_box(ann: dict, mask: np.ndarray) -> np.ndarray:
    """XYXY float box of an annotation: its ``bbox`` (XYWH), or the mask's tight box if that is unusable."""
    bbox = ann.get("bbox")
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4 and \
            all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox) and bbox[2] > 0 and bbox[3] > 0:
        x, y, w, h = (float(v) for v in bbox)
        return np.array([x, y, x + w, y + h])
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=float)


def box_fill_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose centres ``(c + 0.5, r + 0.5)`` lie inside the XYXY ``box``.

    For an integer box ``[x0, y0, x1, y1]`` that is columns ``x0..x1-1`` and rows ``y0..y1-1``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    cols = (np.arange(width) + 0.5 >= x0) & (np.arange(width) + 0.5 <= x1)
    rows = (np.arange(height) + 0.5 >= y0) & (np.arange(height) + 0.5 <= y1)
    return rows[:, None] & cols[None, :]


def mask_ceiling(gt: torch.Tensor, resolution: int, square: bool = False) -> torch.Tensor:
    """``(K, H, W)`` bool GT masks -> ``(K, H, W)`` bool: the same masks as a SAM at ``resolution`` px
    input can output them at best, up to the 0.5 rule below.

    SAM predicts mask logits on a grid of ``resolution / 4`` cells over its padded input and
    upscales them (:func:`~supernet.modeling.sam.upscale_mask_logits`). Here each cell's logit
    is the share of it the GT covers minus one half (area-averaged through the resized frame),
    upscaled the same way and cut at 0. Detail finer than a cell is lost: at 256 px input a
    640 px photo's cell is 10 px wide, so a small COCO object spans a few cells at most.

    ``square``: SAM 2's frame, the whole image resized to ``resolution x resolution`` (no padding)
    and its logits upscaled straight to the image (``Sam2.postprocess_masks``).
    """
    height, width = gt.shape[-2:]
    if square:
        cells = F.interpolate(gt.float()[:, None], (resolution // 4, resolution // 4), mode="area")
        return F.interpolate(cells - 0.5, (height, width), mode="bilinear", align_corners=False)[:, 0] > 0
    h, w = preprocess_shape(height, width, resolution)
    frame = F.interpolate(gt.float()[:, None], (h, w), mode="area")
    frame = F.pad(frame, (0, resolution - w, 0, resolution - h))
    cells = F.interpolate(frame, (resolution // 4, resolution // 4), mode="area")
    return upscale_mask_logits(cells - 0.5, resolution, (h, w), (height, width))[:, 0] > 0


def prompt_ious(predictor: SamPredictor | Sam2Predictor, gt: torch.Tensor, points: np.ndarray | None = None,
                boxes: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU vs GT of the best-scoring and of the oracle output, per prompt.

    A single point asks for the three multimask outputs; a box (not ambiguous) for SAM's single
    output, as SAM's predictor advises for unambiguous prompts, so both values are equal for boxes.

    ``gt (K, H, W)`` bool; one prompt per instance: ``points (K, 2)`` single positive
    points or ``boxes (K, 4)`` XYXY, in original-image pixels. Returns two ``(K,)`` tensors.
    """
    size = predictor.original_size
    coords_t = labels_t = boxes_t = None
    if points is not None:
        coords = predictor.transform.apply_coords(points, size)
        coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None, :]
        labels_t = torch.ones(coords_t.shape[:2], dtype=torch.int, device=predictor.device)
    if boxes is not None:
        boxes_t = torch.as_tensor(predictor.transform.apply_boxes(boxes, size), dtype=torch.float,
                                  device=predictor.device)
    masks, scores, _ = predictor.predict_torch(coords_t, labels_t, boxes_t, multimask_output=points is not None)
    ious = mask_iou(masks, gt.to(masks.device)[:, None])  # (K, M)
    return pick_by_score(ious, scores), ious.max(dim=1).values


class CocoEvaluator(Evaluator):
    """Ground-truth box and point mIoU on COCO annotations (see the module docstring).

    ``images_dir``: the folder the annotations' ``file_name`` entries are relative to, or a
    sequence of image paths (then only those files are used, matched by file name).
    ``max_images``: the first that many usable images in the file's order.
    """

    name = "coco"
    progress = False  # True: a progress bar over the images while measuring

    def __init__(self, model: Sam | Sam2, images_dir, annotations_json: str | Path,
                 max_images: int | None = None) -> None:
        super().__init__()
        self.annotations = Path(annotations_json)
        self._folder, self._chosen = _image_source(images_dir)
        coco = load_coco(self.annotations, self.skip, things_only=True)
        self.num_crowd = 0
        self.items: list[_Item] = []
        self._per_instance: dict[str, np.ndarray] = {}  # the last measurement's IoUs, for by_size()
        self._ceilings: dict[tuple[int, bool], np.ndarray] = {}  # per (input side, square): each instance's ceiling IoU
        for info in coco.dataset["images"]:
            if max_images is not None and len(self.items) >= max_images:
                break
            item = self._load_item(coco, info)
            if item is not None:
                self.items.append(item)
        _report_orphans(coco, self.skip)
        if not self.items:
            raise UserError(f"{self.annotations}: no usable annotated image found in {images_dir} "
                            f"({len(self.skipped)} items skipped)")
        self.prepare(model)

    def _image_path(self, file_name: str) -> Path | None:
        if self._chosen is None:
            return self._folder / file_name
        return self._chosen.get(Path(file_name).name)

    def _load_item(self, coco, info: dict) -> _Item | None:
        """The image of COCO entry ``info`` with its usable non-crowd instances, or None."""
        from scenes.images import load_image

        anns = coco.imgToAnns.get(info["id"], [])
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        self.num_crowd += len(crowd)
        anns = [a for a in anns if not a.get("iscrowd", 0)]
        name = str(info["file_name"])
        path = self._image_path(name)
        if not anns or path is None:
            return None
        try:
            image = load_image(path)
        except UserError as exc:
            self.skip(name, str(exc))
            return None
        size = (info["height"], info["width"])
        if image.shape[:2] != size:
            self.skip(name, f"image is {image.shape[1]}x{image.shape[0]} px but the annotations say "
                            f"{size[1]}x{size[0]}")
            return None
        boxes, points, masks = [], [], []
        for ann in anns:
            label = f"annotation {ann['id']} ({name})"
            try:
                with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation, not ours
                    warnings.simplefilter("ignore", DeprecationWarning)
                    mask = coco.annToMask(ann).astype(bool)
            except Exception as exc:  # pycocotools raises many kinds on malformed segmentations
                self.skip(label, f"segmentation cannot be decoded ({type(exc).__name__}: {exc})")
                continue
            if mask.shape != size:
                self.skip(label, f"mask is {mask.shape[1]}x{mask.shape[0]} px, image {size[1]}x{size[0]}")
                continue
            if not mask.any():
                self.skip(label, "empty mask")
                continue
            boxes.append(gt_box(ann, mask))
            points.append(farthest_point(mask))
            masks.append(mask)
        if not masks:
            return None
        gt = torch.from_numpy(np.stack(masks))
        filled = torch.from_numpy(np.stack([box_fill_mask(b, *size) for b in boxes]))
        return _Item(name, image, np.stack(boxes), np.stack(points), gt, mask_iou(filled, gt).numpy(),
                     gt.flatten(1).sum(1).numpy())

    def measure(self, model: Sam | Sam2) -> QualityResult:
        from tqdm.auto import tqdm

        predictor = predictor_for(model)
        scores = {"box": ([], []), "point": ([], [])}
        for item in tqdm(self.items, desc="box/point prompts", unit="image", disable=not self.progress, leave=False):
            predictor.set_image(item.image)
            for part in batches(len(item.masks), PROMPT_BATCH):
                gt = item.masks[part]
                for kind, prompt in (("box", {"boxes": item.boxes[part]}), ("point", {"points": item.points[part]})):
                    best, oracle = prompt_ious(predictor, gt, **prompt)
                    scores[kind][0].append(best)
                    scores[kind][1].append(oracle)
        self._per_instance = {f"{kind}_miou": torch.cat(best).numpy() for kind, (best, _) in scores.items()}
        metrics = {}
        for kind, (best, oracle) in scores.items():
            metrics[f"{kind}_miou"] = float(torch.cat(best).mean())
            metrics[f"{kind}_miou_oracle"] = float(torch.cat(oracle).mean())
        metrics["box_fill_miou"] = float(np.concatenate([item.box_fill for item in self.items]).mean())
        self._per_instance["mask_ceiling_miou"] = self.ceiling_ious(model.resolution, isinstance(model, Sam2))
        metrics["mask_ceiling_miou"] = float(self._per_instance["mask_ceiling_miou"].mean())
        score = (metrics["box_miou"] + metrics["point_miou"]) / 2
        return self.result(score, metrics, sum(len(item.masks) for item in self.items))

    def ceiling_ious(self, resolution: int, square: bool = False) -> np.ndarray:
        """Each instance's IoU of :func:`mask_ceiling` at ``resolution`` px (``square``: SAM 2's frame) with
        its GT: ``(num instances,)``."""
        key = (resolution, square)
        if key not in self._ceilings:
            self._ceilings[key] = np.concatenate([
                mask_iou(mask_ceiling(item.masks[part], resolution, square), item.masks[part]).numpy()
                for item in self.items for part in batches(len(item.masks), PROMPT_BATCH)])
        return self._ceilings[key]

    def by_size(self) -> dict[str, int | float | None]:
        """The last measurement per COCO size range: ``instances_<range>`` and ``box_miou_<range>``,
        ``point_miou_<range>``, ``box_fill_miou_<range>``, ``mask_ceiling_miou_<range>`` (``None``
        for a range without instances).

        Raises RuntimeError before any measurement.
        """
        if not self._per_instance:
            raise RuntimeError("by_size() needs a measurement first (evaluate the model)")
        areas = np.concatenate([item.areas for item in self.items])
        values = {**self._per_instance, "box_fill_miou": np.concatenate([item.box_fill for item in self.items])}
        out: dict[str, int | float | None] = {
            f"instances_{name}": int(chosen.sum()) for name, chosen in size_range_masks(areas).items()}
        for key, vals in values.items():
            for name, (_, mean) in size_range_means(vals, areas).items():
                out[f"{key}_{name}"] = mean
        return out


def _image_source(images_dir) -> tuple[Path | None, dict[str, Path] | None]:
    """``(folder, None)`` for a folder, ``(None, {file name: path})`` for a sequence of paths."""
    if isinstance(images_dir, (str, Path)):
        folder = Path(images_dir)
        if not folder.is_dir():
            raise UserError(f"{folder}: image folder not found")
        return folder, None
    chosen = {}
    for item in images_dir:
        if not isinstance(item, (str, Path)):
            raise UserError("the COCO evaluator needs an image folder or image paths, not image arrays")
        chosen[Path(item).name] = Path(item)
    return None, chosen


def _report_orphans(coco, skip) -> None:
    """Skip-report non-crowd annotations whose ``image_id`` is not among the images."""
    for image_id, anns in coco.imgToAnns.items():
        if image_id in coco.imgs:
            continue
        for ann in anns:
            if not ann.get("iscrowd", 0):
                skip(f"annotation {ann['id']}", f"image_id {image_id!r} is not in images")
