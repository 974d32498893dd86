"""Default segment-everything thresholds per model, and how they are calibrated.

SAM's automatic mask generator keeps a mask when its predicted IoU is above ``pred_iou_thresh``
(0.88) and its stability score at least ``stability_score_thresh`` (0.95). Those values were set
for ViT-H; a smaller model's IoU head rarely reaches them and the dense grid then returns no mask
at all. So every model gets its own defaults:

- the packaged ``sam_micro`` reference: ``everything_defaults`` in its card
  (``supernet/weights/sam_micro.card.json``), written by :func:`calibrate_thresholds` through
  ``samnas calibrate-everything`` (SAM's values while the card has none);
- any other checkpoint or subnet: SAM's values, SAM 2's for a SAM 2 model (its automatic mask
  generator's ``pred_iou_thresh`` is 0.8), unless a policy file (``--policy``, from
  ``tune-everything`` or ``calibrate-everything --out``) says otherwise.

**Calibration** (:func:`calibrate_thresholds`, no labels): both thresholds move together along
one line, ``pred_iou_thresh = stability_score_thresh = t``. The number of masks the dense 32x32
grid keeps after NMS can only fall as ``t`` rises (greedy NMS keeps a mask regardless of
lower-scored ones), so bisection finds the largest ``t`` (to 0.01, within [0.05, 0.95]) at which
the grid still keeps at least ``target_masks`` masks per calibration photo on average. A COCO
photo holds about 11 panoptic segments (things and stuff, coco128), hence the default target of
12. Calibrate on training photos, never on the photos you report numbers on. The decoder runs
once per point; the bisection only re-filters its cached outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

from infra.errors import UserError
from infra.fileio import atomic_write_text

from .policies import Policy, policy_from_dict

SAM_DEFAULTS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
SAM2_DEFAULTS = {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}  # SAM2AutomaticMaskGenerator's
REFERENCE_TAG = "sam_micro"  # the tag supernet.model_source.load_model gives the packaged micro reference
CARD_KEY = "everything_defaults"
DEFAULT_TARGET_MASKS = 12.0


def reference_card() -> Path:
    """The packaged reference's card JSON (``sam_micro.card.json`` beside ``sam_micro.pt``)."""
    from supernet.reference import WEIGHTS_DIR

    return WEIGHTS_DIR / "sam_micro.card.json"


def read_card_defaults(card: str | Path) -> dict | None:
    """``everything_defaults`` of a card JSON, or None when the file or key is absent.

    UserError (naming the file) when present but unusable.
    """
    card = Path(card)
    if not card.is_file():
        return None
    try:
        doc = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{card}: model card is not readable JSON ({exc})") from None
    found = doc.get(CARD_KEY) if isinstance(doc, dict) else None
    if found is None:
        return None
    try:
        values = {k: float(found[k]) for k in SAM_DEFAULTS}
        policy_from_dict(values)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{card}: {CARD_KEY} needs pred_iou_thresh and stability_score_thresh in [0, 1] "
                        f"({type(exc).__name__}: {exc})") from None
    return {**found, **values}


def model_defaults(tag: str, card: str | Path | None = None, sam2: bool = False) -> tuple[dict, str]:
    """``({pred_iou_thresh, stability_score_thresh}, where they come from)`` for the model ``tag``
    (``sam2``: a SAM 2 model, whose tag may not say so, e.g. ``subnet-<folder>``)."""
    if sam2:
        return dict(SAM2_DEFAULTS), "SAM 2's defaults"
    if tag == REFERENCE_TAG:
        card = Path(card) if card else reference_card()
        found = read_card_defaults(card)
        if found is not None:
            return {k: found[k] for k in SAM_DEFAULTS}, f"calibrated ({card.name})"
        return dict(SAM_DEFAULTS), f"SAM's defaults ({card.name} has no {CARD_KEY})"
    return dict(SAM_DEFAULTS), "SAM's defaults"


def default_policy(tag: str, sam2: bool = False, **overrides) -> Policy:
    """The dense 32x32 grid at the model's default thresholds (what ``everything`` runs without --policy)."""
    return policy_from_dict({**Policy().to_dict(), **model_defaults(tag, sam2=sam2)[0], **overrides})


def masks_per_image(predictor, images: list, thresh: float, cache, points_per_side: int = 32) -> float:
    """Mean masks per image the ``points_per_side`` grid keeps with both thresholds at ``thresh``."""
    from .generator import MaskGenerator

    policy = Policy(points_per_side=points_per_side, pred_iou_thresh=thresh, stability_score_thresh=thresh,
                    output_mode="coco_rle")
    counts = [len(MaskGenerator(predictor, policy, cache=cache).generate_data(img)["rles"]) for _, img in images]
    return sum(counts) / len(counts)


def calibrate_thresholds(predictor, images: list, target_masks: float = DEFAULT_TARGET_MASKS,
                         points_per_side: int = 32, progress: bool = False) -> dict:
    """Bisect the shared threshold ``t`` (see the module docstring) on ``images`` ``[(path, array)]``.

    Returns ``{pred_iou_thresh, stability_score_thresh, masks_per_image, target_masks_per_image,
    images, points_per_side, method}``, ready for a card's ``everything_defaults``. When even
    ``t = 0.05`` keeps fewer masks than the target, that lowest value is returned (and the count says so).
    """
    from tqdm.auto import tqdm

    from .generator import DecoderCache

    if not images:
        raise UserError("calibration needs at least one image")
    if target_masks <= 0:
        raise UserError(f"--target-masks must be positive, got {target_masks}")
    cache = DecoderCache(8 << 30)
    lo, hi = 5, 95  # hundredths; invariant: count(hi) < target, and count(lo) >= target unless lo stays 5
    bar = tqdm(total=8, desc="calibrating", unit="step", disable=not progress, leave=False)
    counts = {hi: masks_per_image(predictor, images, hi / 100, cache, points_per_side)}  # decodes every point once
    bar.update()
    if counts[hi] >= target_masks:
        lo = hi
    else:  # the lowest threshold upscales nearly every candidate: evaluated only if the bisection ends there
        while hi - lo > 1:
            mid = (lo + hi) // 2
            counts[mid] = masks_per_image(predictor, images, mid / 100, cache, points_per_side)
            bar.update()
            lo, hi = (mid, hi) if counts[mid] >= target_masks else (lo, mid)
        if lo not in counts:
            counts[lo] = masks_per_image(predictor, images, lo / 100, cache, points_per_side)
    bar.close()
    t = lo / 100
    return {"pred_iou_thresh": t, "stability_score_thresh": t, "masks_per_image": round(counts[lo], 2),
            "target_masks_per_image": target_masks, "images": len(images), "points_per_side": points_per_side,
            "method": "largest shared threshold t (0.01 steps) at which the dense grid keeps >= target masks "
                      "per calibration image (nas.everything.calibrate)"}


def write_card_defaults(card: str | Path, defaults: dict) -> Path:
    """Set ``everything_defaults`` in the card JSON (atomically; other keys kept)."""
    card = Path(card)
    doc = {}
    if card.is_file():
        try:
            doc = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{card}: model card is not readable JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise UserError(f"{card}: model card is not a JSON object")
    doc[CARD_KEY] = defaults
    return atomic_write_text(card, json.dumps(doc, indent=2) + "\n")
