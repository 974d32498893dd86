"""SAM 2's image model against the official sam2 1.1.0 code (random weights): encoder, decoder, end to end.

Each official model is built from sam2's classes (tests/sam2_oracle.py), saved in Meta's checkpoint
layout with its video modules, and loaded into ours with ``load_sam2``, so loading is exercised too.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infra.errors import ConfigError
from sam2_oracle import official_and_ours
from supernet.modeling.sam2.build import build_sam2
from supernet.modeling.sam2.predictor import Sam2Predictor

ENCODER_ATOL = 1e-4


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``pair(name, side)`` -> (official SAM2Base, ours loaded from its checkpoint), built once per module."""
    cache = {}

    def get(name: str, side: int):
        if (name, side) not in cache:
            cache[(name, side)] = official_and_ours(name, side, tmp_path_factory.mktemp("sam2"))
        return cache[(name, side)]

    return get


def _slow(name, side):
    return pytest.param(name, side, marks=pytest.mark.slow)


@pytest.mark.parametrize("name, side", [
    ("sam2_micro", 256), ("sam2_micro", 512), ("sam2_hiera_t", 512),
    _slow("sam2_micro", 1024), _slow("sam2_hiera_t", 1024), _slow("sam2_hiera_b_plus", 512),
    _slow("sam2_hiera_b_plus", 1024),
])
@torch.no_grad()
def test_encoder_matches_official(pair, name, side):
    official, ours = pair(name, side)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    captured = []
    hook = official.image_encoder.trunk.register_forward_hook(lambda m, i, out: captured.extend(out))
    try:
        backbone = official.forward_image(x)
    finally:
        hook.remove()
    stages, levels = ours.image_encoder.forward_with_stages(x)
    feats = ours.features_from_levels(levels)

    assert len(stages) == len(captured) == 4
    for i, (a, b) in enumerate(zip(captured, stages)):
        assert a.shape == b.shape == (1, ours.arch.stage_dims[i], side // 4 >> i, side // 4 >> i)
        torch.testing.assert_close(b, a, atol=ENCODER_ATOL, rtol=0, msg=f"stage {i + 1}")
    embed = backbone["backbone_fpn"][-1] + official.no_mem_embed.view(1, -1, 1, 1)
    assert feats["image_embed"].shape == (1, ours.arch.d_model, side // 16, side // 16)
    torch.testing.assert_close(feats["image_embed"], embed, atol=ENCODER_ATOL, rtol=0)
    for a, b in zip(backbone["backbone_fpn"][:2], feats["high_res_feats"]):
        torch.testing.assert_close(b, a, atol=ENCODER_ATOL, rtol=0)


def _image(h: int = 300, w: int = 417) -> np.ndarray:
    """A non-square RGB image with smooth gradients and two flat shapes (uint8)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=-1).astype(np.uint8)
    img[60:180, 80:220] = (200, 30, 40)
    img[150:280, 250:400] = (20, 160, 90)
    return img


PROMPTS = {
    "point": dict(point_coords=np.array([[150, 120]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[150, 120], [320, 210]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([70, 50, 230, 190])),
    "box+points": dict(box=np.array([240, 140, 410, 290]), point_coords=np.array([[300, 220], [100, 100]]),
                       point_labels=np.array([1, 0])),
}


def _predictors(official, ours):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    theirs = SAM2ImagePredictor(official)
    side = ours.resolution
    theirs._bb_feat_sizes = [(side // 4,) * 2, (side // 8,) * 2, (side // 16,) * 2]  # its sizes assume 1024 px
    return theirs, Sam2Predictor(ours)


@pytest.mark.parametrize("name, side", [("sam2_micro", 256), _slow("sam2_hiera_t", 512)])
@pytest.mark.parametrize("stability_thresh", [0.98, 0.0])  # 0.0: the single mask is always "stable"
@torch.no_grad()
def test_decoder_matches_official(pair, name, side, stability_thresh):
    """The same image features in both decoders: identical masks, IoU and low-res logits for every prompt kind."""
    official, ours = pair(name, side)
    official.sam_mask_decoder.dynamic_multimask_stability_thresh = stability_thresh
    ours.sam_mask_decoder.stability_thresh = stability_thresh
    theirs, mine = _predictors(official, ours)
    theirs.set_image(_image())
    mine.features, mine.original_size = theirs._features, theirs._orig_hw[0]  # the decoder alone
    previous = None
    for kind, prompt in PROMPTS.items():
        for multimask in (True, False):
            a = theirs.predict(**prompt, multimask_output=multimask, return_logits=True)
            b = mine.predict(**prompt, multimask_output=multimask, return_logits=True)
            assert b[0].shape == a[0].shape == (3 if multimask else 1, 300, 417), kind
            np.testing.assert_array_equal(b[0] > 0, a[0] > 0, err_msg=kind)
            np.testing.assert_allclose(b[1], a[1], atol=1e-6, err_msg=kind)
            np.testing.assert_allclose(b[2], a[2], atol=1e-5, err_msg=kind)
            previous = a[2][:1]
    mask_prompt = dict(PROMPTS["point"], mask_input=previous, multimask_output=False, return_logits=True)
    a, b = theirs.predict(**mask_prompt), mine.predict(**mask_prompt)
    np.testing.assert_array_equal(b[0] > 0, a[0] > 0)
    np.testing.assert_allclose(b[2], a[2], atol=1e-5)
    np.testing.assert_allclose(b[1], a[1], atol=1e-6)


@pytest.mark.parametrize("name, side", [("sam2_micro", 256), _slow("sam2_hiera_t", 512)])
@torch.no_grad()
def test_end_to_end_from_pixels(pair, name, side):
    """Pixels in, masks out, both predictors on the same photo-sized image: < 1e-3 of mask pixels differ."""
    official, ours = pair(name, side)
    theirs, mine = _predictors(official, ours)
    image = _image()
    theirs.set_image(image)
    mine.set_image(image)
    for kind, prompt in PROMPTS.items():
        for multimask in (True, False):
            a, b = theirs.predict(**prompt, multimask_output=multimask), mine.predict(**prompt, multimask_output=multimask)
            assert a[0].dtype == b[0].dtype == np.float32 and a[0].shape == b[0].shape
            assert (a[0] != b[0]).mean() < 1e-3, kind
            np.testing.assert_allclose(b[1], a[1], atol=1e-4, err_msg=kind)


def test_input_side_must_be_a_multiple_of_32():
    with pytest.raises(ConfigError, match=r"input side 500: SAM 2 needs a positive multiple of 32") as info:
        build_sam2("sam2_micro", img_size=500)
    assert "\n" not in str(info.value)
    model = build_sam2("sam2_micro", seed=0)
    with pytest.raises(ConfigError, match="input side 200"):
        model.set_resolution(200)
    model.set_resolution(512)  # larger than built: Hiera's position embedding is interpolated
    feats = model.embed_images(torch.zeros(1, 3, 512, 512))
    assert feats["image_embed"].shape[-1] == 32 and [f.shape[-1] for f in feats["high_res_feats"]] == [128, 64]
    low_res, _ = model.decode(feats, points=(torch.tensor([[[10.0, 20.0]]]), torch.tensor([[1]])))
    assert low_res.shape == (1, 3, 128, 128)


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_sam2("sam2_micro", seed=3), build_sam2("sam2_micro", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.image_encoder.trunk.pos_embed, build_sam2("sam2_micro", seed=4).image_encoder.trunk.pos_embed)


def test_the_package_imports_no_torchvision_timm_hydra_or_sam2():
    """Transitively, in a fresh interpreter: SAM 2's modeling and loading run on torch alone."""
    import subprocess
    import sys

    code = ("import sys, supernet.modeling.sam2.build, supernet.modeling.sam2.predictor, supernet.checkpoint_sam2; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torchvision', 'timm', 'hydra', 'sam2'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("conftest").ROOT))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
