"""Segment-everything mask generator: prompt policies, filtering, NMS, RLE, and a decoder-output cache.

``MaskGenerator(predictor, policy)`` works with any predictor that has the official
``SamPredictor`` API (``set_image``, ``predict_torch``, ``transform.apply_coords``,
``input_size``, ``device``, ``model.postprocess_masks``, ``model.mask_threshold``), so the
same code runs on our predictor and on the official one. With ``Policy(kind="grid")`` it returns
what ``segment_anything.SamAutomaticMaskGenerator`` returns for the same parameters.
Two optional members, which both of samnas's predictors have, replace parts of that API:
``predict_low_res`` (the decoder's low-res logits and IoU, no upscaling) and
``upscale_logits(low_res, input_size, original_size)`` (the family's mask upscaling; without it
``model.postprocess_masks(low_res, input_size, original_size)``, SAM's signature).

SAM 2 runs through ``supernet.modeling.sam2.predictor.Sam2Predictor``, which has both: prompts in
its square input frame, its decoder (the padding point always appended, the high-resolution
features, the sigmoid IoU head) with ``multimask_output=True``, so a point gives the three multimask
outputs, and masks upscaled straight from its low-res grid, unclamped, at ``mask_threshold`` 0.
That is what ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` does with
``use_m2m=False`` and ``multimask_output=True``, its defaults: with ``Policy(kind="grid")`` and the
same parameters it returns the same masks (tests/test_everything_sam2.py). Where ours differs:

- defaults: :class:`~.policies.Policy` keeps SAM's (``pred_iou_thresh`` 0.88); SAM 2's generator's is
  0.8, which :func:`~.calibrate.model_defaults` gives SAM 2 models (``samnas everything`` without a policy);
- ``min_mask_region_area > 0``: ours removes small holes and islands after NMS as SAM's generator does;
  SAM 2's fills them in its predictor's upscaling with a CUDA kernel (skipped, with a warning, where
  that kernel is missing) and never calls its own ``postprocess_small_regions``;
- ``use_m2m`` (a second decoder pass with each mask as the mask prompt) is not offered;
- ``point_coords`` in the records are float64 pixels; SAM 2's are the same points rounded to float32.

Records (one dict per mask): ``segmentation`` (HxW bool, COCO RLE or uncompressed RLE; absent
for output mode ``boxes``, the boxes-with-scores form), ``area`` (px), ``bbox`` (XYWH px, SAM's
convention: width = x_max - x_min), ``predicted_iou``, ``point_coords`` ([[x, y]] px),
``stability_score``, ``crop_box`` (XYWH px).

Structure: per crop, :meth:`MaskGenerator._decode` makes the decoder calls (raw per-point low-res logits
and IoU predictions, through the optional :class:`DecoderCache`); only the candidates that pass the
predicted-IoU threshold (or that coverage needs) are upscaled to the crop's size, since upscaling every
candidate of a dense grid dominates the time on photos; :meth:`MaskGenerator._filter`,
:meth:`MaskGenerator._finish_crop` and :meth:`MaskGenerator._clean_small_regions` only filter
(thresholds, stability, crop edges, NMS, small regions), so that re-filtering a cached image with
other thresholds costs no decoder call.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

import numpy as np
import torch

from infra.errors import ConfigError

from . import masks as M
from .masks import MaskData
from .policies import Policy, coarse_to_fine_order, policy_from_dict


def image_key(image: np.ndarray) -> str:
    """A content hash of an ``(H, W, 3)`` uint8 image (shape included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


class DecoderCache:
    """Raw decoder outputs per (image, crop box, point): low-res logits ``(M, h, w)`` and IoU ``(M,)``.

    Re-running the generator with other thresholds (or another policy whose points were already
    decoded) then costs no decoder call. Least-recently-used entries go past ``max_bytes``.
    The cache belongs to one model: do not share it between models.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self._points: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._points)

    @staticmethod
    def point_key(img: str, crop_box: list[int], point: np.ndarray) -> tuple:
        return (img, tuple(int(v) for v in crop_box), float(point[0]), float(point[1]))

    def get(self, key: tuple):
        item = self._points.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._points.move_to_end(key)
        return item

    def put(self, key: tuple, low_res: torch.Tensor, iou: torch.Tensor) -> None:
        if key in self._points:
            return
        low_res, iou = low_res.detach().clone(), iou.detach().clone()
        self._points[key] = (low_res, iou)
        self.nbytes += low_res.numel() * low_res.element_size() + iou.numel() * iou.element_size()
        while self.nbytes > self.max_bytes and len(self._points) > 1:
            _, (lr, io) = self._points.popitem(last=False)
            self.nbytes -= lr.numel() * lr.element_size() + io.numel() * io.element_size()

    def input_size(self, img: str, crop_box: list[int]):
        return self._sizes.get((img, tuple(crop_box)))

    def set_input_size(self, img: str, crop_box: list[int], size: tuple[int, int]) -> None:
        self._sizes[(img, tuple(crop_box))] = tuple(size)


class TimedPredictor:
    """Proxy for a predictor that adds the wall time spent in ``set_image``/``predict_torch`` to ``model_ms``."""

    def __init__(self, predictor) -> None:
        self._p = predictor
        self.model_ms = 0.0
        self.calls = 0
        self.prompts = 0

    def __getattr__(self, name):
        return getattr(self._p, name)

    def set_image(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self._p.set_image(*args, **kwargs)
        finally:
            self.model_ms += (time.perf_counter() - t) * 1000.0

    def predict_torch(self, point_coords, *args, **kwargs):
        return self._timed(self._p.predict_torch, point_coords, *args, **kwargs)

    @property
    def predict_low_res(self):
        """The wrapped predictor's ``predict_low_res``, timed (AttributeError when it has none)."""
        inner = self._p.predict_low_res
        return lambda point_coords, *args, **kwargs: self._timed(inner, point_coords, *args, **kwargs)

    def _timed(self, fn, point_coords, *args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(point_coords, *args, **kwargs)
        finally:
            self.model_ms += (time.perf_counter() - t) * 1000.0
            self.calls += 1
            self.prompts += 0 if point_coords is None else int(point_coords.shape[0])


class _Crop:
    """State of one crop while its prompts are processed."""

    def __init__(self, image: np.ndarray, box: list[int], layer: int, key: str) -> None:
        x0, y0, x1, y1 = box
        self.image = image[y0:y1, x0:x1, :]
        self.hw = self.image.shape[:2]
        self.box = box
        self.layer = layer
        self.key = key
        self.embedded = False
        self.input_size = None
        self.covered = np.zeros(self.hw, dtype=bool)  # union of confident masks, crop frame
        self.parts: list[MaskData] = []


def _no_candidates() -> MaskData:
    """Zero candidates with every column a crop's candidates have (so concatenation never lacks one)."""
    return MaskData(iou=torch.zeros(0), stability=torch.zeros(0), boxes=torch.zeros((0, 4), dtype=torch.int64),
                    points=torch.zeros((0, 2), dtype=torch.float64), rles=[])


class MaskGenerator:
    """Automatic mask generation over a whole image with a prompt-sampling :class:`Policy`.

    ``stats`` (after :meth:`generate`) counts, for the last image: ``prompts_requested`` and
    ``decoder_calls_requested`` (what the policy asked for), ``prompts`` and ``decoder_calls``
    (what actually ran, after the cache), ``encoder_calls``, ``crops``, ``masks`` and the wall
    time split ``model_ms`` (encoder + decoder) / ``total_ms``.
    """

    def __init__(self, predictor, policy: Policy | dict | None = None, cache: DecoderCache | None = None,
                 **overrides) -> None:
        if isinstance(policy, dict):
            policy = policy_from_dict(policy)
        policy = policy or Policy()
        if overrides:
            policy = policy_from_dict({**policy.to_dict(), **overrides})
        self.policy = policy
        self.predictor = predictor
        self.cache = cache
        self.stats: dict = {}
        self._grids = M.layer_point_grids(policy.points_per_side, policy.crop_n_layers,
                                          policy.crop_n_points_downscale_factor)

    # ---- public ---------------------------------------------------------------------------------
    @property
    def last_stats(self) -> dict:
        """Counts and times for the last image (the same dict as :attr:`stats`)."""
        return self.stats

    @torch.no_grad()
    def generate(self, image: np.ndarray, key: str | None = None) -> list[dict]:
        """``(H, W, 3)`` uint8 RGB -> mask records sorted as SAM's generator sorts them."""
        t0 = time.perf_counter()
        data = self.generate_data(image, key)
        records = self.records(data)
        self.stats["masks"] = len(records)
        self.stats["total_ms"] = (time.perf_counter() - t0) * 1000.0
        return records

    @torch.no_grad()
    def generate_data(self, image: np.ndarray, key: str | None = None) -> MaskData:
        """Candidates after all filtering, image frame: ``iou (N,)``, ``stability (N,)``, ``boxes (N, 4)``
        XYXY int64, ``points (N, 2)`` float64 px, ``crop_boxes (N, 4)`` XYXY, and ``rles`` (COCO RLE list)."""
        self.stats = {"prompts_requested": 0, "decoder_calls_requested": 0, "prompts": 0, "decoder_calls": 0,
                      "encoder_calls": 0, "crops": 0, "model_ms": 0.0}
        p = self.policy
        hw = image.shape[:2]
        key = key or (image_key(image) if self.cache is not None else "")
        boxes, layers = M.crop_boxes(hw, p.crop_n_layers, p.crop_overlap_ratio)
        parts = []
        for box, layer in zip(boxes, layers):
            crop = _Crop(image, box, layer, key)
            self._run_policy(crop, hw)
            parts.append(self._finish_crop(crop))
            self.stats["crops"] += 1
        empty = _no_candidates()
        empty["crop_boxes"] = torch.zeros((0, 4), dtype=torch.int64)
        data = MaskData.cat([empty, *parts])
        if len(boxes) > 1 and len(data["rles"]):
            scores = 1 / _box_area(data["crop_boxes"])
            data = data.filter(M.nms(data["boxes"], scores, p.crop_nms_thresh))
        if p.min_mask_region_area > 0 and len(data["rles"]):
            data = self._clean_small_regions(data)
        return data

    def records(self, data: MaskData, mode: str | None = None) -> list[dict]:
        """Candidates -> list of record dicts; ``mode`` (default: the policy's output_mode) is one of
        ``binary_mask``, ``coco_rle``, ``uncompressed_rle`` or ``boxes`` (no segmentation)."""
        mode = mode or self.policy.output_mode
        if mode not in ("binary_mask", "coco_rle", "uncompressed_rle", "boxes"):
            raise ConfigError(f"output_mode: {mode!r} not in ['binary_mask', 'coco_rle', 'uncompressed_rle', 'boxes']")
        areas = M.rle_areas(data["rles"])
        binary = M.decode_rles(data["rles"]) if mode in ("binary_mask", "uncompressed_rle") and data["rles"] else None
        out = []
        for i in range(len(data["rles"])):
            rec = {}
            if mode == "binary_mask":
                rec["segmentation"] = binary[i]
            elif mode == "uncompressed_rle":
                rec["segmentation"] = M.mask_to_rle_pytorch(torch.from_numpy(binary[i:i + 1]))[0]
            elif mode == "coco_rle":
                rec["segmentation"] = data["rles"][i]
            b = data["boxes"][i].tolist()
            c = data["crop_boxes"][i].tolist()
            rec.update({
                "area": areas[i],
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "predicted_iou": data["iou"][i].item(),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": data["stability"][i].item(),
                "crop_box": [c[0], c[1], c[2] - c[0], c[3] - c[1]],
            })
            out.append(rec)
        return out

    # ---- policies -------------------------------------------------------------------------------
    def _run_policy(self, crop: _Crop, image_hw) -> None:
        p = self.policy
        scale = np.array(crop.hw, dtype=float)[None, ::-1]  # (1, 2) as (w, h)
        dense = self._grids[crop.layer] * scale
        if p.kind == "grid":
            self._run_points(crop, dense, image_hw)
        elif p.kind == "hierarchical":
            n_sparse = max(1, int(p.sparse_points_per_side / (p.crop_n_points_downscale_factor ** crop.layer)))
            best = self._run_points(crop, M.point_grid(n_sparse) * scale, image_hw)
            self._cover_cells(crop, best.reshape(n_sparse, n_sparse) >= p.confidence_thresh)
            self._run_points(crop, dense[~self._covered(crop, dense)], image_hw)
        else:  # adaptive
            n = int(p.points_per_side / (p.crop_n_points_downscale_factor ** crop.layer))
            ordered = dense[coarse_to_fine_order(n)]
            done = 0
            for start in range(0, len(ordered), p.points_per_batch):
                chunk = ordered[start:start + p.points_per_batch]
                covered = self._covered(crop, chunk)
                if done >= p.min_prompts and covered.mean() >= p.stop_coverage:
                    break
                self._run_points(crop, chunk[~covered], image_hw)
                done += int((~covered).sum())

    @staticmethod
    def _covered(crop: _Crop, points: np.ndarray) -> np.ndarray:
        """``(P,)`` bool: the point (crop frame, px) lies inside a confident mask found so far."""
        if len(points) == 0:
            return np.zeros(0, dtype=bool)
        h, w = crop.hw
        xs = np.clip(points[:, 0].astype(int), 0, w - 1)
        ys = np.clip(points[:, 1].astype(int), 0, h - 1)
        return crop.covered[ys, xs]

    @staticmethod
    def _cover_cells(crop: _Crop, confident: np.ndarray) -> None:
        """Mark as covered the grid cells (``(n, n)`` bool, row = y) whose sparse point gave a confident mask."""
        n = confident.shape[0]
        h, w = crop.hw
        ys = np.round(np.arange(n + 1) * h / n).astype(int)
        xs = np.round(np.arange(n + 1) * w / n).astype(int)
        for i, j in zip(*np.nonzero(confident)):
            crop.covered[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = True

    def _run_points(self, crop: _Crop, points: np.ndarray, image_hw) -> np.ndarray:
        """Decode ``points`` (crop frame, px, float64) in batches and keep the filtered candidates.

        Returns each point's best predicted IoU ``(P,)``. Only candidates above the predicted-IoU
        threshold, and (for coverage) the confident ones, are upscaled to the crop's size.
        """
        p = self.policy
        best = []
        thr = float(self.predictor.model.mask_threshold)
        for start in range(0, len(points), p.points_per_batch):
            batch = points[start:start + p.points_per_batch]
            low, iou = self._decode(crop, batch)
            best.append(iou.amax(dim=1).cpu().numpy())
            n_out = iou.shape[1]
            scores = iou.flatten(0, 1)
            keep = scores > p.pred_iou_thresh if p.pred_iou_thresh > 0.0 else torch.ones_like(scores, dtype=torch.bool)
            confident = scores >= p.confidence_thresh if p.kind != "grid" else torch.zeros_like(keep)
            idx = torch.nonzero(keep | confident).flatten()
            logits = self._upscale(crop, low.flatten(0, 1)[idx])
            if bool(confident.any()):  # coverage: every decoded mask the model is confident in, before filtering
                found = logits[confident[idx]] > thr
                crop.covered |= found.any(dim=0).cpu().numpy()
            kept = keep[idx]
            pts = torch.as_tensor(np.repeat(batch, n_out, axis=0))[idx.cpu()[kept.cpu()]]
            crop.parts.append(self._filter(crop, logits[kept], scores[idx][kept], pts, image_hw))
        return np.concatenate(best) if best else np.zeros(0)

    def _upscale(self, crop: _Crop, low: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``(N, h, w)`` -> logits at the crop's size ``(N, H, W)``.

        Filtering work, not model time: ``model_ms`` counts the encoder and decoder calls only, so
        that a time predicted from them plus the measured rest stays right when outputs are cached.
        """
        input_size = crop.input_size or self.cache.input_size(crop.key, crop.box)
        upscale = getattr(self.predictor, "upscale_logits", None) or self.predictor.model.postprocess_masks
        return upscale(low[:, None], input_size, crop.hw)[:, 0]

    # ---- decoder + cache ------------------------------------------------------------------------
    def _embed(self, crop: _Crop) -> None:
        if not crop.embedded:
            t = time.perf_counter()
            self.predictor.set_image(crop.image)
            self.stats["model_ms"] += (time.perf_counter() - t) * 1000.0
            self.stats["encoder_calls"] += 1
            crop.embedded = True
            crop.input_size = tuple(self.predictor.input_size)
            if self.cache is not None:
                self.cache.set_input_size(crop.key, crop.box, crop.input_size)

    def _decode(self, crop: _Crop, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, 2)`` points -> low-res logits ``(P, M, h, w)`` and IoU ``(P, M)`` for the crop."""
        self.stats["prompts_requested"] += len(points)
        self.stats["decoder_calls_requested"] += 1
        cache = self.cache
        keys = [cache.point_key(crop.key, crop.box, pt) for pt in points] if cache is not None else None
        hits = [cache.get(k) for k in keys] if cache is not None else [None] * len(points)
        missing = [i for i, h in enumerate(hits) if h is None]
        if missing:
            self._embed(crop)
            coords = self.predictor.transform.apply_coords(points[missing], crop.hw)
            coords = torch.as_tensor(coords, device=self.predictor.device)
            labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
            t = time.perf_counter()
            low_res_only = getattr(self.predictor, "predict_low_res", None)
            if low_res_only is not None:
                m_low, m_iou = low_res_only(coords[:, None, :], labels[:, None], multimask_output=True)
            else:  # the official API upscales every mask; only its low-res logits are used
                _, m_iou, m_low = self.predictor.predict_torch(coords[:, None, :], labels[:, None],
                                                               multimask_output=True, return_logits=True)
            self.stats["model_ms"] += (time.perf_counter() - t) * 1000.0
            self.stats["decoder_calls"] += 1
            self.stats["prompts"] += len(missing)
            if cache is not None:
                for j, i in enumerate(missing):
                    cache.put(keys[i], m_low[j].cpu(), m_iou[j].cpu())
            if len(missing) == len(points):
                return m_low, m_iou
        device = self.predictor.device
        hit_idx = [i for i, h in enumerate(hits) if h is not None]
        hit_low = torch.stack([hits[i][0] for i in hit_idx]).to(device)
        hit_iou = torch.stack([hits[i][1] for i in hit_idx]).to(device)
        if not missing:
            return hit_low, hit_iou
        low = torch.empty((len(points),) + tuple(hit_low.shape[1:]), dtype=hit_low.dtype, device=device)
        iou = torch.empty((len(points), hit_iou.shape[1]), dtype=hit_iou.dtype, device=device)
        low[hit_idx], iou[hit_idx] = hit_low, hit_iou
        low[missing], iou[missing] = m_low, m_iou
        return low, iou

    # ---- filtering ------------------------------------------------------------------------------
    def _filter(self, crop: _Crop, logits: torch.Tensor, scores: torch.Tensor, pts: torch.Tensor,
                image_hw) -> MaskData:
        """Candidates that passed the predicted-IoU filter (> thresh; logits ``(N, H, W)`` at the crop's
        size, scores ``(N,)``, points ``(N, 2)``) -> the kept part (boxes crop frame, RLEs image frame).

        Order of filters (SAM's): predicted IoU, stability (>= thresh), binarise, box, crop edge.
        """
        p = self.policy
        thr = float(self.predictor.model.mask_threshold)
        stability = M.stability_scores(logits, thr, p.stability_score_offset)
        if p.stability_score_thresh > 0.0:
            k = stability >= p.stability_score_thresh
            logits, scores, pts, stability = logits[k], scores[k], pts[k.cpu()], stability[k]
        binary = logits > thr
        boxes = M.masks_to_boxes(binary)
        h, w = image_hw
        k = ~M.near_crop_edge(boxes.cpu(), crop.box, [0, 0, w, h]).to(boxes.device)
        if not bool(k.all()):
            binary, scores, pts, stability, boxes = binary[k], scores[k], pts[k.cpu()], stability[k], boxes[k]
        rles = M.encode_rles(M.paste_masks(binary, crop.box, image_hw))
        return MaskData(iou=scores.cpu(), stability=stability.cpu(), boxes=boxes.cpu(), points=pts, rles=rles)

    def _finish_crop(self, crop: _Crop) -> MaskData:
        """NMS within the crop, then boxes and points to the image frame."""
        data = MaskData.cat([_no_candidates(), *crop.parts])
        crop.parts = []
        data = data.filter(M.nms(data["boxes"], data["iou"], self.policy.box_nms_thresh))
        data["boxes"] = M.uncrop_boxes_xyxy(data["boxes"], crop.box)
        data["points"] = M.uncrop_points(data["points"], crop.box)
        data["crop_boxes"] = torch.tensor([crop.box] * len(data["rles"]), dtype=torch.int64).reshape(-1, 4)
        return data

    def _clean_small_regions(self, data: MaskData) -> MaskData:
        """Fill small holes and drop small islands, then NMS again preferring unchanged masks."""
        p = self.policy
        masks = M.decode_rles(data["rles"])
        cleaned, unchanged = [], []
        for m in masks:
            m2, c1 = M.remove_small_regions(m, p.min_mask_region_area, "holes")
            m2, c2 = M.remove_small_regions(m2, p.min_mask_region_area, "islands")
            cleaned.append(m2)
            unchanged.append(float(not (c1 or c2)))
        cleaned_t = torch.as_tensor(np.stack(cleaned))
        boxes = M.masks_to_boxes(cleaned_t)
        keep = M.nms(boxes, torch.tensor(unchanged), max(p.box_nms_thresh, p.crop_nms_thresh))
        rles, new_boxes = list(data["rles"]), data["boxes"].clone()
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                rles[i] = M.encode_rles(cleaned_t[i:i + 1])[0]
                new_boxes[i] = boxes[i]
        data = data.filter(torch.arange(len(rles)))  # a copy: the caller's columns stay as they were
        data["rles"], data["boxes"] = rles, new_boxes
        return data.filter(keep)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` XYXY -> ``(N,)`` area ``(x1-x0)*(y1-y0)`` in the boxes' dtype."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
