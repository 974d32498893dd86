"""Image reading and the synthetic scene generator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from infra.errors import UserError
from scenes.images import ImageReader, generated_images, list_images, load_image
from scenes.synthetic import SHAPES, TEXTURES, iter_scenes, mask_box_xyxy, render_scene, write_coco_dataset


def test_list_images_errors(tmp_path):
    with pytest.raises(UserError, match="image folder does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UserError, match=r"no images found \(looked for .jpg"):
        list_images(tmp_path)
    with pytest.raises(UserError, match="expected a folder of images, got a file"):
        list_images(tmp_path / "a.txt")


def test_load_image_modes_and_skipping(tmp_path):
    Image.fromarray(np.full((5, 7), 100, np.uint8), "L").save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((5, 7, 4), np.uint8), "RGBA").save(tmp_path / "rgba.PNG")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["broken.jpg", "gray.png", "rgba.PNG"]
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (5, 7, 3) and gray.dtype == np.uint8 and (gray == 100).all()
    reader = ImageReader()
    read = list(reader.read(paths))
    assert [p.name for p, _ in read] == ["gray.png", "rgba.PNG"]
    assert len(reader.skipped) == 1 and "broken.jpg" in reader.skipped[0][0]
    with pytest.raises(UserError, match="broken.jpg: unreadable image"):
        load_image(tmp_path / "broken.jpg")


def test_real_photos(shared_data):
    images = [load_image(p) for p in list_images(shared_data / "images")]
    assert len(images) == 3 and all(i.ndim == 3 and i.shape[2] == 3 for i in images)


def test_scenes_are_deterministic_disjoint_and_varied():
    a = [render_scene(np.random.default_rng(3)) for _ in range(2)]
    assert np.array_equal(a[0][0], a[1][0]) and all(np.array_equal(x, y) for x, y in zip(a[0][1], a[1][1]))
    rng = np.random.default_rng(0)
    shapes_seen = set()
    for _ in range(20):
        image, masks, cats = render_scene(rng)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8 and len(masks) == len(cats) >= 1
        total = np.zeros((256, 256), int)
        for m in masks:
            assert m.sum() >= 40
            total += m
        assert total.max() == 1  # visible masks never overlap
        shapes_seen |= {SHAPES[c - 1] for c in cats}
    assert len(shapes_seen) >= 4 and len(TEXTURES) == 5


def test_boxes_match_masks():
    for _, masks, boxes in iter_scenes(seed=1, n=3):
        for m, b in zip(masks, boxes):
            ys, xs = np.nonzero(m)
            assert list(b) == [xs.min(), ys.min(), xs.max(), ys.max()] == mask_box_xyxy(m)


def test_coco_export_round_trips_through_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    ann = write_coco_dataset(tmp_path, num_images=3, size=96, seed=5, split="val")
    coco = COCO(str(ann))
    rng = np.random.default_rng(5)
    for img_id in sorted(coco.getImgIds()):
        image, masks, cats = render_scene(rng, (96, 96))
        info = coco.loadImgs(img_id)[0]
        assert np.array_equal(np.array(Image.open(tmp_path / "val" / info["file_name"])), image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert [a["category_id"] for a in anns] == cats
        for a, m in zip(anns, masks):
            assert np.array_equal(coco.annToMask(a).astype(bool), m)
            assert a["area"] == m.sum()
    assert json.loads(ann.read_text())["categories"][0]["name"] == "ellipse"


def test_generated_images():
    imgs = generated_images(2, size=64, seed=1)
    assert len(imgs) == 2 and imgs[0].shape == (64, 64, 3)
    assert np.array_equal(imgs[0], generated_images(1, size=64, seed=1)[0])
