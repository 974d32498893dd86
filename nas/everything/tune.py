"""Tuning the segment-everything policy for one model, device and time budget (Optuna, two objectives).

Objectives: quality (maximised) and time per image in ms (minimised), with ``time <= budget`` as
a constraint. Quality is

- with COCO annotations (instances or panoptic, read by ``scenes.annotations.load_coco``; every
  thing and stuff segment counts): class-agnostic mask AR averaged over K = 10, 100, 1000
  detections (pycocotools ``COCOeval``, ``iouType="segm"``, ``useCats=0``);
- without labels: :func:`agreement` with the model's own dense 32x32 grid at its default thresholds
  (``nas.everything.calibrate``) on the same photos, or with ``reference_policy`` when given. It
  needs no labels and means the same for any checkpoint. A reference that finds no mask at all is a
  UserError: there would be nothing to agree with.

The chosen policy can be scored on other photos than it was tuned on (:func:`score_policy`), with
the same objective, so that what it keeps of the grid is measured on photos it has not seen.

Time is ``predicted`` by default: encoder ms x crops + per-call and per-prompt decoder ms (fitted
once on this machine) x what the policy asks for + the measured filtering/NMS/RLE time. All trials
share one :class:`DecoderCache`, so a trial re-decodes only points never seen before. ``measured``
times the whole generator on each image instead (no cache).
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch

from infra.errors import UserError
from scenes.images import ImageReader, list_images

from . import masks as M
from .generator import DecoderCache, MaskGenerator
from .policies import Policy, policy_from_dict, save_policy

AR_DETS = (10, 100, 1000)
TIME_MODES = ("predicted", "measured")


# ---- quality ------------------------------------------------------------------------------------
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


# ---- time ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Per-image time in ms from the generator's counts: encoder per crop, decoder per call and per prompt."""

    encoder_ms: float
    decoder_call_ms: float
    decoder_prompt_ms: float

    def predict_ms(self, stats: dict) -> float:
        """``stats`` from :class:`MaskGenerator` -> ms (model part predicted, filtering measured)."""
        overhead = max(0.0, stats["total_ms"] - stats["model_ms"])
        return (self.encoder_ms * stats["crops"] + self.decoder_call_ms * stats["decoder_calls_requested"]
                + self.decoder_prompt_ms * stats["prompts_requested"] + overhead)


def calibrate(predictor, image: np.ndarray, batch: int = 64, repeats: int = 3) -> CostModel:
    """Time ``set_image`` and 1-point / ``batch``-point decoder calls on ``image``; fit a + b * prompts.

    The decoder calls are the generator's: low-res logits only where the predictor offers it
    (upscaling the kept candidates is filtering work, measured in every trial).
    """
    from nas.timing import time_callable

    enc = time_callable(lambda: predictor.set_image(image), repeats=repeats, warmup=1).median_ms
    h, w = image.shape[:2]

    def decode(n: int):
        pts = np.stack([np.linspace(0, w - 1, n), np.linspace(0, h - 1, n)], axis=1)
        coords = torch.as_tensor(predictor.transform.apply_coords(pts, (h, w)), device=predictor.device)
        labels = torch.ones(n, dtype=torch.int, device=predictor.device)
        low_res_only = getattr(predictor, "predict_low_res", None)  # what the generator calls (no upscaling)
        if low_res_only is not None:
            return lambda: low_res_only(coords[:, None], labels[:, None], multimask_output=True)
        return lambda: predictor.predict_torch(coords[:, None], labels[:, None], multimask_output=True,
                                               return_logits=True)

    t1 = time_callable(decode(1), repeats=repeats, warmup=1).median_ms
    tb = time_callable(decode(batch), repeats=repeats, warmup=1).median_ms
    per_prompt = max(0.0, (tb - t1) / (batch - 1))
    return CostModel(encoder_ms=enc, decoder_call_ms=max(0.0, t1 - per_prompt), decoder_prompt_ms=per_prompt)


# ---- search space -------------------------------------------------------------------------------
def suggest_policy(trial: optuna.Trial, max_points_per_side: int = 32, max_crop_layers: int = 1) -> Policy:
    """A policy from the trial: kind, grid density, thresholds, crops and the kind's own knobs."""
    sides = [s for s in (4, 6, 8, 12, 16, 24, 32, 48, 64) if s <= max_points_per_side] or [max_points_per_side]
    kind = trial.suggest_categorical("kind", ["grid", "hierarchical", "adaptive"])
    d = {
        "kind": kind,
        "points_per_side": trial.suggest_categorical("points_per_side", sides),
        "pred_iou_thresh": trial.suggest_float("pred_iou_thresh", 0.3, 0.95),
        "stability_score_thresh": trial.suggest_float("stability_score_thresh", 0.5, 0.98),
        "box_nms_thresh": trial.suggest_float("box_nms_thresh", 0.4, 0.9),
        "crop_n_layers": trial.suggest_int("crop_n_layers", 0, max_crop_layers),
        "output_mode": "coco_rle",
    }
    if d["crop_n_layers"]:
        d["crop_n_points_downscale_factor"] = trial.suggest_categorical("crop_n_points_downscale_factor", [1, 2])
    if kind == "hierarchical":
        d["sparse_points_per_side"] = trial.suggest_categorical("sparse_points_per_side",
                                                                [s for s in sides if s <= 16] or [sides[0]])
    if kind != "grid":
        d["confidence_thresh"] = trial.suggest_float("confidence_thresh", 0.3, 0.95)
    if kind == "adaptive":
        d["stop_coverage"] = trial.suggest_float("stop_coverage", 0.5, 1.0)
    return policy_from_dict(d)


# ---- driver -------------------------------------------------------------------------------------
def read_images(folder: str | Path, max_images: int | None = None, log=print) -> tuple[list, list]:
    """``([(path, image)], skipped [(path, reason)])``; unreadable files are reported through ``log`` and skipped."""
    reader = ImageReader(on_skip=lambda path, why: log(f"skipped {path}: {why}"))
    paths = list_images(folder)
    images = []
    for path, img in reader.read(paths):
        images.append((path, img))
        if max_images and len(images) >= max_images:
            break
    if not images:
        raise UserError(f"{folder}: no readable images ({len(reader.skipped)} skipped)")
    return images, reader.skipped


def load_annotations(path: str | Path, images: list) -> tuple[dict, dict[str, int]]:
    """COCO instances or panoptic JSON -> ``(gt dict, file name -> image id)``, things and stuff alike.

    UserError (naming the file) when it is unusable or none of ``images`` ``[(path, array)]`` is in it.
    """
    from scenes.annotations import load_coco

    path = Path(path)
    coco = load_coco(path)
    ids = {Path(im["file_name"]).name: im["id"] for im in coco.dataset["images"]}
    if not any(Path(p).name in ids for p, _ in images):
        raise UserError(f"{path}: none of the images' file names ({Path(images[0][0]).name}, ...) appear in "
                        f"its 'images' (mismatched image ids)")
    return coco.dataset, ids


@dataclass
class Evaluation:
    """A policy's result on the tuning images."""

    quality: float
    time_ms: float
    metrics: dict
    stats: dict


class PolicyEvaluator:
    """Runs policies on fixed images with one shared cache; quality by AR@K or agreement.

    Without annotations the reference masks are ``reference_policy``'s (the caller passes the
    model's dense default grid; SAM's own grid when None), made once here: UserError when they are
    empty on every image. ``progress`` shows a bar while the reference is made.
    """

    def __init__(self, predictor, images: list, annotations: tuple[dict, dict] | None = None,
                 reference_policy: Policy | None = None, time_mode: str = "predicted",
                 cost: CostModel | None = None, cache_bytes: int = 2 << 30, progress: bool = False,
                 what: str = "the tuning images") -> None:
        from tqdm.auto import tqdm

        if time_mode not in TIME_MODES:
            raise UserError(f"--time {time_mode!r}: expected one of {list(TIME_MODES)}")
        self.predictor = predictor
        self.images = images
        self.time_mode = time_mode
        self.cache = DecoderCache(cache_bytes)
        self.gt = None
        if annotations is not None:
            gt, ids = annotations
            self.images = [(p, im) for p, im in images if Path(p).name in ids]
            self.ids = {Path(p).name: ids[Path(p).name] for p, _ in self.images}
            self.gt = gt
        self.cost = cost or (calibrate(predictor, self.images[0][1]) if time_mode == "predicted" else None)
        self.reference = None
        self.reference_policy = None
        if self.gt is None:
            ref = reference_policy or Policy()
            ref = policy_from_dict({**ref.to_dict(), "output_mode": "coco_rle"})
            self.reference_policy = ref
            bar = tqdm(self.images, desc="reference grid", unit="image", disable=not progress, leave=False)
            self.reference = [[r["segmentation"] for r in MaskGenerator(predictor, ref, cache=self.cache).generate(im)]
                              for _, im in bar]
            if not any(self.reference):
                raise UserError(f"the reference ({ref.kind} {ref.points_per_side}x{ref.points_per_side}, "
                                f"pred_iou_thresh {ref.pred_iou_thresh:g}, stability_score_thresh "
                                f"{ref.stability_score_thresh:g}) found no mask on any of the {len(self.images)} "
                                f"images of {what}, so agreement with it is undefined: calibrate the model's "
                                f"defaults (samnas calibrate-everything), give --reference-policy with lower "
                                f"thresholds, or pass --annotations")

    def evaluate(self, policy: Policy) -> Evaluation:
        policy = policy_from_dict({**policy.to_dict(), "output_mode": "coco_rle"})
        results, times, totals = [], [], {}
        for path, img in self.images:
            gen = MaskGenerator(self.predictor, policy, cache=self.cache if self.time_mode == "predicted" else None)
            recs = gen.generate(img)
            results.append(recs)
            times.append(self.cost.predict_ms(gen.stats) if self.time_mode == "predicted" else gen.stats["total_ms"])
            for k in ("prompts_requested", "decoder_calls_requested", "crops", "masks"):
                totals[k] = totals.get(k, 0) + gen.stats[k]
        n = len(self.images)
        stats = {k: v / n for k, v in totals.items()}
        if self.gt is not None:
            metrics = mask_ar(self.gt, {self.ids[Path(p).name]: r for (p, _), r in zip(self.images, results)})
        else:
            metrics = agreement(self.reference, [[x["segmentation"] for x in r] for r in results])
        return Evaluation(quality=metrics["quality"], time_ms=float(np.median(times)), metrics=metrics, stats=stats)


def score_policy(predictor, policy: Policy, images: list, annotations: tuple[dict, dict] | None = None,
                 reference_policy: Policy | None = None, time_mode: str = "predicted",
                 cost: CostModel | None = None, progress: bool = False) -> Evaluation:
    """One policy's quality and time on ``images`` (e.g. held-out photos), with tuning's objective."""
    ev = PolicyEvaluator(predictor, images, annotations, reference_policy, time_mode, cost, progress=progress,
                         what="the evaluation images")
    return ev.evaluate(policy)


def tune_everything(predictor, images: list, device: str, budget_ms: float, trials: int, model_tag: str,
                    storage: str | None = None, annotations: tuple[dict, dict] | None = None,
                    out: str | Path | None = None, sampler: str = "nsga2", seed: int = 0,
                    time_mode: str = "predicted", max_points_per_side: int = 32, max_crop_layers: int = 1,
                    reference_policy: Policy | None = None, log=print, progress: bool = False,
                    eval_images: list | None = None, eval_annotations: tuple[dict, dict] | None = None,
                    model_meta: dict | None = None) -> dict:
    """Run (or resume) the ``<model>@<device>@<budget>ms@everything`` study to ``trials`` finished trials.

    The first trials are the dense grid and a hierarchical policy at the model's default thresholds
    (:func:`~.calibrate.model_defaults`), so the front always holds the baseline; without
    annotations the reference is that dense grid (or ``reference_policy``). Writes the best policy
    within the budget (highest quality; the fastest trial when none fits) to ``out`` and returns a
    summary dict. With ``eval_images`` the chosen policy is also scored there (``best["held_out"]``):
    agreement with the same reference policy, or AR@K with ``eval_annotations``. ``model_meta``
    (e.g. ``{"model_digest": ...}``) is stored in the policy's meta so that it is not used with
    another model. Optuna's per-trial INFO lines are silenced; ``progress`` shows a bar instead.
    """
    from tqdm.auto import tqdm

    from nas.study import make_sampler, open_storage, study_name

    from .calibrate import model_defaults

    defaults, source = model_defaults(model_tag)
    if reference_policy is None:
        reference_policy = Policy(points_per_side=32, **defaults)
    else:  # the baseline trials use the reference's thresholds
        defaults = {k: getattr(reference_policy, k) for k in defaults}
        source = "the reference policy"
    name = study_name(model_tag, device, budget_ms, suffix="everything")
    evaluator = PolicyEvaluator(predictor, images, annotations, reference_policy, time_mode, progress=progress)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=open_storage(storage), load_if_exists=True,
                                directions=["maximize", "minimize"],
                                sampler=make_sampler(sampler, seed))
    if not study.trials:
        common = {"points_per_side": min(32, max_points_per_side), "box_nms_thresh": 0.7, "crop_n_layers": 0,
                  **defaults}
        for params in ({"kind": "grid", **common},
                       {"kind": "hierarchical", **common, "sparse_points_per_side": min(8, max_points_per_side),
                        "confidence_thresh": 0.5})[:max(1, trials)]:
            study.enqueue_trial(params, skip_if_exists=True)

    done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    bar = tqdm(total=max(0, trials - done), desc="tuning", unit="trial", disable=not progress)

    def objective(trial: optuna.Trial):
        policy = suggest_policy(trial, max_points_per_side, max_crop_layers)
        ev = evaluator.evaluate(policy)
        trial.set_user_attr("config", json.dumps(policy.to_dict(), sort_keys=True))
        trial.set_user_attr("quality", ev.quality)
        trial.set_user_attr("predicted_ms", ev.time_ms)
        trial.set_user_attr("metrics", ev.metrics)
        trial.set_user_attr("stats", ev.stats)
        trial.set_user_attr("evaluator", "mask_ar" if evaluator.gt is not None else "agreement")
        trial.set_constraint("time_over_budget_ms", ev.time_ms - budget_ms)  # feasible when <= 0
        line = (f"trial {trial.number}: {policy.kind} pps={policy.points_per_side} quality={ev.quality:.4f} "
                f"time={ev.time_ms:.1f} ms prompts/img={ev.stats['prompts_requested']:.0f}")
        if progress:
            bar.set_postfix_str(f"last {ev.quality:.3f} @ {ev.time_ms:.0f} ms")
            bar.update()
        else:
            log(line)
        return ev.quality, ev.time_ms

    if trials - done > 0:
        study.optimize(objective, n_trials=trials - done, catch=())
    bar.close()
    best = best_trial(study, budget_ms)
    policy = policy_from_dict(json.loads(best.user_attrs["config"]))
    meta = {"study": name, "trial": best.number, "model": model_tag, **(model_meta or {}), "device": device,
            "budget_ms": budget_ms, "quality": best.values[0], "time_ms": best.values[1], "time_mode": time_mode,
            "evaluator": best.user_attrs.get("evaluator"), "metrics": best.user_attrs.get("metrics"),
            "images": len(evaluator.images), "within_budget": best.values[1] <= budget_ms,
            "model_defaults": {**defaults, "source": source}}
    if evaluator.reference_policy is not None:
        meta["reference_policy"] = evaluator.reference_policy.to_dict()
    if eval_images:
        held = score_policy(predictor, policy, eval_images, eval_annotations, reference_policy, time_mode,
                            cost=evaluator.cost, progress=progress)
        meta["held_out"] = {"images": len(eval_images), "evaluator": "mask_ar" if eval_annotations else "agreement",
                            "quality": held.quality, "time_ms": held.time_ms, "metrics": held.metrics}
    if out is not None:
        save_policy(policy, out, meta)
    return {"study": name, "best": meta, "policy": policy, "trials": len(study.trials), "out": str(out) if out else None,
            "cost_model": evaluator.cost.__dict__ if evaluator.cost else None}


def best_trial(study: optuna.Study, budget_ms: float) -> optuna.trial.FrozenTrial:
    """Highest quality within the budget (faster wins ties); the fastest trial when none fits."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise UserError(f"study {study.study_name}: no completed trials")
    fits = [t for t in done if t.values[1] <= budget_ms]
    if fits:
        return max(fits, key=lambda t: (t.values[0], -t.values[1]))
    return min(done, key=lambda t: t.values[1])
