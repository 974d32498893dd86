"""Checkpoint loading: Meta's flat layout, the Hugging Face SamModel layout, and exact-load errors."""
from __future__ import annotations

import pytest
import torch

from conftest import oracle
from sam_oracle import official_sam
from supernet.modeling.arch import get_arch
from supernet.elastic.build import build_sam
from supernet.checkpoint import load_sam
from infra.errors import CheckpointError


@pytest.fixture(scope="module")
def meta_state_dict():
    official, _ = official_sam(get_arch("micro"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in official.parameters():
            p.normal_(std=0.05)
    return official.state_dict()


def test_meta_checkpoint_loads_exactly(tmp_path, meta_state_dict):
    path = tmp_path / "sam_micro.pth"
    torch.save(dict(meta_state_dict), path)
    model = load_sam(path, model_type="micro")
    ours = model.state_dict()
    assert set(ours) == set(meta_state_dict)
    for key, value in meta_state_dict.items():
        assert torch.equal(ours[key], value), key


def test_model_type_inferred_and_checked(tmp_path, meta_state_dict):
    path = tmp_path / "ckpt.pth"
    torch.save(dict(meta_state_dict), path)
    assert load_sam(path).arch.name == "micro"
    with pytest.raises(CheckpointError, match="--model-type vit_b given, but the weights are a micro model"):
        load_sam(path, model_type="vit_b")


def test_pixel_stats_keys_are_tolerated(tmp_path, meta_state_dict):
    sd = dict(meta_state_dict)
    sd["pixel_mean"] = torch.zeros(3, 1, 1)
    sd["pixel_std"] = torch.ones(3, 1, 1)
    torch.save(sd, tmp_path / "c.pth")
    model = load_sam(tmp_path / "c.pth")
    # The file's pixel statistics are passed over: the architecture's stay, the weights load.
    arch = get_arch("micro")
    assert model.pixel_mean.flatten().tolist() == pytest.approx(arch.pixel_mean)
    assert model.pixel_std.flatten().tolist() == pytest.approx(arch.pixel_std)
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in meta_state_dict.items())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda sd: sd.pop("mask_decoder.iou_token.weight"), r"missing keys: mask_decoder\.iou_token\.weight"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(1)), r"unexpected keys: extra\.weight"),
        (lambda sd: sd.__setitem__("mask_decoder.iou_token.weight", torch.zeros(1, 7)),
         r"shape mismatches: mask_decoder\.iou_token\.weight \(1, 7\) vs expected \(1, 64\)"),
    ],
)
def test_partial_load_is_never_silent(tmp_path, meta_state_dict, mutate, message):
    sd = dict(meta_state_dict)
    mutate(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_sam(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_sam(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable weights-only checkpoint"):
        load_sam(junk)
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_sam(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict of tensors"):
        load_sam(tmp_path / "list.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable weights-only checkpoint"):
        load_sam(path)


def _hf_micro_model():
    oracle()  # installs the torchvision stand-in that transformers' SAM module imports
    transformers = pytest.importorskip("transformers")
    arch = get_arch("micro")
    cfg = transformers.SamConfig(
        vision_config=transformers.SamVisionConfig(
            hidden_size=arch.embed_dim, num_hidden_layers=arch.depth, num_attention_heads=arch.num_heads,
            mlp_dim=arch.mlp_dim, global_attn_indexes=list(arch.global_attn_indexes), window_size=arch.window_size,
            image_size=arch.img_size, output_channels=arch.prompt_embed_dim,
            num_pos_feats=arch.prompt_embed_dim // 2),
        prompt_encoder_config=transformers.SamPromptEncoderConfig(
            hidden_size=arch.prompt_embed_dim, image_size=arch.img_size, patch_size=arch.patch_size,
            mask_input_channels=16),
        mask_decoder_config=transformers.SamMaskDecoderConfig(
            hidden_size=arch.prompt_embed_dim, num_hidden_layers=arch.decoder_depth,
            num_attention_heads=arch.decoder_heads, mlp_dim=arch.decoder_mlp_dim,
            iou_head_hidden_dim=arch.iou_head_hidden_dim),
    )
    torch.manual_seed(2)
    model = transformers.SamModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_hugging_face_layout_matches_samModel(tmp_path, suffix):
    hf = _hf_micro_model()
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        sd.pop("prompt_encoder.shared_embedding.positional_embedding")  # tied: stored once, as HF saves it
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    ours = load_sam(path)
    pixels = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = hf.get_image_embeddings(pixels)
        got = ours.image_encoder(pixels)
    assert (got - expected).abs().max().item() < 1e-4


def test_hf_loaded_model_has_no_leftover_random_weights(tmp_path):
    hf = _hf_micro_model()
    torch.save(hf.state_dict(), tmp_path / "m.bin")
    ours = load_sam(tmp_path / "m.bin").state_dict()
    fresh = build_sam("micro", seed=123).state_dict()
    assert torch.equal(ours["mask_decoder.iou_prediction_head.layers.2.bias"],
                       hf.state_dict()["mask_decoder.iou_prediction_head.proj_out.bias"])
    assert not torch.equal(ours["image_encoder.pos_embed"], fresh["image_encoder.pos_embed"])
