"""Segment-everything generator: equivalence with the official SamAutomaticMaskGenerator, cache, counts.

Both generators run on the same official predictor through :class:`ReplayPredictor`, which replays
recorded outputs for repeated (image, prompts): the filtering code sees bit-identical logits, and the
replay count shows that our generator asked for exactly the prompts the official one did.
(The utilities themselves are checked in test_everything_utils.py.)
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nas.everything import masks as M
from nas.everything.generator import DecoderCache, MaskGenerator, TimedPredictor, image_key
from nas.everything.policies import Policy
from supernet.modeling.arch import get_arch
from supernet.elastic.build import build_sam
from supernet.checkpoint import load_sam
from infra.errors import ConfigError
from scenes.images import generated_images
from supernet.modeling.predictor import SamPredictor
from supernet.reference import reference_checkpoint

RELAXED = dict(pred_iou_thresh=0.3, stability_score_thresh=0.3)


@pytest.fixture(scope="module")
def models():
    """Our micro SAM (trained reference when packaged, else seeded random) and the official one, same weights."""
    from sam_oracle import official_sam

    ckpt = reference_checkpoint("micro")
    ours = (load_sam(ckpt) if ckpt else build_sam("micro", seed=0)).eval()
    official, sa = official_sam(get_arch("micro"))
    official.load_state_dict(ours.state_dict())
    return ours, official, sa


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(generated_images(1, size=200, seed=3)[0][:, :180])  # non-square on purpose


class ReplayPredictor:
    """Official-API predictor proxy that records outputs and replays them for a repeated (image, prompts)."""

    def __init__(self, predictor) -> None:
        self._p = predictor
        self._embeddings: dict = {}
        self._outputs: dict = {}
        self._image = None
        self.calls = self.replayed = 0

    def __getattr__(self, name):
        return getattr(self._p, name)

    def set_image(self, image: np.ndarray) -> None:
        self._image = image_key(image)
        p = self._p
        if self._image in self._embeddings:
            p.features, p.original_size, p.input_size = self._embeddings[self._image]
            p.is_image_set = True
        else:
            p.set_image(image)
            self._embeddings[self._image] = (p.features, p.original_size, p.input_size)

    def predict_torch(self, point_coords, point_labels, **kwargs):
        self.calls += 1
        key = (self._image, point_coords.numpy().tobytes(), tuple(point_coords.shape),
               point_labels.numpy().tobytes(), tuple(sorted(kwargs.items())))
        if key in self._outputs:
            self.replayed += 1
        else:
            self._outputs[key] = self._p.predict_torch(point_coords, point_labels, **kwargs)
        return tuple(t.clone() for t in self._outputs[key])


def official_generator(sa, official, replay: ReplayPredictor, params: dict):
    """The official SamAutomaticMaskGenerator with ``params``, prompting through ``replay``."""
    gen = sa.SamAutomaticMaskGenerator(official, **params)
    gen.predictor = replay
    return gen


def assert_same_records(expected: list[dict], got: list[dict]) -> None:
    """Masks and boxes identical, scores within 1e-5 (they are the same floats: shared decoder outputs)."""
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert set(a) == set(b)
        for k in a:
            if k == "segmentation" and isinstance(a[k], np.ndarray):
                assert a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
            elif k in ("predicted_iou", "stability_score"):
                # a mask empty at both stability thresholds scores 0/0 = NaN in both generators
                both_nan = math.isnan(a[k]) and math.isnan(b[k])
                assert both_nan or abs(a[k] - b[k]) <= 1e-5, k
            else:
                assert a[k] == b[k], k


@pytest.mark.parametrize("params,need_masks", [
    ({}, False),  # SAM's defaults (32x32 grid): a model this small may pass none at 0.88 / 0.95
    ({"points_per_side": 16, **RELAXED}, True),
    ({"points_per_side": 8, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "output_mode": "coco_rle",
      "points_per_batch": 24, **RELAXED}, True),
    pytest.param({"points_per_side": 8, "crop_n_layers": 1, "min_mask_region_area": 40, "pred_iou_thresh": 0.0,
                  "stability_score_thresh": 0.0, "points_per_batch": 100}, True, marks=pytest.mark.slow),
])
def test_grid_policy_matches_official_generator(models, image, params, need_masks, fake_cv2):  # noqa: F811
    _, official, sa = models
    replay = ReplayPredictor(sa.SamPredictor(official))
    expected = official_generator(sa, official, replay, params).generate(image)
    first_calls = replay.calls
    gen = MaskGenerator(replay, Policy(**params))
    got = gen.generate(image)
    assert replay.calls == 2 * first_calls and replay.replayed == first_calls, "same prompts, same batches"
    if need_masks:
        assert len(expected) > 0, "relaxed thresholds must give a non-empty set to compare"
        if params.get("crop_n_layers"):
            assert len({tuple(r["crop_box"]) for r in expected}) > 1, "crops must contribute masks"
    assert_same_records(expected, got)
    n_crops = 1 + 4 * params.get("crop_n_layers", 0)
    assert gen.last_stats["decoder_calls"] == first_calls and gen.last_stats["crops"] == n_crops
    assert gen.last_stats["encoder_calls"] == n_crops and gen.last_stats["masks"] == len(got)


def test_threshold_boundaries_match_official(models, image):
    """Thresholds equal to a candidate's own score: predicted IoU must be > its threshold, stability >=."""
    _, official, sa = models
    replay = ReplayPredictor(sa.SamPredictor(official))
    base = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    everything = official_generator(sa, official, replay, base).generate(image)
    assert len(everything) > 10
    stab = sorted(r["stability_score"] for r in everything)[len(everything) // 2]
    iou = sorted(r["predicted_iou"] for r in everything)[len(everything) // 3]
    params = {**base, "stability_score_thresh": stab, "pred_iou_thresh": iou}
    expected = official_generator(sa, official, replay, params).generate(image)
    assert any(r["stability_score"] == stab for r in expected), "the boundary stability score is kept"
    assert all(r["predicted_iou"] > iou for r in expected), "the boundary predicted IoU is dropped"
    assert_same_records(expected, MaskGenerator(replay, Policy(**params)).generate(image))


def test_uncompressed_rle_and_boxes_forms_match_official(models, image):
    _, official, sa = models
    params = {"points_per_side": 8, **RELAXED}
    replay = ReplayPredictor(sa.SamPredictor(official))
    expected = official_generator(sa, official, replay, {**params, "output_mode": "uncompressed_rle"}).generate(image)
    gen = MaskGenerator(replay, Policy(**params))
    data = gen.generate_data(image)
    assert len(expected) > 0
    assert_same_records(expected, gen.records(data, mode="uncompressed_rle"))
    boxes = gen.records(data, mode="boxes")
    assert all("segmentation" not in r for r in boxes)
    assert [(r["bbox"], r["predicted_iou"]) for r in boxes] == [(r["bbox"], r["predicted_iou"]) for r in expected]
    with pytest.raises(ConfigError, match="output_mode"):
        gen.records(data, mode="png")


def test_policy_defaults_are_sams_grid_generator():
    p = Policy()
    assert p.kind == "grid"
    assert (p.points_per_side, p.points_per_batch, p.pred_iou_thresh, p.stability_score_thresh) == (32, 64, 0.88, 0.95)
    assert (p.stability_score_offset, p.box_nms_thresh, p.crop_n_layers, p.crop_nms_thresh) == (1.0, 0.7, 0, 0.7)
    assert (p.crop_overlap_ratio, p.crop_n_points_downscale_factor, p.min_mask_region_area, p.output_mode) == \
        (512 / 1500, 1, 0, "binary_mask")
    with pytest.raises(ConfigError, match="pred_iou_thresh"):
        Policy(pred_iou_thresh=1.5)


def test_our_predictor_agrees_with_official_generator(models, image):
    """Same weights, our model code: same masks up to float noise in the network."""
    ours, official, sa = models
    params = {"points_per_side": 16, **RELAXED}
    expected = sa.SamAutomaticMaskGenerator(official, **params).generate(image)
    got = MaskGenerator(SamPredictor(ours), Policy(**params)).generate(image)
    assert len(expected) > 0 and abs(len(got) - len(expected)) <= 1
    exp_rle = M.encode_rles(np.stack([r["segmentation"] for r in expected]))
    got_rle = M.encode_rles(np.stack([r["segmentation"] for r in got]))
    assert np.median(M.rle_iou(exp_rle, got_rle).max(axis=1)) > 0.99
    np.testing.assert_allclose(sorted(r["predicted_iou"] for r in got)[-5:],
                               sorted(r["predicted_iou"] for r in expected)[-5:], atol=1e-3)


def test_cache_refilter_costs_no_decoder_call(models, image):
    _, official, sa = models
    cache = DecoderCache()
    predictor = TimedPredictor(sa.SamPredictor(official))
    first = MaskGenerator(predictor, Policy(points_per_side=8, crop_n_layers=1, **RELAXED), cache=cache)
    first.generate(image)
    assert first.stats["decoder_calls"] > 0 and predictor.calls == first.stats["decoder_calls"]
    points = 8 * 8 * 5  # a full-image grid and 4 crops, 8x8 each
    assert first.last_stats["prompts"] == first.last_stats["prompts_requested"] == points
    assert first.last_stats["decoder_calls"] == 5 * math.ceil(64 / Policy().points_per_batch)
    calls_before = predictor.calls
    new_params = dict(points_per_side=8, crop_n_layers=1, pred_iou_thresh=0.5, stability_score_thresh=0.6,
                      box_nms_thresh=0.5)
    second = MaskGenerator(predictor, Policy(**new_params), cache=cache)
    refiltered = second.generate(image)
    assert predictor.calls == calls_before
    assert second.stats["decoder_calls"] == 0 and second.stats["encoder_calls"] == 0
    assert second.stats["prompts_requested"] == first.stats["prompts_requested"]
    assert cache.hits >= second.stats["prompts_requested"]
    fresh = sa.SamAutomaticMaskGenerator(official, **new_params).generate(image)
    assert fresh and len(fresh) < 60
    assert_same_records(fresh, refiltered)
