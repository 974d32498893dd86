"""Quality evaluators (nas.quality): fidelity to the full model and COCO ground-truth mIoU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from nas.quality import CocoEvaluator, FidelityEvaluator, make_evaluator
from nas.quality.base import mask_iou
from nas.quality.coco import farthest_point, gt_box, load_coco
from nas.quality.fidelity import embedding_distances
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam, build_sam2_supernet
from supernet.elastic.activation import active_config
from infra.errors import UserError
from supernet.modeling.predictor import SamPredictor

# pycocotools 2.0.11 warns about numpy 2's copy= protocol on every decode; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def model():
    return build_sam("micro", seed=0)


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load("sam_micro")


def _scene(seed: int, height: int = 72, width: int = 96):
    """A noisy image with a rectangle and an ellipse -> image (H, W, 3) uint8, [rect mask, ellipse mask]."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    rect = (yy >= 10) & (yy < 31) & (xx >= 8) & (xx < 49)
    ellipse = ((yy - 50) / 15.0) ** 2 + ((xx - 70) / 20.0) ** 2 <= 1
    image[rect] = (220, 40, 40)
    image[ellipse] = (40, 200, 90)
    return image, [rect, ellipse]


# ------------------------------------------------------------------------- helpers

def test_mask_iou_values():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b[0, :1] = True  # 4 pixels inside a
    assert mask_iou(a, b).tolist() == [0.5, 1.0]  # second pair: both empty agree


def test_embedding_distances_resize_lower_grid():
    small = torch.ones(1, 8, 4, 4)
    full = torch.ones(1, 8, 8, 8)
    assert embedding_distances(small, full) == pytest.approx((1.0, 0.0))
    cosine, mse = embedding_distances(-small, full)
    assert cosine == pytest.approx(-1.0) and mse == pytest.approx(4.0)


def _brute_force_depth(mask: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the nearest pixel outside the mask (the image border is outside)."""
    h, w = mask.shape
    outside = np.argwhere(~np.pad(mask, 1)) - 1
    pix = np.argwhere(np.ones_like(mask))
    d = np.sqrt(((pix[:, None, :] - outside[None, :, :]) ** 2).sum(-1)).min(1)
    return np.where(mask, d.reshape(h, w), 0.0)


def test_farthest_point_rectangle_centre_and_border():
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:26, 10:51] = True  # 21 x 41: a single centre pixel
    assert farthest_point(mask).tolist() == [30.0, 15.0]
    full = np.ones((9, 13), dtype=bool)  # the image border counts as boundary
    assert farthest_point(full).tolist() == [6.0, 4.0]
    with pytest.raises(ValueError):
        farthest_point(np.zeros((5, 5), dtype=bool))


def test_farthest_point_is_deepest_on_irregular_mask():
    mask = np.zeros((30, 40), dtype=bool)
    mask[2:28, 3:12] = True  # an L shape with a hole
    mask[18:28, 3:38] = True
    mask[21:24, 20:23] = False
    x, y = farthest_point(mask).astype(int)
    depth = _brute_force_depth(mask)
    assert mask[y, x]
    assert depth[y, x] == pytest.approx(depth.max())


def test_gt_box_xywh_to_xyxy_with_mask_fallback():
    mask = np.zeros((20, 20), dtype=bool)
    mask[4:9, 6:16] = True
    assert gt_box({"bbox": [1.5, 2, 3, 4]}, mask).tolist() == [1.5, 2.0, 4.5, 6.0]
    assert gt_box({"bbox": [1, 2, 0, 4]}, mask).tolist() == [6.0, 4.0, 16.0, 9.0]
    assert gt_box({}, mask).tolist() == [6.0, 4.0, 16.0, 9.0]


# ------------------------------------------------------------------------ fidelity

def test_fidelity_full_scores_one_and_subnet_lower(model, space):
    images = [_scene(0)[0], _scene(1, 64, 64)[0]]
    evaluator = FidelityEvaluator(model, images, prompts_per_image=4, seed=0)
    before = active_config(model)
    full = evaluator.evaluate(model, space.largest())
    assert full.score == 1.0 and full.num_items == 2 and full.skipped == []
    assert full.metrics["mask_iou"] == 1.0
    assert full.metrics["embedding_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert full.metrics["embedding_mse"] == 0.0
    small = evaluator.evaluate(model, space.smallest())  # resolution 128: a smaller embedding grid
    assert 0.0 <= small.score < 1.0
    assert small.metrics["embedding_cosine"] < 0.999 and small.metrics["embedding_mse"] > 0
    assert active_config(model) == before  # the previous subnet is active again


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_point_masks_equal_picking_after_upscaling_all(family, model, space):
    """point_masks upscales only the best output; the masks must be those of upscaling all three and picking."""
    from nas.quality.fidelity import point_masks, sample_points
    from supernet.elastic.activation import active_subnet
    from supernet.modeling.predictor import predictor_for

    net = model if family == "sam" else build_sam2_supernet("sam2_micro", seed=0)
    image = _scene(3, 72, 96)[0]
    points = sample_points(np.random.default_rng(0), 72, 96, 6)
    predictor = predictor_for(net)
    config = space.smallest() if family == "sam" else None
    scope = active_subnet(net, config) if config is not None else torch.inference_mode()
    with torch.inference_mode(), scope:
        predictor.set_image(image)
        got = point_masks(predictor, points)
        coords = predictor.transform.apply_coords(points, predictor.original_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float)[:, None, :]
        masks, iou, _ = predictor.predict_torch(coords_t, torch.ones(coords_t.shape[:2], dtype=torch.int))
    expected = masks[torch.arange(len(masks)), iou.argmax(dim=1)]
    assert got.shape == (6, 72, 96) and got.dtype == torch.bool
    assert torch.equal(got, expected)


def test_fidelity_skips_unreadable_files_by_name(model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    evaluator = FidelityEvaluator(model, [bad, _scene(2)[0]], prompts_per_image=2)
    result = evaluator.evaluate(model, None)
    assert result.num_items == 1
    assert [item for item, _ in result.skipped] == [str(bad)]
    assert "1 skipped" in result.summary("fidelity")
    with pytest.raises(UserError, match="no readable image"):
        FidelityEvaluator(model, [bad, tmp_path / "missing.jpg"])


# ---------------------------------------------------------------------------- coco

def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _write_tiny_coco(folder):
    """Three good images, one missing file, one corrupt file, one of the wrong size.

    Good instances: rectangles as polygons, ellipses as RLE (6 in all); plus one crowd
    annotation and one with an undecodable segmentation.
    """
    folder.mkdir()
    images, anns = [], []
    for i in range(3):
        image, (rect, ellipse) = _scene(10 + i)
        Image.fromarray(image).save(folder / f"good{i}.png")
        images.append({"id": i + 1, "file_name": f"good{i}.png", "height": 72, "width": 96})
        anns.append({"id": 100 + i, "image_id": i + 1, "iscrowd": 0, "category_id": 1, "bbox": [8, 10, 41, 21],
                     "segmentation": [[8, 10, 49, 10, 49, 31, 8, 31]]})
        anns.append({"id": 200 + i, "image_id": i + 1, "iscrowd": 0, "category_id": 2, "bbox": [50, 35, 41, 31],
                     "segmentation": _rle(ellipse)})
    anns.append({"id": 300, "image_id": 1, "iscrowd": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                 "segmentation": _rle(np.pad(np.ones((5, 5), bool), ((0, 67), (0, 91))))})
    anns.append({"id": 301, "image_id": 2, "iscrowd": 0, "category_id": 1, "bbox": [0, 0, 5, 5],
                 "segmentation": 42})
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    Image.fromarray(_scene(3, 40, 40)[0]).save(folder / "small.png")
    for j, name in enumerate(["missing.jpg", "corrupt.jpg", "small.png"]):
        images.append({"id": 10 + j, "file_name": name, "height": 72, "width": 96})
        anns.append({"id": 400 + j, "image_id": 10 + j, "iscrowd": 0, "category_id": 1, "bbox": [8, 10, 41, 21],
                     "segmentation": [[8, 10, 49, 10, 49, 31, 8, 31]]})
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}))
    return path


def _direct_miou(model, folder, annotations, prompt: str) -> float:
    """Best-scoring mIoU recomputed one prompt at a time through the public predictor API."""
    coco = load_coco(annotations)
    ious = []
    predictor = SamPredictor(model)
    for img_id in (1, 2, 3):
        info = coco.imgs[img_id]
        predictor.set_image(np.array(Image.open(folder / info["file_name"]).convert("RGB")))
        for ann in coco.imgToAnns[img_id]:
            if ann["iscrowd"] or ann["id"] == 301:
                continue
            gt = coco.annToMask(ann).astype(bool)
            if prompt == "box":
                x, y, w, h = ann["bbox"]
                masks, scores, _ = predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=False)
            else:
                masks, scores, _ = predictor.predict(point_coords=farthest_point(gt)[None], point_labels=np.array([1]))
            best = masks[int(np.argmax(scores))]
            ious.append((best & gt).sum() / (best | gt).sum())
    return float(np.mean(ious))


def test_coco_metrics_skips_and_crowd(model, space, tmp_path):
    folder = tmp_path / "coco"
    annotations = _write_tiny_coco(folder)
    evaluator = CocoEvaluator(model, folder, annotations)
    assert evaluator.num_crowd == 1
    skipped = dict(evaluator.skipped)
    assert set(skipped) == {"missing.jpg", "corrupt.jpg", "small.png", "annotation 301 (good1.png)"}
    assert "40x40" in skipped["small.png"]
    result = evaluator.evaluate(model, space.largest())
    assert result.num_items == 6 and len(result.skipped) == 4
    for kind in ("box", "point"):
        best, oracle = result.metrics[f"{kind}_miou"], result.metrics[f"{kind}_miou_oracle"]
        assert 0.0 <= best <= oracle <= 1.0
        assert best == pytest.approx(_direct_miou(model, folder, annotations, kind), abs=1e-6)
    assert result.score == pytest.approx((result.metrics["box_miou"] + result.metrics["point_miou"]) / 2)
    small = evaluator.evaluate(model, space.smallest())
    assert all(0.0 <= v <= 1.0 for v in small.metrics.values())
    limited = CocoEvaluator(model, [folder / "good2.png", folder / "missing.jpg"], annotations, max_images=1)
    assert [item.name for item in limited.items] == ["good2.png"]


@pytest.mark.parametrize("content", ["[1, 2, 3]", '{"images": []}', "{not json", '{"info": {}}'])
def test_coco_rejects_non_coco_json(model, tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(UserError, match="labels.json: not a COCO annotations file") as err:
        CocoEvaluator(model, tmp_path, path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="annotations file not found"):
        CocoEvaluator(model, tmp_path, tmp_path / "absent.json")


def test_make_evaluator_kinds(model, tmp_path):
    image = _scene(4)[0]
    evaluator = make_evaluator("fidelity", model, images=[image], prompts_per_image=1)
    assert evaluator.name == "fidelity" and isinstance(evaluator, FidelityEvaluator)
    with pytest.raises(UserError, match="unknown"):
        make_evaluator("everything", model, images=[image])
    with pytest.raises(UserError, match="annotations"):
        make_evaluator("coco", model, images=tmp_path)
    with pytest.raises(UserError, match="image folder"):
        make_evaluator("coco", model, images=[image], annotations=tmp_path / "a.json")


def test_coco_on_shared_tiny_coco(model, space, shared_data):
    root = shared_data / "tiny_coco"
    evaluator = make_evaluator("coco", model, images=root / "val2017",
                               annotations=root / "annotations" / "instances_val2017.json", max_images=2)
    assert len(evaluator.items) == 2 and evaluator.skipped == []
    result = evaluator.evaluate(model, space.sample(0))
    assert result.num_items == sum(len(item.masks) for item in evaluator.items) > 0
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert result.metrics["box_miou"] <= result.metrics["box_miou_oracle"]
    assert result.metrics["point_miou"] <= result.metrics["point_miou_oracle"]


def test_coco_on_generated_dataset(model, space, tmp_path):
    from scenes.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path, num_images=2, size=64, seed=1, split="val")
    evaluator = make_evaluator("coco", model, images=tmp_path / "val", annotations=annotations)
    expected = sum(not a["iscrowd"] for a in json.loads(annotations.read_text())["annotations"])
    result = evaluator.evaluate(model, space.sample(3))
    assert result.num_items == expected > 0 and result.skipped == []
    assert 0.0 <= result.score <= 1.0
