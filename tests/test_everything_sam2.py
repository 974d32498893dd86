"""Segment-everything on SAM 2 against the official ``SAM2AutomaticMaskGenerator`` (sam2 1.1.0, random weights).

Our :class:`MaskGenerator` driven by :class:`Sam2Predictor`, with a grid policy of the official generator's
parameters, must give its masks: the same number, each equal on >= 99.9% of pixels (masks matched by IoU),
predicted IoU and stability score within 1e-3. Both models carry the same weights (the official one saved
in Meta's layout and loaded into ours); each runs its own encoder from pixels, so the features differ by
up to 1e-4 (tests/test_sam2_model.py) and a mask's border pixels may differ.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED_DATA, sam2_oracle
from nas.everything.generator import MaskGenerator
from nas.everything.policies import Policy
from sam2_oracle import assert_same_records, official_and_ours
from supernet.modeling.sam2.predictor import Sam2Predictor
from test_deploy import synthetic_photo

SIDE = 256
# SAM2AutomaticMaskGenerator's defaults, but 8 points a side to stay cheap
DEFAULTS = {"points_per_side": 8, "points_per_batch": 64, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.95,
            "stability_score_offset": 1.0, "box_nms_thresh": 0.7, "crop_n_layers": 0, "crop_nms_thresh": 0.7,
            "crop_overlap_ratio": 512 / 1500, "crop_n_points_downscale_factor": 1, "min_mask_region_area": 0}
# Random weights give logits within +-0.06 and predicted IoUs near 0.5: at the default offset of 1 every stability
# score is 0. LOW scales the offset to those logits and sets thresholds that keep part of the candidates; their
# masks are speckled over the whole image, so box NMS at 0.7 keeps one, and LOW turns it off to compare them all.
LOW = {"pred_iou_thresh": 0.486, "stability_score_thresh": 0.3, "stability_score_offset": 0.005, "box_nms_thresh": 1.0}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return official_and_ours("sam2_micro", SIDE, tmp_path_factory.mktemp("sam2"))


def _image(name: str) -> np.ndarray:
    if name == "synthetic":
        return synthetic_photo(2, (240, 330))
    path = SHARED_DATA / "images" / f"{name}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found (a fresh clone has no ../shared)")
    return np.asarray(Image.open(path).convert("RGB"))


def official_records(official, image: np.ndarray, params: dict) -> list[dict]:
    """``SAM2AutomaticMaskGenerator(official, **params).generate(image)`` at ``SIDE`` px."""
    sam2_oracle()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(official, output_mode="binary_mask", **params)
    generator.predictor._bb_feat_sizes = [(SIDE // 4,) * 2, (SIDE // 8,) * 2, (SIDE // 16,) * 2]  # it assumes 1024 px
    return generator.generate(image)


@pytest.mark.parametrize("name, params, least", [
    ("synthetic", DEFAULTS, 0),  # random weights reach no default threshold: both find nothing
    ("synthetic", {**DEFAULTS, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}, 1),  # box NMS as is
    ("synthetic", {**DEFAULTS, **LOW}, 10),
    ("synthetic", {**DEFAULTS, **LOW, "crop_n_layers": 1}, 1),  # crop NMS keeps one of the speckled masks
    ("dog", {**DEFAULTS, **LOW}, 10),
])
@torch.no_grad()
def test_grid_policy_gives_the_official_generators_masks(pair, name, params, least):
    official, ours = pair
    image = _image(name)
    theirs = official_records(official, image, params)
    mine = MaskGenerator(Sam2Predictor(ours), Policy(kind="grid", **params)).generate(image)
    assert_same_records(mine, theirs, least)
