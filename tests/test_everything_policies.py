"""Segment-everything policies: valid outputs, fewer prompts than the dense grid, policy validation."""
from __future__ import annotations

import numpy as np
import pytest

from nas.everything import masks as M
from nas.everything.generator import MaskGenerator
from nas.everything.policies import Policy, coarse_to_fine_order, policy_from_dict
from supernet.elastic.build import build_sam
from supernet.checkpoint import load_sam
from infra.errors import ConfigError
from supernet.modeling.predictor import SamPredictor
from supernet.reference import reference_checkpoint
from scenes.synthetic import iter_scenes

COMMON = dict(points_per_side=16, pred_iou_thresh=0.5, stability_score_thresh=0.6, output_mode="coco_rle")


@pytest.fixture(scope="module")
def predictor():
    ckpt = reference_checkpoint("micro")
    return SamPredictor((load_sam(ckpt) if ckpt else build_sam("micro", seed=0)).eval())


@pytest.fixture(scope="module")
def scene():
    image, _, _ = next(iter_scenes(10000, 1, size=160))
    return image


@pytest.fixture(scope="module")
def dense_grid(predictor, scene):
    """The dense 16x16 grid's records and counts on the scene (what every cheaper policy is held against)."""
    grid = MaskGenerator(predictor, Policy(**COMMON))
    return grid.generate(scene), dict(grid.stats)


def check_records(records: list[dict], image: np.ndarray, policy: Policy) -> None:
    masks = M.decode_rles([r["segmentation"] for r in records])
    assert masks.shape[1:] == image.shape[:2]
    for r, m in zip(records, masks):
        assert r["area"] == int(m.sum()) > 0
        x0, y0, w, h = r["bbox"]
        ys, xs = np.nonzero(m)
        assert [x0, y0, x0 + w, y0 + h] == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert r["predicted_iou"] > policy.pred_iou_thresh
        assert r["stability_score"] >= policy.stability_score_thresh
    ious = M.rle_iou([r["segmentation"] for r in records], [r["segmentation"] for r in records])
    assert len(records) < 2 or (ious - np.eye(len(records))).max() < 1.0  # NMS removed exact duplicates


@pytest.mark.parametrize("kind,extra", [
    ("hierarchical", {"sparse_points_per_side": 4, "confidence_thresh": 0.5}),
    ("adaptive", {"confidence_thresh": 0.5, "stop_coverage": 0.7, "min_prompts": 16}),
])
def test_policy_outputs_valid_and_cheaper_than_dense_grid(predictor, scene, dense_grid, kind, extra):
    grid_records, grid_stats = dense_grid
    gen = MaskGenerator(predictor, Policy(kind=kind, **COMMON, **extra))
    records = gen.generate(scene)
    assert records and grid_records
    check_records(records, scene, gen.policy)
    assert gen.stats["prompts"] < grid_stats["prompts"] == 256
    assert gen.stats["decoder_calls"] <= grid_stats["decoder_calls"]
    # most of the grid's masks are still found
    best = M.rle_iou([r["segmentation"] for r in grid_records], [r["segmentation"] for r in records]).max(axis=1)
    assert (best >= 0.5).mean() >= 0.5


def test_boxes_output_mode_and_binary(predictor, scene):
    boxes = MaskGenerator(predictor, Policy(**{**COMMON, "output_mode": "boxes"})).generate(scene)
    binary = MaskGenerator(predictor, Policy(**{**COMMON, "output_mode": "binary_mask"})).generate(scene)
    assert boxes and "segmentation" not in boxes[0]
    assert [b["bbox"] for b in boxes] == [b["bbox"] for b in binary]
    assert binary[0]["segmentation"].dtype == bool and binary[0]["segmentation"].shape == scene.shape[:2]


def test_coarse_to_fine_order_prefixes_are_sub_grids():
    for n in (1, 5, 8, 16):
        order = coarse_to_fine_order(n)
        assert sorted(order.tolist()) == list(range(n * n))
    order = coarse_to_fine_order(8)
    first4 = {(i // 8, i % 8) for i in order[:4].tolist()}
    assert first4 == {(0, 0), (0, 4), (4, 0), (4, 4)}


@pytest.mark.parametrize("field,value,needle", [
    ("kind", "random", "policy.kind"),
    ("pred_iou_thresh", 1.5, "policy.pred_iou_thresh"),
    ("points_per_side", 0, "policy.points_per_side"),
    ("points_per_batch", "64", "policy.points_per_batch"),
    ("output_mode", "png", "policy.output_mode"),
    ("colour", 1, "policy.colour"),
])
def test_policy_validation_names_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        policy_from_dict({field: value})


@pytest.mark.slow
def test_real_photo_runs_all_policies(predictor, shared_data):
    from scenes.images import list_images, load_image

    photo = load_image(list_images(shared_data / "images")[0])
    for kind in ("grid", "hierarchical", "adaptive"):
        # thresholds low enough that any model keeps masks: the checks must have something to check
        policy = Policy(kind=kind, points_per_side=8, sparse_points_per_side=4, pred_iou_thresh=0.05,
                        stability_score_thresh=0.05, confidence_thresh=0.05, output_mode="coco_rle", min_prompts=8)
        records = MaskGenerator(predictor, policy).generate(photo)
        assert records, f"{kind}: no mask at thresholds 0.05"
        check_records(records, photo, policy)
