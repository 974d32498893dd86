"""scenes.synthetic: seeded scenes with exact visible masks, and their COCO export."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from scenes.synthetic import (
    CATEGORIES,
    MIN_VISIBLE_PIXELS,
    SHAPES,
    TEXTURES,
    draw_scene,
    iter_scenes,
    mask_box_xyxy,
    render_scene,
    shape_mask,
    texture,
    write_coco_dataset,
)


def _fingerprint(seed: int, count: int, size: tuple[int, int]) -> str:
    digest = hashlib.sha256()
    rng = np.random.default_rng(seed)
    for _ in range(count):
        image, masks, categories = render_scene(rng, size)
        digest.update(image.tobytes())
        digest.update(bytes(categories))
        for mask in masks:
            digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = draw_scene(np.random.default_rng(11)), draw_scene(np.random.default_rng(11))
    assert np.array_equal(a.image, b.image) and a.categories == b.categories and a.textures == b.textures
    assert len(a.masks) == len(b.masks) and all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))
    assert not np.array_equal(a.image, draw_scene(np.random.default_rng(12)).image)
    assert _fingerprint(3, 2, (64, 80)) == _fingerprint(3, 2, (64, 80))


def test_scenes_are_bit_identical_to_the_recorded_ones():
    # The packaged sam_micro and the benchmarks name their data by seed: a change to the
    # sequence of random draws (or to how they are painted) changes every dataset. Update
    # this digest only together with retraining the reference model.
    assert _fingerprint(2024, 4, (96, 128)) == "1d5e7843f1ef42ffea2791f4e46ed780b857bd6b74e312b4517d52676bb23bef"


def test_visible_masks_are_disjoint_nonempty_and_match_the_painting():
    rng = np.random.default_rng(0)
    shapes, textures, backgrounds, solid_checked = set(), set(), set(), 0
    for _ in range(20):
        scene = draw_scene(rng)
        assert scene.image.shape == (256, 256, 3) and scene.image.dtype == np.uint8
        assert len(scene.masks) == len(scene.categories) == len(scene.textures) >= 1
        coverage = np.zeros((256, 256), np.int64)
        for mask, kind in zip(scene.masks, scene.textures):
            assert mask.shape == (256, 256) and mask.dtype == bool and mask.sum() >= MIN_VISIBLE_PIXELS
            coverage += mask
            if kind == "solid":  # one colour plus sensor noise (sigma 4) over the whole visible mask
                assert scene.image[mask].astype(float).std(axis=0).max() < 6
                solid_checked += 1
        assert coverage.max() == 1  # occlusion resolved: no pixel belongs to two objects
        shapes |= {SHAPES[c - 1] for c in scene.categories}
        textures |= set(scene.textures)
        backgrounds.add(scene.background)
    assert len(shapes) >= 3 and len(textures) >= 3 and len(backgrounds) >= 2
    assert solid_checked >= 3


def test_heavily_occluded_objects_are_dropped():
    rng = np.random.default_rng(5)
    scenes = [draw_scene(rng, (64, 64), num_objects=(12, 12)) for _ in range(10)]
    assert sum(s.dropped for s in scenes) > 0
    for s in scenes:
        assert len(s.masks) + s.dropped <= 12
        assert all(m.sum() >= MIN_VISIBLE_PIXELS for m in s.masks)


def test_boxes_are_tight_around_the_masks():
    count = 0
    for image, masks, boxes in iter_scenes(seed=4, n=4, size=128):
        assert image.shape == (128, 128, 3) and boxes.shape == (len(masks), 4)
        for mask, box in zip(masks, boxes):
            x0, y0, x1, y1 = (int(v) for v in box)
            assert mask[y0:y1 + 1, x0:x1 + 1].sum() == mask.sum()  # everything inside
            assert mask[y0, x0:x1 + 1].any() and mask[y1, x0:x1 + 1].any()  # touching each side
            assert mask[y0:y1 + 1, x0].any() and mask[y0:y1 + 1, x1].any()
            assert list(box) == mask_box_xyxy(mask)
            count += 1
    assert count >= 8


@pytest.mark.parametrize("kind", TEXTURES)
def test_a_texture_window_equals_the_crop_of_the_full_texture(kind):
    window = (slice(7, 40), slice(21, 90))
    full = texture(np.random.default_rng(1), kind, 50, 90)
    crop = texture(np.random.default_rng(1), kind, 50, 90, window)
    assert full.shape == (50, 90, 3) and np.array_equal(full[window], crop)
    assert 0 <= full.min() and full.max() <= 255


def test_every_shape_family_draws_and_unknown_names_fail():
    rng = np.random.default_rng(2)
    for shape in SHAPES:
        mask = shape_mask(rng, shape, 80, 100)
        assert mask.shape == (80, 100) and mask.sum() > 20
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        shape_mask(rng, "hexagon", 8, 8)
    with pytest.raises(ValueError, match="unknown texture 'plaid'"):
        texture(rng, "plaid", 8, 8)


def test_coco_export_round_trips_through_pycocotools(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    path = write_coco_dataset(tmp_path / "data", num_images=4, size=80, seed=9, split="val")
    assert path == tmp_path / "data" / "annotations" / "instances_val.json"
    assert not list((tmp_path / "data").rglob("*.tmp"))  # atomic writes leave no temporaries
    doc = json.loads(path.read_text())
    assert doc["categories"] == CATEGORIES and len(CATEGORIES) == len(SHAPES)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4]

    rng = np.random.default_rng(9)
    for image_id in (1, 2, 3, 4):
        image, masks, categories = render_scene(rng, (80, 80))
        info = coco.loadImgs(image_id)[0]
        assert (info["height"], info["width"]) == (80, 80)
        assert np.array_equal(np.array(Image.open(tmp_path / "data" / "val" / info["file_name"])), image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(masks) >= 1
        for ann, mask, category in zip(anns, masks, categories):
            assert isinstance(ann["segmentation"]["counts"], str)
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["category_id"] == category and ann["iscrowd"] == 0
            assert ann["area"] == int(mask.sum()) == int(mask_utils.area(coco.annToRLE(ann)))
            assert ann["bbox"] == list(mask_utils.toBbox(coco.annToRLE(ann)))


def test_empty_export_is_still_a_valid_coco_file(tmp_path):
    from pycocotools.coco import COCO

    path = write_coco_dataset(tmp_path, num_images=0, split="test")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    assert coco.getImgIds() == [] and (tmp_path / "test").is_dir()


def test_objects_are_computed_only_inside_their_windows(monkeypatch):
    """What keeps a 256x256 scene at a few milliseconds, counted rather than timed (a loaded CI machine
    cannot flake a count): per-pixel coordinate grids cover the whole frame once, for the background,
    and each object only within its window."""
    import scenes.synthetic as synthetic

    real_grid, areas = synthetic._grid, []

    def counting_grid(window):
        yy, xx = real_grid(window)
        areas.append(yy.size)
        return yy, xx

    monkeypatch.setattr(synthetic, "_grid", counting_grid)
    frame, rng, object_pixels = 256 * 256, np.random.default_rng(0), []
    for _ in range(10):
        areas.clear()
        draw_scene(rng)
        assert areas[0] == frame and len(areas) >= 2  # the background, then at least one object
        assert max(areas[1:]) < frame / 2
        object_pixels.append(sum(areas[1:]))
    # Measured: 1.0 frames of object grids per scene on average (2.5 at most over 200 scenes);
    # computing objects over the full frame would cost at least one frame per object (3-7 per scene).
    assert sum(object_pixels) / len(object_pixels) < 2 * frame
