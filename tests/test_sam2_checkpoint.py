"""SAM 2 checkpoint layouts: Meta's 2.0 and 2.1 files, Hugging Face's Sam2Model, and the one-line errors."""
from __future__ import annotations

import pytest
import torch

from infra.errors import CheckpointError
from sam2_oracle import hf_sam2, official_sam2, parameters_on_meta, randomise
from supernet.checkpoint import load_sam
from supernet.checkpoint_sam2 import (
    VIDEO_KEY_PREFIXES, hf_state_dict_to_meta, image_state_dict, infer_sam2_model_type, load_sam2,
    meta_state_dict_to_hf,
)
from supernet.modeling.sam2.arch import SAM2_ARCHS, get_sam2_arch
from supernet.modeling.sam2.build import build_sam2

MICRO = get_sam2_arch("sam2_micro")


@pytest.mark.parametrize("name", ["sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b_plus", "sam2_hiera_l"])
def test_image_keys_and_shapes_equal_the_official_ones(name):
    """Meta-device builds (no weights): our keys are the official model's minus the listed video prefixes."""
    with parameters_on_meta():
        official = official_sam2(get_sam2_arch(name), with_memory=True).state_dict()
    with torch.device("meta"):
        ours = build_sam2(name).state_dict()
    assert {t.device.type for t in [*official.values(), *ours.values()]} == {"meta"}
    video = set(official) - set(ours)
    assert video and all(k.startswith(VIDEO_KEY_PREFIXES) for k in video)
    assert set(image_state_dict(official)) == set(ours)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(official[k].shape) for k in ours}
    assert infer_sam2_model_type(official) == name


@pytest.mark.parametrize("name", ["sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b_plus", "sam2_hiera_l"])
def test_hugging_face_names_map_onto_ours_at_every_size(name):
    """transformers' Sam2Model at each official size (meta device): its keys convert to ours and back."""
    with torch.device("meta"):
        theirs = hf_sam2(get_sam2_arch(name)).state_dict()
        ours = build_sam2(name).state_dict()
    converted = hf_state_dict_to_meta(theirs, list(ours))
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert set(meta_state_dict_to_hf(ours)) == set(theirs)


@pytest.fixture(scope="module")
def official_micro():
    return randomise(official_sam2(MICRO, with_memory=True), seed=2)


@pytest.mark.parametrize("version", ["2.1", "2.0"])
def test_meta_checkpoint_loads_exactly(tmp_path, version):
    official = randomise(official_sam2(MICRO, with_memory=True, version=version), seed=2)
    path = tmp_path / f"sam{version}_micro.pt"
    torch.save({"model": official.state_dict()}, path)
    model = load_sam2(path)
    assert model.arch.name == "sam2_micro"
    theirs = official.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    assert model.pixel_mean.device.type == "cpu"


def _save(tmp_path, state_dict, name="c.pt"):
    path = tmp_path / name
    torch.save({"model": state_dict}, path)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.__setitem__("memory_bank.weight", torch.zeros(1)), r"unexpected keys: memory_bank\.weight"),
    (lambda sd: sd.pop("sam_mask_decoder.conv_s0.weight"), r"missing keys: sam_mask_decoder\.conv_s0\.weight"),
    (lambda sd: sd.pop("no_mem_embed"), r"missing keys: no_mem_embed"),
    (lambda sd: sd.__setitem__("sam_mask_decoder.obj_score_token.weight", torch.zeros(1, 7)),
     r"shape mismatches: sam_mask_decoder\.obj_score_token\.weight \(1, 7\) vs expected \(1, 64\)"),
])
def test_partial_load_is_never_silent(tmp_path, official_micro, mutate, message):
    sd = dict(official_micro.state_dict())
    mutate(sd)
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointError, match=message) as info:
        load_sam2(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_model_type_is_inferred_and_checked(tmp_path, official_micro):
    path = _save(tmp_path, official_micro.state_dict())
    with pytest.raises(CheckpointError, match="model type sam2_hiera_t given, but the weights are a sam2_micro model"):
        load_sam2(path, model_type="sam2_hiera_t")
    assert set(SAM2_ARCHS) >= {"sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b_plus", "sam2_hiera_l", "sam2_micro"}


def test_sam2_checkpoint_given_as_sam1_names_the_file(tmp_path):
    path = _save(tmp_path, build_sam2("sam2_micro", seed=0).state_dict(), "sam2.1_hiera_micro.pt")
    with pytest.raises(CheckpointError, match=r"a SAM 2 checkpoint .*expected SAM 1") as info:
        load_sam(path, model_type="vit_b")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_sam1_checkpoint_given_to_sam2_names_the_file(tmp_path, micro_checkpoint):
    path = micro_checkpoint
    with pytest.raises(CheckpointError, match=r"a SAM 1 checkpoint .*expected SAM 2") as info:
        load_sam2(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    junk = tmp_path / "other.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(1)}}, junk)
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint"):
        load_sam2(junk)


@pytest.fixture(scope="module")
def hf_micro():
    """transformers' Sam2Model at sam2_micro's sizes, random weights, with its two copies of the Fourier matrix equal
    (as in converted checkpoints)."""
    model = randomise(hf_sam2(MICRO), seed=5)
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding)
    return model


def test_hugging_face_round_trip(tmp_path, hf_micro):
    """HF state dict -> our model -> HF names: every tensor comes back under its own name, unchanged."""
    from safetensors.torch import save_file

    theirs = hf_micro.state_dict()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in theirs.items()}, str(path))
    ours = load_sam2(path)
    back = meta_state_dict_to_hf(ours.state_dict())
    assert set(back) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(back[key], value), key
    hf_micro.load_state_dict(back, strict=True)


@torch.no_grad()
def test_hugging_face_forward_parity(tmp_path, hf_micro):
    path = tmp_path / "hf.pt"
    torch.save(hf_micro.state_dict(), path)
    ours = load_sam2(path)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    points = torch.tensor([[[[60.0, 80.0], [200.0, 30.0]]]])
    labels = torch.tensor([[[1, 0]]])
    feats = ours.embed_images(x)
    for multimask in (True, False):
        out = hf_micro(pixel_values=x, input_points=points, input_labels=labels, multimask_output=multimask)
        torch.testing.assert_close(feats["image_embed"], out.image_embeddings[-1], atol=1e-5, rtol=0)
        for a, b in zip(feats["high_res_feats"], out.image_embeddings[:2]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        low_res, iou = ours.decode(feats, points=(points[0], labels[0]), multimask_output=multimask)
        torch.testing.assert_close(low_res, out.pred_masks[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(iou, out.iou_scores[0], atol=1e-6, rtol=0)
    previous = low_res[:, :1]  # a mask prompt, as from an earlier click
    out = hf_micro(pixel_values=x, input_points=points, input_labels=labels, input_masks=previous,
                   multimask_output=False)
    low_res, iou = ours.decode(feats, points=(points[0], labels[0]), masks=previous, multimask_output=False)
    torch.testing.assert_close(low_res, out.pred_masks[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(iou, out.iou_scores[0], atol=1e-6, rtol=0)


def test_hugging_face_fourier_copies_must_agree(tmp_path, hf_micro):
    sd = dict(hf_micro.state_dict())
    sd["shared_image_embedding.positional_embedding"] = sd["shared_image_embedding.positional_embedding"] + 1
    path = tmp_path / "hf.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="differs from prompt_encoder.shared_embedding.positional_embedding"):
        load_sam2(path)
