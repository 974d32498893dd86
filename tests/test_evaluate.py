"""samnas evaluate: the box-fill baseline's exact IoU on a hand-made fixture, and the CLI's outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nas.commands import evaluate
from nas.everything.masks import encode_rles
from nas.quality.coco import CocoEvaluator, box_fill_mask
from supernet.elastic.build import build_sam
from cli_parse import run_with


def run_cli(argv: list[str]) -> int:
    return run_with(evaluate, argv)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """Two 40x48 images; three instances whose box-fill IoU is known: 76/100, 1 and 39/60."""
    root = tmp_path_factory.mktemp("evalfix")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    masks = {1: [], 2: []}
    l_shape = np.zeros((40, 48), bool)
    l_shape[5:15, 5:15] = True
    l_shape[5:11, 11:15] = False  # 100 - 24 = 76 px inside the 10x10 box
    masks[1].append((l_shape, [5, 5, 10, 10]))
    rect = np.zeros((40, 48), bool)
    rect[20:30, 30:40] = True
    masks[1].append((rect, [30, 20, 10, 10]))
    tri = np.zeros((40, 48), bool)
    tri[0:6, 0:10] = np.tri(6, 10, 3, dtype=bool)  # 39 px; column 9 empty, the given box is still 10 wide
    masks[2].append((tri, [0, 0, 10, 6]))
    images, anns = [], []
    for image_id, items in masks.items():
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 40, "width": 48})
        for mask, bbox in items:
            rle = encode_rles(mask[None])[0]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "bbox": bbox, "area": int(mask.sum()), "segmentation": rle})
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    expected = np.mean([m.sum() / (b[2] * b[3]) for items in masks.values() for m, b in items])
    return root / "images", ann, float(expected)


def test_box_fill_mask_covers_the_integer_box():
    m = box_fill_mask(np.array([2.0, 1.0, 5.0, 3.0]), 4, 6)
    assert m.sum() == 6 and m[1:3, 2:5].all()


def test_box_fill_baseline_is_exact(fixture):
    images, ann, expected = fixture
    ev = CocoEvaluator(build_sam("micro", seed=0).eval(), images, ann)
    assert [round(float(v), 6) for item in ev.items for v in item.box_fill] == \
        [0.76, 1.0, 0.65]
    res = ev.evaluate(build_sam("micro", seed=0).eval())
    assert res.metrics["box_fill_miou"] == pytest.approx(expected, abs=1e-6) and res.num_items == 3


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_evaluate_cli_formats(fixture, capsys, fmt, tmp_path):
    images, ann, expected = fixture
    policy = tmp_path / "p.yaml"
    policy.write_text("format: samnas-everything-policy/1\npolicy: {points_per_side: 4, pred_iou_thresh: 0.0, "
                      "stability_score_thresh: 0.0}\n")
    assert run_cli(["evaluate", "--images", str(images), "--annotations", str(ann), "--format", fmt,
                    "--everything", str(policy), "--no-progress"]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        row = json.loads(out)
        assert row["images"] == 2 and row["instances"] == 3 and row["everything_images"] == 2
        assert row["box_fill_miou"] == pytest.approx(expected, abs=1e-6)
        assert 0.0 <= row["box_miou"] <= row["box_miou_oracle"] <= 1.0 and 0.0 <= row["point_miou"] <= 1.0
        assert {"AR@10", "AR@100", "AR@1000", "masks_per_image", "ms_per_image", "model"} <= set(row)
    elif fmt == "csv":
        header, values = out.strip().splitlines()
        assert header.split(",")[:3] == ["model", "images", "instances"] and values.split(",")[1:3] == ["2", "3"]
    else:
        assert "box_fill_miou" in out and "AR@100" in out


def test_evaluate_bad_annotations_is_one_line_error(tmp_path, capsys):
    from infra.errors import UserError

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError) as err:
        run_cli(["evaluate", "--images", str(tmp_path), "--annotations", str(bad)])
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_size_range_means_bins_by_coco_area():
    from nas.quality.coco import size_range_means

    areas = np.array([10, 1023, 1024, 9215, 9216, 50_000])
    values = np.array([0.1, 0.3, 0.5, 0.7, 0.2, 0.4])
    out = size_range_means(values, areas)
    assert out["small"] == (2, pytest.approx(0.2)) and out["medium"] == (2, pytest.approx(0.6))
    assert out["large"] == (2, pytest.approx(0.3))
    assert size_range_means(values[:2], areas[:2])["large"] == (0, None)


def test_by_size_matches_the_overall_numbers(fixture):
    """All three fixture instances are small (39-100 px): the small range equals the overall mean."""
    images, ann, expected = fixture
    model = build_sam("micro", seed=0).eval()
    ev = CocoEvaluator(model, images, ann)
    with pytest.raises(RuntimeError):
        ev.by_size()
    res = ev.evaluate(model)
    sizes = ev.by_size()
    assert sizes["instances_small"] == 3 and sizes["instances_medium"] == sizes["instances_large"] == 0
    assert sizes["box_fill_miou_small"] == pytest.approx(expected, abs=1e-6)
    assert sizes["box_miou_small"] == pytest.approx(res.metrics["box_miou"], abs=1e-6)
    assert sizes["point_miou_small"] == pytest.approx(res.metrics["point_miou"], abs=1e-6)
    assert sizes["box_miou_large"] is None and sizes["box_fill_miou_medium"] is None


def test_reference_card_shows_fit_and_sizes_apart_from_held_out():
    from nas.commands.train_reference import render_reference_card

    sizes = {"instances_small": 2, "instances_medium": 0, "instances_large": 1, "box_miou_small": 0.25,
             "box_miou_medium": None, "box_miou_large": 0.5, "point_miou_small": 0.125, "point_miou_medium": None,
             "point_miou_large": 0.375, "box_fill_miou_small": 0.5, "box_fill_miou_medium": None,
             "box_fill_miou_large": 0.75, "mask_ceiling_miou_small": 0.625, "mask_ceiling_miou_medium": None,
             "mask_ceiling_miou_large": 0.9375}
    row = {"score": 0.5, "box_miou": 0.5, "point_miou": 0.5, "num_items": 3}
    card = {"params": 1e6, "weights": "w.pt", "size_bytes": 1e6,
            "training": {"data": "d", "steps": 1, "batch_images": 1, "seconds": 60, "recipe": "r", "command": "c",
                         "machine": {"cpu": "x", "torch": "t"}},
            "evaluation": [{**row, "data": "val photos (held out)", "by_size": sizes}],
            "fit": [{**row, "box_miou": 0.875, "data": "train photos (trained on)", "by_size": sizes}]}
    text = render_reference_card(card)
    held, fit = text.split("## Fit on the training photos")
    assert "val photos (held out) | 3 | 0.5000 | 0.5000 | 0.5000 |" in held and "train photos" not in held
    assert "| train photos (trained on) | 3 | 0.5000 | 0.8750 | 0.5000 |" in fit
    assert "| val photos (held out) | medium | 0 | - | - | - | - |" in text
    assert "| train photos (trained on) | large | 1 | 0.5000 | 0.7500 | 0.9375 | 0.3750 |" in text


def test_mask_ceiling_keeps_what_the_low_res_grid_can_hold():
    """At 256 px input SAM's mask grid has 4 px cells: a cell-aligned mask survives the round trip
    at any image shape, but for its 4 corner pixels, which bilinear upscaling rounds off. A 4x4 px
    object in a 1024 px photo is a sixteenth of a cell and is lost; at 1024 px input its cell is
    the object itself."""
    from nas.quality.coco import mask_ceiling

    def corners(mask):
        rows, cols = mask[0].nonzero().unbind(1)
        return {(int(r), int(c)) for r in (rows.min(), rows.max()) for c in (cols.min(), cols.max())}

    for shape, box in (((256, 256), (32, 96, 64, 128)), ((128, 256), (100, 128, 200, 240))):
        mask = torch.zeros(1, *shape, dtype=torch.bool)
        mask[0, box[0]:box[1], box[2]:box[3]] = True  # the second is padded below to the square input
        lost = (mask_ceiling(mask, 256) ^ mask)[0].nonzero()
        assert {tuple(p) for p in lost.tolist()} == corners(mask)
    tiny = torch.zeros(1, 1024, 1024, dtype=torch.bool)
    tiny[0, 512:516, 256:260] = True
    assert not mask_ceiling(tiny, 256).any()
    kept = mask_ceiling(tiny, 1024)
    assert kept.sum() == 12 and not (kept & ~tiny).any()


def test_mask_ceiling_is_reported_per_resolution(fixture):
    images, ann, _ = fixture
    model = build_sam("micro", seed=0).eval()
    ev = CocoEvaluator(model, images, ann)
    at_256 = ev.evaluate(model).metrics["mask_ceiling_miou"]
    assert at_256 == pytest.approx(float(ev.ceiling_ious(256).mean())) and 0.5 < at_256 <= 1.0
    assert ev.by_size()["mask_ceiling_miou_small"] == pytest.approx(at_256)  # every fixture instance is small
    model.set_resolution(32)  # 40x48 photos into a 32 px frame: 2 px cells lose detail
    assert ev.evaluate(model).metrics["mask_ceiling_miou"] < at_256
