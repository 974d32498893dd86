"""The teacher-embedding cache never serves a stale embedding, and activation checkpointing
changes memory, not gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.training.teacher_cache import TeacherCache
from nas.training.train import TrainSettings, train
from search_spaces.space import SearchSpace
from supernet.elastic.activation import active_subnet
from supernet.elastic.build import build_sam
from supernet.modeling.transforms import ResizeLongestSide


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def inputs(model, images: list[np.ndarray]) -> torch.Tensor:
    """The preprocessed ``(B, 3, R, R)`` batch the trainer feeds the encoder."""
    res = model.resolution
    out = []
    for img in images:
        resized = ResizeLongestSide(res).apply_image(img)
        out.append(model.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())[0])
    return torch.stack(out)


def direct(teacher, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher.image_encoder(batch)


def test_cache_hits_only_the_same_weights_image_and_side(tmp_path):
    teacher = build_sam("micro", seed=0).eval()
    a, b = image(1), image(2)
    cache = TeacherCache(teacher, tmp_path / "cache")
    batch = inputs(teacher, [a, b])
    first = cache.embeddings([a, b], batch)
    assert (cache.hits, cache.misses) == (0, 2)
    assert torch.allclose(first, direct(teacher, batch), atol=1e-5)
    again = cache.embeddings([b, a], inputs(teacher, [b, a]))
    assert (cache.hits, cache.misses) == (2, 2)
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])

    changed = a.copy()
    changed[0, 0, 0] ^= 1  # one pixel of the same photo
    cache.embeddings([changed], inputs(teacher, [changed]))
    assert cache.misses == 3

    teacher.set_resolution(128)  # another input side of the same photo
    cache.embeddings([a], inputs(teacher, [a]))
    assert cache.misses == 4
    teacher.set_resolution(256)

    # A new process with the same weights reads the disk cache...
    same = TeacherCache(build_sam("micro", seed=0).eval(), tmp_path / "cache")
    from_disk = same.embeddings([a], inputs(teacher, [a]))
    assert (same.hits, same.misses) == (1, 0) and torch.equal(from_disk[0], first[0])
    # ...but other weights in the same folder never hit, even by one changed value.
    other = build_sam("micro", seed=0).eval()
    with torch.no_grad():
        other.image_encoder.neck[0].weight[0, 0, 0, 0] += 1e-3
    stale = TeacherCache(other, tmp_path / "cache")
    fresh = stale.embeddings([a], inputs(other, [a]))
    assert (stale.hits, stale.misses) == (0, 1)
    assert torch.allclose(fresh, direct(other, inputs(other, [a])), atol=1e-5)
    assert not torch.allclose(fresh[0], first[0])


def test_damaged_cache_file_is_recomputed(tmp_path):
    teacher = build_sam("micro", seed=0).eval()
    a = image(3)
    TeacherCache(teacher, tmp_path).embeddings([a], inputs(teacher, [a]))
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    files[0].write_bytes(b"not safetensors")
    cache = TeacherCache(teacher, tmp_path)
    out = cache.embeddings([a], inputs(teacher, [a]))
    assert cache.misses == 1 and torch.allclose(out, direct(teacher, inputs(teacher, [a])), atol=1e-5)


def test_memory_cache_is_bounded():
    teacher = build_sam("micro", seed=0).eval()
    one = 64 * 16 * 16 * 4  # micro embedding (64, 16, 16) float32
    cache = TeacherCache(teacher, None, max_memory_mb=2.5 * one / 2**20)
    for seed in range(4):
        img = image(seed)
        cache.embeddings([img], inputs(teacher, [img]))
    assert len(cache._memory) == 2 and cache._bytes == 2 * one


@pytest.mark.parametrize("config", ["full", "subnet"])
def test_activation_checkpointing_gives_the_same_gradients(config):
    space = SearchSpace.load("sam_micro")
    model = build_sam("micro", seed=0)
    cfg = space.largest() if config == "full" else space.sample(3)
    x = torch.randn(2, 3, 256, 256)

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model.image_encoder.checkpoint_blocks = checkpointing
        with active_subnet(model, cfg):
            res = model.resolution
            model.image_encoder(torch.nn.functional.interpolate(x, (res, res))).pow(2).mean().backward()
        model.image_encoder.checkpoint_blocks = False
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.slow
def test_sandwich_training_with_cache_and_checkpointing_matches_without(tmp_path):
    """The cache and checkpointing change cost only: the trained weights come out the same."""
    from tests.test_train import Rectangles

    space = SearchSpace.load("sam_micro")

    def run(cached: bool, checkpointing: bool, out):
        model, teacher = build_sam("micro", seed=0), build_sam("micro", seed=0)
        # sampled loss points (as tests/test_train.py): the dense loss adds cost, not coverage, here
        settings = TrainSettings(steps=2, batch_images=1, prompts_per_image=2, warmup_steps=1, sandwich=True,
                                 distill=True, random_subnets=1, activation_checkpointing=checkpointing,
                                 loss_points=256, space=space.to_dict())
        cache = TeacherCache(teacher.eval(), out / "cache") if cached else None
        train(model, Rectangles(), settings, out, teacher=teacher, space=space, progress=False,
              teacher_cache=cache)
        return model, cache

    plain, _ = run(False, False, tmp_path / "a")
    fast, cache = run(True, True, tmp_path / "b")
    assert cache.misses >= 2 and cache.hits >= 2  # each step's later subnets reuse its embeddings
    for (k, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5, msg=k)
