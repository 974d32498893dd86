"""Quality of a segment-everything policy: mask AR@K against COCO ground truth, or agreement with a reference.

- With COCO annotations (instances or panoptic, read by ``scenes.annotations.load_coco``; every
  thing and stuff segment counts): class-agnostic mask AR averaged over K = 10, 100, 1000
  detections (pycocotools ``COCOeval``, ``iouType="segm"``, ``useCats=0``): :func:`mask_ar`.
- Without labels: :func:`agreement` with a reference policy's masks on the same photos (the
  model's own dense 32x32 grid at its default thresholds, ``nas.everything.calibrate``). It needs
  no labels and means the same for any checkpoint. A reference that finds no mask at all is a
  UserError: there would be nothing to agree with.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from infra.errors import UserError

from . import masks as M

AR_DETS = (10, 100, 1000)


def mask_ar(gt: dict, predictions: dict[int, list[dict]], max_dets: tuple[int, ...] = AR_DETS) -> dict:
    """Class-agnostic mask AR@K over the images in ``predictions`` (COCOeval segm, useCats=0).

    ``gt`` is a COCO instances dict; ``predictions`` maps image id -> records with a COCO-RLE
    ``segmentation`` and a score (``predicted_iou``). Returns ``{"AR@10": .., "AR@100": .., "AR@1000": ..,
    "quality": mean of them}``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = sorted(predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": gt["images"], "annotations": gt["annotations"],
                           "categories": [{"id": 1, "name": "object"}]}
        coco_gt.dataset["annotations"] = [dict(a, category_id=1) for a in gt["annotations"]]
        coco_gt.createIndex()
        dets = [{"image_id": i, "category_id": 1, "segmentation": r["segmentation"],
                 "score": float(r["predicted_iou"])} for i in ids for r in predictions[i]]
        if not dets:
            return {**{f"AR@{k}": 0.0 for k in max_dets}, "quality": 0.0}
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.useCats = 0
        ev.params.imgIds = ids
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    recall = ev.eval["recall"]  # (T iou thresholds, K cats, A areas, M maxDets)
    out = {}
    for m, k in enumerate(max_dets):
        r = recall[:, :, 0, m]
        valid = r[r > -1]
        out[f"AR@{k}"] = float(valid.mean()) if valid.size else 0.0
    out["quality"] = float(np.mean([out[f"AR@{k}"] for k in max_dets]))
    return out


def match_ious(reference: list[dict], candidate: list[dict], iou_threshold: float = 0.5) -> list[float]:
    """IoUs of a greedy one-to-one matching of ``candidate`` to ``reference`` RLEs (one image).

    Pairs are taken by decreasing IoU; a pair counts when its IoU >= ``iou_threshold``.
    """
    if not reference or not candidate:
        return []
    iou = M.rle_iou(reference, candidate)
    pairs = []
    order = np.argsort(-iou, axis=None, kind="stable")
    used_r, used_c = set(), set()
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < iou_threshold:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append(float(iou[r, c]))
    return pairs


def agreement(references: list[list[dict]], candidates: list[list[dict]], iou_threshold: float = 0.5,
              what: str = "the reference") -> dict:
    """How well ``candidates`` reproduce ``references``: per image, lists of COCO RLEs, pooled over images.

    Per image, reference and candidate masks are matched one to one (:func:`match_ious`, IoU >=
    ``iou_threshold``). Over all images, with R reference masks, C candidate masks and matched IoUs
    ``m_1..m_n``:

    - ``recall = n / R`` (the share of the reference's masks found again),
    - ``mean_iou = mean(m_i)`` (0 when n = 0), ``precision = n / C`` (0 when C = 0),
    - ``quality = sum(m_i) / R = recall * mean_iou``, the tuning objective: 1 exactly when every
      reference mask is reproduced pixel for pixel; extra candidate masks do not lower it.

    Also returns ``reference_masks`` (R), ``candidate_masks`` (C), ``matched_masks`` (n). Raises
    UserError when R = 0 (``what`` names the reference in the message): agreement with nothing is undefined.
    """
    if len(references) != len(candidates):
        raise ValueError(f"agreement: {len(references)} reference images but {len(candidates)} candidate images")
    n_ref = sum(len(r) for r in references)
    n_cand = sum(len(c) for c in candidates)
    if n_ref == 0:
        raise UserError(f"{what} found no mask on any of the {len(references)} image(s), so agreement with it "
                        f"is undefined: lower its thresholds or pass --annotations")
    ious = [v for ref, cand in zip(references, candidates) for v in match_ious(ref, cand, iou_threshold)]
    recall = len(ious) / n_ref
    mean_iou = float(np.mean(ious)) if ious else 0.0
    return {"recall": recall, "mean_iou": mean_iou, "precision": len(ious) / n_cand if n_cand else 0.0,
            "quality": float(np.sum(ious)) / n_ref, "reference_masks": n_ref, "candidate_masks": n_cand,
            "matched_masks": len(ious)}
