"""Real-photo training data (CocoScenes, MixedScenes), batched prompt sampling, and train-reference on photos."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas.commands import train_reference
from infra.errors import UserError
from scenes.sources import Augment, CocoScenes, MixedScenes, SyntheticScenes
from scenes.synthetic import write_coco_dataset
from nas.training.train import box_prompts, corrective_points, point_prompts, tight_boxes
from cli_parse import parse_with


@pytest.fixture(scope="module")
def coco_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    ann = write_coco_dataset(root, 4, size=96, seed=3, split="train")
    return root / "train", ann


def test_coco_scenes_are_deterministic_and_sized(coco_fixture):
    folder, ann = coco_fixture
    source = CocoScenes([(folder, ann)], seed=1, size=64)
    assert len(source) == 4
    a, b = source.scenes(5, 0, 3), source.scenes(5, 0, 3)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and len(x.masks) == len(y.masks)
    assert all(max(s.image.shape[:2]) == 64 and s.masks for s in a)
    assert all(m.shape == s.image.shape[:2] and m.dtype == bool for s in a for m in s.masks)
    assert not np.array_equal(a[0].image, source.scenes(6, 0, 3)[0].image)


def test_augmented_masks_stay_on_their_objects(tmp_path):
    """A red square on black, flipped and cropped: the mask must still cover red pixels only."""
    from PIL import Image

    image = np.zeros((80, 120, 3), np.uint8)
    image[20:50, 70:100] = (255, 0, 0)
    (tmp_path / "img").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "a.png")
    from pycocotools import mask as mask_utils

    mask = np.zeros((80, 120), np.uint8)
    mask[20:50, 70:100] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 80, "width": 120}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle,
                            "bbox": [70, 20, 30, 30], "area": 900}], "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    source = CocoScenes([(tmp_path / "img", tmp_path / "a.json")], seed=0, size=60,
                        augment=Augment(crop_prob=1.0, crop_scale=(0.6, 1.0), flip_prob=0.5, jitter=0.0))
    flips = set()
    for step in range(12):
        for scene in source.scenes(step, 0, 2):
            m = scene.masks[0]
            red = scene.image[..., 0].astype(int) - scene.image[..., 1]
            assert red[m].mean() > 200 and (red[~m] > 200).mean() < 0.05
            flips.add(bool(m[:, : m.shape[1] // 2].any()))
    assert flips == {True, False}  # the object was seen on both sides


def test_mixed_scenes_draw_from_every_source(coco_fixture):
    folder, ann = coco_fixture
    photos = CocoScenes([(folder, ann)], seed=1, size=64)
    mixed = MixedScenes([photos, SyntheticScenes(seed=0, size=64)], [0.5, 0.5], seed=2)
    sizes = [s.image.shape for step in range(6) for s in mixed.scenes(step, 0, 4)]
    assert len(sizes) == 24
    with pytest.raises(ValueError, match="one non-negative weight per source"):
        MixedScenes([photos], [0.5, 0.5])


def test_missing_annotations_is_a_user_error(tmp_path, coco_fixture):
    folder, _ = coco_fixture
    with pytest.raises(UserError, match="annotations file not found"):
        CocoScenes([(folder, tmp_path / "none.json")])


def test_batched_prompts_fall_inside_their_masks():
    masks = torch.zeros(3, 32, 32)
    masks[0, 2:6, 3:9] = 1
    masks[1, 20:30, 10:12] = 1
    masks[2, 0:32, 31] = 1
    gen = torch.Generator().manual_seed(0)
    coords, labels = point_prompts(masks, gen)
    assert coords.shape == (3, 1, 2) and labels.eq(1).all()
    for k in range(3):
        x, y = coords[k, 0].long()
        assert masks[k, y, x] == 1
    boxes = box_prompts(masks, gen)
    tight = torch.tensor([[3, 2, 8, 5], [10, 20, 11, 29], [31, 0, 31, 31]], dtype=torch.float)
    assert (boxes - tight).abs().max() <= 32 * 20 / 1024 + 1e-6 and boxes.min() >= 0 and boxes.max() <= 31
    # a perfect prediction has no error: the corrective point falls on the target, labelled positive
    logits = masks * 20 - 10
    logits[0] = -10  # mask 0 missed entirely: the point is a missed pixel, positive
    logits[1, 0, 0] = 10  # one false pixel besides a perfect mask: a negative point there
    c, l = corrective_points(logits, masks, gen)
    assert masks[0, int(c[0, 0, 1]), int(c[0, 0, 0])] == 1 and l[0, 0] == 1
    assert c[1, 0].tolist() == [0.0, 0.0] and l[1, 0] == 0
    assert masks[2, int(c[2, 0, 1]), int(c[2, 0, 0])] == 1 and l[2, 0] == 1


@pytest.mark.parametrize("res, cap", [(256, 5.0), (1024, 20.0)])
def test_box_jitter_is_capped_at_sams_20_px_per_1024(res, cap):
    """SAM's box noise (10% of the side, at most 20 px at 1024 px) scales with the input frame:
    a 256 px reference must not learn 4x looser boxes than SAM did."""
    masks = torch.zeros(64, res, res)
    masks[:, res // 8: res - res // 8, res // 8: res - res // 8] = 1  # side 3/4 of the frame: 10% >> cap
    boxes = box_prompts(masks, torch.Generator().manual_seed(0))
    shift = (boxes - tight_boxes(masks)).abs()
    assert shift.max() <= cap + 1e-4
    assert shift.max() >= 0.9 * cap  # the cap is reached, so it is the cap that bounds the noise


def _parse(argv):
    return parse_with(train_reference, ["train-reference", *argv])


@pytest.mark.slow
def test_train_reference_on_photos_writes_weights_and_card(tmp_path, coco_fixture):
    folder, ann = coco_fixture
    out = tmp_path / "ref" / "sam_micro.pt"
    args = _parse(["--coco", folder, "--annotations", ann, "--eval-coco", folder, "--eval-annotations", ann,
                   "--steps", 2, "--batch-images", 2, "--prompts-per-image", 2, "--eval-images", 2, "--out", out])
    assert args.func(args) == 0
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["steps"] == 2 and "4 photos with masks" in card["training"]["data"]
    assert f"--coco {folder} --annotations {ann}" in card["training"]["command"]
    assert [e["num_items"] > 0 for e in card["evaluation"]] == [True, True]
    assert "box_miou" in card["evaluation"][0]
    # scored again, unchanged weights: the same numbers
    again = _parse(["--evaluate-only", "--eval-coco", folder, "--eval-annotations", ann, "--eval-images", 2,
                    "--selection", "the only run", "--out", out])
    assert again.func(again) == 0
    card2 = json.loads(out.with_suffix(".card.json").read_text())
    assert card2["evaluation"][0]["box_miou"] == pytest.approx(card["evaluation"][0]["box_miou"])
    assert card2["training"] == card["training"] and card2["selection"] == "the only run"
    # a second stage from those weights records the first stage's training in its card
    stage2 = tmp_path / "ref2" / "sam_micro.pt"
    args = _parse(["--coco", folder, "--annotations", ann, "--init", out, "--steps", 1, "--batch-images", 2,
                   "--prompts-per-image", 2, "--eval-images", 2, "--out", stage2])
    assert args.func(args) == 0
    card3 = json.loads(stage2.with_suffix(".card.json").read_text())
    assert card3["training"]["init"] == {"weights": out.name,
                                         "training": {**card["training"], "selection": "the only run"}}
    assert f"--init {out}" in card3["training"]["command"] and "--loss-points 4096" in card3["training"]["command"]
    assert "--focal-alpha 0.25" in card3["training"]["command"] and "alpha 0.25" in card3["training"]["recipe"]
    text = stage2.with_suffix(".card.md").read_text()
    assert "in stages" in text and "> stage 1 of 2: the only run" in text
    assert "- before that: 2 steps x 2 images in" in text


def test_train_reference_unpaired_annotations_is_an_error(tmp_path, coco_fixture):
    folder, ann = coco_fixture
    args = _parse(["--coco", folder, "--coco", folder, "--annotations", ann, "--out", tmp_path / "x.pt"])
    with pytest.raises(UserError, match="pair up in order: got 2 folders and 1 annotation files"):
        args.func(args)


def test_stage_commands_spell_out_the_defaults_of_their_time():
    """A stage run before --loss-points and --focal-alpha existed computed its losses at every pixel
    with alpha 0.25; its reproducing command must say so, whatever today's defaults are."""
    from nas.commands.train_reference import _stage_command

    old = _stage_command({"command": "samnas train-reference --steps 5"})
    assert old == "samnas train-reference --steps 5 --loss-points 0 --focal-alpha 0.25"
    new = "samnas train-reference --steps 5 --loss-points 4096 --focal-alpha 0.5"
    assert _stage_command({"command": new}) == new


@pytest.mark.parametrize("bad", ["0", "1", "-0.2", "x"])
def test_focal_alpha_outside_zero_one_is_a_one_line_error(bad, capsys):
    with pytest.raises(SystemExit):
        _parse(["--focal-alpha", bad])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--focal-alpha" in err and bad in err
