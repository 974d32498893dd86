"""scenes.annotations.load_coco: panoptic files against hand-made and real PNG segments, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.everything import masks as M
from scenes.annotations import load_coco
from infra.errors import UserError

# a 4x6 panoptic PNG: segment 7 (thing, cat 1) top-left, segment 300 (thing, cat 1; id > 255 uses G),
# segment 65536 + 5 (stuff, cat 2; uses B) everywhere else
IDS = np.array([[7, 7, 300, 300, 300, 65541],
                [7, 7, 65541, 300, 65541, 65541],
                [65541, 65541, 65541, 65541, 65541, 65541],
                [65541, 65541, 65541, 65541, 65541, 7]], dtype=np.uint32)


def write_panoptic(root, image_id=42, png_dir=True) -> "Path":
    ann = root / "panoptic_tiny.json"
    if png_dir:
        (root / "panoptic_tiny").mkdir()
        rgb = np.stack([IDS % 256, IDS // 256 % 256, IDS // 65536], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "panoptic_tiny" / "a.png")
    ann.write_text(json.dumps({
        "images": [{"id": 42, "file_name": "a.jpg", "height": 4, "width": 6}],
        "annotations": [{"image_id": image_id, "file_name": "a.png", "segments_info": [
            {"id": 7, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 1, "iscrowd": 0},
            {"id": 65541, "category_id": 2, "iscrowd": 0}]}],
        "categories": [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]}))
    return ann


def test_hand_made_panoptic_segments(tmp_path):
    coco = load_coco(write_panoptic(tmp_path))
    anns = coco.dataset["annotations"]
    assert [a["segment_id"] for a in anns] == [7, 300, 65541] and [a["id"] for a in anns] == [1, 2, 3]
    assert [a["isthing"] for a in anns] == [1, 1, 0] and all(a["image_id"] == 42 for a in anns)
    for a in anns:
        mask = M.decode_rles([a["segmentation"]])[0]
        assert np.array_equal(mask, IDS == a["segment_id"])
        assert a["area"] == int((IDS == a["segment_id"]).sum())
    assert anns[0]["bbox"] == [0.0, 0.0, 6.0, 4.0]  # top-left block and the bottom-right pixel
    assert anns[1]["bbox"] == [2.0, 0.0, 3.0, 2.0] and anns[1]["area"] == 4
    things = load_coco(tmp_path / "panoptic_tiny.json", things_only=True)
    assert [a["segment_id"] for a in things.dataset["annotations"]] == [7, 300]


def test_real_coco128_panoptic_matches_its_pngs(shared_data):
    ann = shared_data / "coco128" / "annotations" / "panoptic_val2017.json"
    raw = json.loads(ann.read_text())
    coco = load_coco(ann)
    assert len(coco.dataset["annotations"]) == sum(len(e["segments_info"]) for e in raw["annotations"])
    for entry in raw["annotations"][:3]:
        rgb = np.asarray(Image.open(ann.with_suffix("") / entry["file_name"]).convert("RGB"), dtype=np.uint32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        got = {a["segment_id"]: a for a in coco.imgToAnns[entry["image_id"]]}
        assert set(got) == {s["id"] for s in entry["segments_info"]}
        for seg in entry["segments_info"]:
            mask = M.decode_rles([got[seg["id"]]["segmentation"]])[0]
            assert np.array_equal(mask, ids == seg["id"]) and got[seg["id"]]["area"] == seg["area"]
            assert got[seg["id"]]["bbox"] == [float(v) for v in seg["bbox"]]
    things = load_coco(ann, things_only=True)
    assert 0 < len(things.dataset["annotations"]) < len(coco.dataset["annotations"])
    assert all(a["isthing"] == 1 for a in things.dataset["annotations"])


def test_panoptic_without_png_folder_is_one_line_error(tmp_path):
    ann = write_panoptic(tmp_path, png_dir=False)
    with pytest.raises(UserError) as err:
        load_coco(ann)
    assert str(ann) in str(err.value) and "panoptic_tiny/" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("panoptic", [True, False])
def test_mismatched_image_ids_is_one_line_error(tmp_path, panoptic):
    if panoptic:
        ann = write_panoptic(tmp_path, image_id=43)
    else:
        ann = tmp_path / "instances.json"
        ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 6}],
                                   "annotations": [{"id": 1, "image_id": 2, "bbox": [0, 0, 1, 1],
                                                    "segmentation": [[0, 0, 1, 0, 1, 1]], "category_id": 1}]}))
    with pytest.raises(UserError) as err:
        load_coco(ann)
    assert str(ann) in str(err.value) and "mismatched image ids" in str(err.value) and "\n" not in str(err.value)
