"""SAM 2 through the command layer, on sam2_micro at 256 px: loading (Meta 2.1 and Hugging Face layouts, the
type from the weights, the seeded random fallback), rank and extract on the command line, quality through
SAM 2's own predictor path, segment-everything (everything, evaluate, tune-everything, calibrate-everything),
the search's samplers and a search, and each bad input as one line."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from PIL import Image

import cli
from nas.quality import make_evaluator
from nas.quality.coco import farthest_point, load_coco, mask_ceiling
from nas.search.pareto import load_points, pareto_front
from nas.search.run import SearchSettings, run_search, suggest_config
from nas.search.samplers import SurrogateSampler
from nas.search.samplers.design import crossover, encode_many, mutate, uniform_shrinks
from search_spaces.space import SearchSpace
from supernet.checkpoint_sam2 import meta_state_dict_to_hf
from supernet.elastic.activation import active_config, active_subnet
from supernet.elastic.build import build_sam2_supernet
from supernet.elastic.extract import extract, load_subnet
from supernet.elastic.ranked import load_ranked
from supernet.elastic.sam2_modules import ElasticHiera
from supernet.model_source import load_model
from supernet.modeling.sam2.predictor import Sam2Predictor

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def supernet():
    return build_sam2_supernet("sam2_micro", seed=0)


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load("sam2_micro")


@pytest.fixture()
def sam2_file(tmp_path, supernet):
    """sam2_micro in Meta's SAM 2.1 file layout: ``{"model": ...}`` with video-module keys beside the image path."""
    state = {**supernet.state_dict(), "memory_encoder.fuser.proj.weight": torch.zeros(2, 2),
             "maskmem_tpos_enc": torch.zeros(7, 1, 1, 64)}
    path = tmp_path / "sam2.1_hiera_micro.pt"
    torch.save({"model": state}, path)
    return path


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_scene(i)).save(folder / f"img{i}.png")
    return folder


def _scene(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A noisy image with two bright rectangles, ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[10:40, 12:60] = (220, 40, 40)
    image[50:90, 70:120] = (40, 200, 90)
    return image


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------------------------------ loading

def test_load_model_reads_both_layouts_and_infers_the_type(tmp_path, supernet, sam2_file):
    from safetensors.torch import save_file

    hf = tmp_path / "sam2_micro_hf.safetensors"
    save_file({k: v.clone() for k, v in meta_state_dict_to_hf(supernet.state_dict()).items()}, str(hf))
    for path, model_type in ((sam2_file, None), (sam2_file, "sam2_micro"), (hf, None)):
        model, source = load_model(str(path), model_type=model_type)
        assert isinstance(model.image_encoder.trunk, ElasticHiera) and model.arch.name == "sam2_micro"
        assert source.tag == f"sam2_micro-{path.stem}" and source.path == str(path) and source.ranking is None
        _same_weights(model, supernet)


def test_without_a_checkpoint_sam2_gets_seeded_random_weights_and_a_warning():
    said = []
    model, source = load_model(model_type="sam2_micro", log=said.append)
    again, _ = load_model(model_type="sam2_micro", log=lambda message: None)
    assert source.tag == "sam2_micro-random" and source.path is None
    assert len(said) == 1 and "RANDOMLY INITIALISED" in said[0] and "sam2_micro" in said[0]
    assert isinstance(model.image_encoder.trunk, ElasticHiera)
    _same_weights(model, again)


# ------------------------------------------------------------------------------------ rank, extract

def test_rank_then_extract_on_the_command_line(tmp_path, supernet, space, sam2_file, image_dir, capsys):
    ranked = tmp_path / "ranked.pt"
    code, out, err = run(["rank", "--checkpoint", sam2_file, "--images", image_dir, "--method", "wanda",
                          "--out", ranked], capsys)
    assert code == 0, err
    assert "ranked sam2_micro by wanda on 2 images" in out
    meta = json.loads(ranked.with_suffix(".json").read_text())
    assert meta["model_type"] == "sam2_micro" and meta["method"] == "wanda"
    model, ranking = load_ranked(ranked)
    assert ranking["method"] == "wanda" and isinstance(model.image_encoder.trunk, ElasticHiera)
    moved = [k for k, v in supernet.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert any(".attn.qkv." in k for k in moved) and any(".mlp." in k for k in moved)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():  # the permutation keeps the full model's outputs
        before, after = supernet.embed_images(x), model.embed_images(x)
    for key in ("image_embed", "high_res_feats"):
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-5)

    config = next(c for c in (space.sample(seed) for seed in range(50))
                  if c.resolution < 256 and not c.blocks[3].keep and c.blocks[1].heads < 2)
    cfg_path = tmp_path / "subnet.yaml"
    cfg_path.write_text(yaml.safe_dump(config.to_dict()))
    code, out, err = run(["extract", "--checkpoint", ranked, "--config", cfg_path, "--out", tmp_path / "sub"], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "sub" / "subnet.json").read_text())
    assert info["family"] == "sam2" and info["ranking_method"] == "wanda" and info["flops"] > 0
    sub = load_subnet(tmp_path / "sub")
    assert len(sub.image_encoder.trunk.blocks) == 4 and sub.resolution == config.resolution
    x = torch.randn(1, 3, config.resolution, config.resolution)
    with torch.no_grad(), active_subnet(model, config):
        want, got = model.embed_images(x), sub.embed_images(x)
    torch.testing.assert_close(got["image_embed"], want["image_embed"], rtol=0, atol=1e-5)
    for a, b in zip(want["high_res_feats"], got["high_res_feats"]):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def bad_inputs(tmp_path, space):
    """Config and space files that are wrong in one field each."""
    good = space.sample(1).to_dict()
    skip_transition = space.largest().to_dict()
    skip_transition["blocks"][2] = {"keep": False, "stage": 2}
    odd_side = {**space.largest().to_dict(), "resolution": 200}
    bad_space = yaml.safe_load(Path(space.source).read_text())
    bad_space["resolutions"] = [256, 200]
    sam1_config = SearchSpace.load("sam_micro").sample(0).to_dict()
    return {"good": _write(tmp_path / "good.yaml", good), "skip": _write(tmp_path / "skip.yaml", skip_transition),
            "side": _write(tmp_path / "side.yaml", odd_side), "space": _write(tmp_path / "space.yaml", bad_space),
            "sam1_config": _write(tmp_path / "sam1.yaml", sam1_config)}


@pytest.mark.parametrize("argv, message", [
    (["rank", "--checkpoint", "{sam2}", "--model-type", "vit_b", "--method", "magnitude", "--out", "{tmp}/r.pt"],
     r"{sam2}: a SAM 2 checkpoint .*expected SAM 1"),
    (["rank", "--checkpoint", "{sam1}", "--model-type", "sam2_micro", "--method", "magnitude", "--out", "{tmp}/r.pt"],
     r"{sam1}: a SAM 1 checkpoint .*expected SAM 2"),
    (["extract", "--checkpoint", "{sam1}", "--config", "{good}", "--out", "{tmp}/o"],
     r"space sam2_micro is for sam2_micro, but {sam1} is a micro model"),
    (["extract", "--checkpoint", "{sam2}", "--config", "{sam1_config}", "--out", "{tmp}/o"],
     r"space sam_micro is for micro, but {sam2} is a sam2_micro model"),
    (["extract", "--checkpoint", "{sam2}", "--config", "{skip}", "--out", "{tmp}/o"],
     r"{skip}: blocks\[2\]\.keep: false not allowed, block 2 cannot be skipped: it opens stage 2"),
    (["extract", "--checkpoint", "{sam2}", "--config", "{side}", "--out", "{tmp}/o"],
     r"{side}: resolution: 200 not in \[256, 192, 128\]"),
    (["search", "--space", "{space}", "--trials", "1", "--results", "{tmp}/results"],
     r"{space}: resolutions: 200 is not a multiple of 32 pixels"),
    (["train-supernet", "--checkpoint", "{sam2}", "--space", "sam2_micro", "--images", "{images}", "--steps", "1",
      "--activation-checkpointing", "on", "--out", "{tmp}/o"],
     r"--activation-checkpointing on: only SAM 1's ViT blocks have it; space sam2_micro is SAM 2"),
    (["train-supernet", "--checkpoint", "{sam1}", "--space", "sam2_micro", "--images", "{images}", "--steps", "1",
      "--out", "{tmp}/o"], r"--checkpoint {sam1} is a micro model, but space sam2_micro is for sam2_micro"),
    (["everything", "--checkpoint", "{sam1}", "--model-type", "sam2_micro", "--images", "{images}", "--out", "{tmp}/o"],
     r"{sam1}: a SAM 1 checkpoint .*expected SAM 2"),
])
def test_bad_input_is_one_line(tmp_path, sam2_file, micro_checkpoint, image_dir, bad_inputs, capsys, argv, message):
    paths = {"tmp": tmp_path, "sam2": sam2_file, "sam1": micro_checkpoint, "images": image_dir, **bad_inputs}
    code, out, err = run([a.format(**paths) for a in argv], capsys)
    pattern = message.format(**{k: re.escape(str(v)) for k, v in paths.items()})
    assert code == 2 and err.startswith("samnas: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err
    assert not (tmp_path / "o").exists() and not (tmp_path / "r.pt").exists()


# ------------------------------------------------------------------------------------------ training

def test_distilling_sam2_from_itself_costs_nothing_at_full_size(supernet, space):
    """The embedding loss covers SAM 2's three decoder inputs: zero for the full model against its own copy,
    positive for a subnet; the prompts run in SAM 2's square frame."""
    import copy

    from nas.training.train import SubnetLoss, TrainSettings
    from scenes.sources import Scene

    image = _scene(5)
    masks = [np.zeros(image.shape[:2], bool), np.zeros(image.shape[:2], bool)]
    masks[0][10:40, 12:60] = True
    masks[1][50:90, 70:120] = True
    loss = SubnetLoss(supernet, copy.deepcopy(supernet), TrainSettings(steps=1, prompts_per_image=2, distill=True))
    with active_subnet(supernet, space.largest()):
        total, stats = loss([Scene(image, masks)], seed=0)
    assert stats["embed_mse"] == 0.0 and torch.isfinite(total) and 0.0 <= stats["iou"] <= 1.0
    with active_subnet(supernet, space.smallest()):
        _, small = loss([Scene(image, masks)], seed=0)
    assert small["embed_mse"] > 0.0


@pytest.mark.slow
def test_train_supernet_on_the_command_line(tmp_path, supernet, sam2_file, capsys):
    from safetensors.torch import load_file

    from nas.training.teacher_cache import PART_NAMES
    from scenes.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path / "data", num_images=2, size=64, seed=0, split="train")
    out = tmp_path / "run"
    code, printed, err = run(["train-supernet", "--checkpoint", sam2_file, "--space", "sam2_micro",
                              "--images", tmp_path / "data" / "train", "--annotations", annotations, "--steps", "1",
                              "--batch-images", "1", "--random-subnets", "1", "--rerank-every", "1",
                              "--loss-points", "256", "--lr", "1e-3", "--out", out,
                              "--tracking-uri", (tmp_path / "mlruns").as_uri()], capsys)
    assert code == 0, err
    assert "trained sam2_micro supernet for 1 steps" in printed and "activation checkpointing off" in printed
    model, meta = load_ranked(out / "supernet.pt")
    assert meta["model_type"] == "sam2_micro" and isinstance(model.image_encoder.trunk, ElasticHiera)
    start = supernet.state_dict()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, start[k])}
    assert any(k.startswith("image_encoder.trunk.blocks.3.") for k in changed)
    assert any(k.startswith("sam_mask_decoder.conv_s0.") for k in changed)  # the high-resolution path trains too
    cached = list((out / "teacher-cache").glob("*.safetensors"))
    assert cached and all(set(load_file(str(f))) == set(PART_NAMES) for f in cached)


# ------------------------------------------------------------------------------------------ quality

def test_fidelity_runs_sam2_through_its_predictor(supernet, space):
    evaluator = make_evaluator("fidelity", supernet, images=[_scene(0), _scene(1, 64, 64)], prompts_per_image=3)
    before = active_config(supernet)
    full = evaluator.evaluate(supernet, space.largest())
    assert full.score == 1.0 and full.num_items == 2 and full.metrics["embedding_mse"] == 0.0
    # the references are the official predictor API's best masks, one point at a time
    predictor = Sam2Predictor(supernet)
    for ref in evaluator.references:
        predictor.set_image(ref.image)
        for point, want in zip(ref.points, ref.masks):
            masks, iou, _ = predictor.predict(point_coords=point[None], point_labels=np.array([1]))
            assert np.array_equal(masks[int(np.argmax(iou))] > 0, want.numpy())
    config = space.smallest()
    small = evaluator.evaluate(supernet, config)
    assert 0.0 <= small.score < 1.0 and small.metrics["embedding_cosine"] < 0.999
    standalone = evaluator.evaluate(extract(supernet, config), None)
    assert standalone.score == pytest.approx(small.score, abs=1e-3)
    assert active_config(supernet) == before


def test_coco_runs_sam2_through_its_predictor(supernet, space, tmp_path):
    from scenes.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path, num_images=2, size=64, seed=1, split="val")
    evaluator = make_evaluator("coco", supernet, images=tmp_path / "val", annotations=annotations)
    result = evaluator.evaluate(supernet, space.largest())
    assert result.skipped == [] and 0.0 <= result.score <= 1.0
    coco, predictor, ious = load_coco(annotations), Sam2Predictor(supernet), {"box": [], "point": []}
    for info in coco.dataset["images"]:
        predictor.set_image(np.array(Image.open(tmp_path / "val" / info["file_name"]).convert("RGB")))
        for ann in coco.imgToAnns[info["id"]]:
            gt = coco.annToMask(ann).astype(bool)
            x, y, w, h = ann["bbox"]
            for kind, answer in (("box", predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=False)),
                                 ("point", predictor.predict(point_coords=farthest_point(gt)[None],
                                                             point_labels=np.array([1])))):
                best = answer[0][int(np.argmax(answer[1]))] > 0
                ious[kind].append((best & gt).sum() / max((best | gt).sum(), 1))
    for kind in ("box", "point"):
        assert result.metrics[f"{kind}_miou"] == pytest.approx(float(np.mean(ious[kind])), abs=1e-6)
    # SAM 2's ceiling frame: at 256 px a 64 x 64 image's low-res cell is one pixel, so every mask survives
    assert result.metrics["mask_ceiling_miou"] == 1.0


def test_mask_ceiling_in_sam2s_square_frame():
    gt = torch.zeros(1, 48, 96, dtype=torch.bool)
    gt[0, 12:36, 24:72] = True  # whole cells of the 64 x 64 grid (0.75 x 1.5 px each)
    assert torch.equal(mask_ceiling(gt, 256, square=True), gt)
    thin = torch.zeros(1, 480, 640, dtype=torch.bool)
    thin[0, 100:300, 200:201] = True  # one pixel wide: far below a 10 x 7.5 px cell at 256 px
    assert not mask_ceiling(thin, 256, square=True).any()


# ------------------------------------------------------------------------------------ segment-everything

LOW = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "output_mode": "coco_rle"}
TAG = "sam2_micro-sam2.1_hiera_micro"  # load_model's tag of the sam2_file fixture


@pytest.fixture()
def low_policy(tmp_path):
    """A written 8 x 8 grid policy that keeps every candidate (random weights reach no default threshold)."""
    from nas.everything.policies import Policy, save_policy

    return save_policy(Policy(**LOW), tmp_path / "low.yaml")


def _generator_records(checkpoint, images: list[np.ndarray]) -> list[list[dict]]:
    """``MaskGenerator`` with the LOW policy on SAM 2's predictor of the model in ``checkpoint``, per image."""
    from nas.everything.generator import MaskGenerator
    from nas.everything.policies import Policy

    model, _ = load_model(str(checkpoint))
    with torch.no_grad():
        return [MaskGenerator(Sam2Predictor(model), Policy(**LOW)).generate(image) for image in images]


@pytest.mark.slow
def test_everything_on_sam2_writes_its_masks_and_defaults_to_sam2s_thresholds(tmp_path, sam2_file, image_dir,
                                                                               low_policy, capsys):
    from nas.everything.calibrate import model_defaults

    out = tmp_path / "masks"
    code, _, err = run(["everything", "--checkpoint", sam2_file, "--images", image_dir, "--out", out, "--no-progress"],
                       capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == TAG and summary["policy_source"] == "SAM 2's defaults"
    assert summary["policy"]["pred_iou_thresh"] == 0.8 and summary["policy"]["stability_score_thresh"] == 0.95
    assert sorted(p.name for p in out.glob("img*.json")) == ["img0.json", "img1.json"]
    assert model_defaults("subnet-mine", sam2=True) == ({"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95},
                                                        "SAM 2's defaults")

    code, printed, err = run(["everything", "--checkpoint", sam2_file, "--policy", low_policy, "--images", image_dir,
                              "--out", tmp_path / "low", "--no-progress"], capsys)
    assert code == 0, err
    want = _generator_records(sam2_file, [_scene(0), _scene(1)])
    for i, records in enumerate(want):
        got = json.loads((tmp_path / "low" / f"img{i}.json").read_text())["annotations"]
        assert records and len(got) == len(records)
        assert [a["bbox"] for a in got] == [r["bbox"] for r in records]
        assert [a["area"] for a in got] == [r["area"] for r in records]
        assert [a["predicted_iou"] for a in got] == pytest.approx([r["predicted_iou"] for r in records], abs=1e-6)
    assert f"{sum(len(r) for r in want)} masks" in printed


def test_evaluate_on_sam2_gives_prompted_miou_and_mask_ar(tmp_path, sam2_file, low_policy, capsys):
    from scenes.synthetic import write_coco_dataset

    annotations = write_coco_dataset(tmp_path, num_images=2, size=64, seed=1, split="val")
    code, printed, err = run(["evaluate", "--checkpoint", sam2_file, "--images", tmp_path / "val", "--annotations",
                              annotations, "--everything", low_policy, "--format", "json", "--no-progress"], capsys)
    assert code == 0, err
    row = json.loads(printed)
    assert row["model"] == TAG and row["images"] == 2 and row["everything_images"] == 2
    assert 0.0 <= row["box_miou"] <= 1.0 and 0.0 <= row["point_miou"] <= 1.0
    assert all(0.0 <= row[k] <= 1.0 for k in ("AR@10", "AR@100", "AR@1000"))
    images = [np.array(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "val").iterdir())]
    assert row["masks_per_image"] == pytest.approx(np.mean([len(r) for r in _generator_records(sam2_file, images)]))


@pytest.mark.slow
def test_tune_everything_on_sam2_writes_a_policy_for_it(tmp_path, sam2_file, image_dir, low_policy, capsys):
    from nas.everything.commands import model_digest
    from nas.everything.policies import load_policy

    out = tmp_path / "tuned.yaml"
    code, printed, err = run(["tune-everything", "--checkpoint", sam2_file, "--images", image_dir, "--budget-ms",
                              "60000", "--trials", "2", "--reference-policy", low_policy, "--max-points-per-side", "8",
                              "--max-crop-layers", "0", "--sampler", "random", "--out", out, "--no-progress",
                              "--storage", f"sqlite:///{tmp_path / 's.db'}", "--results", tmp_path / "results",
                              "--tracking-uri", (tmp_path / "mlruns").as_uri()], capsys)
    assert code == 0, err
    assert f"study {TAG}@cpu-torch@60000ms@everything: 2 trials" in printed
    policy, meta = load_policy(out)
    assert meta["model"] == TAG and meta["model_digest"] == model_digest(load_model(str(sam2_file))[0])
    # the first baseline is the reference grid itself, so the best agrees with the reference fully
    assert meta["evaluator"] == "agreement" and meta["quality"] == 1.0 and policy.points_per_side <= 8


@pytest.mark.slow  # 35 s: calibration sweeps thresholds over a whole grid; everything on SAM 2 stays in the fast tier
def test_calibrate_everything_on_sam2_writes_a_policy(tmp_path, sam2_file, image_dir, capsys):
    from nas.everything.calibrate import masks_per_image
    from nas.everything.policies import load_policy
    from scenes.images import read_image_folder

    out = tmp_path / "calibrated.yaml"
    code, printed, err = run(["calibrate-everything", "--checkpoint", sam2_file, "--images", image_dir,
                              "--target-masks", "1", "--out", out], capsys)
    assert code == 0, err
    policy, meta = load_policy(out)
    found = meta["calibration"]
    assert meta["model"] == TAG and policy.pred_iou_thresh == policy.stability_score_thresh == found["pred_iou_thresh"]
    assert f"{found['masks_per_image']:.1f} masks per image on 2 images" in printed
    # what it found is what the dense grid keeps at that threshold (random weights may keep none at any)
    model, _ = load_model(str(sam2_file))
    with torch.no_grad():
        images, _ = read_image_folder(image_dir)
        kept = masks_per_image(Sam2Predictor(model), images, found["pred_iou_thresh"], None)
    assert kept == pytest.approx(found["masks_per_image"], abs=0.01)


# ------------------------------------------------------------------------------------------- search

class FakeLatency:
    """Latency growing with the input side squared and the kept heads and MLP shares (an analytic stand-in)."""

    def __init__(self, space):
        self.space = space

    def predict_ms(self, config) -> float:
        enc = self.space.encode(config)
        return float(1.0 + 10 * enc[0] ** 2 * (0.6 * enc[2::3] + 0.4 * enc[3::3]).sum())

    def predict_many(self, configs):
        return np.array([self.predict_ms(c) for c in configs])


def test_samplers_keep_sam2_configs_valid(space):
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(40)]
    assert np.array_equal(encode_many(space, configs), np.array([space.encode(c) for c in configs]))
    shrinks = uniform_shrinks(space)
    assert space.largest() in shrinks and any(not c.blocks[3].keep for c in shrinks)
    for a, b in zip(configs, configs[1:]):
        for child in (mutate(space, a, rng, genes=3), crossover(space, a, b, rng)):
            assert child is None or space.validate(child) == child
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    kept = set()
    for _ in range(30):
        trial = study.ask()
        config = suggest_config(trial, space)  # validated: raises on a config the space refuses
        kept.add(config.blocks[3].keep)
        study.tell(trial, [0.0, 0.0])
    assert kept == {True, False}
    latency = FakeLatency(space)
    budget = 0.7 * latency.predict_ms(space.largest())
    sampler = SurrogateSampler(space, latency, budget, seed=0, n_init=3, n_random=40, n_mutants=40, n_refine=4)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(6):  # three from the initial design, three from the GP on SAM 2's encoding
        trial = study.ask()
        config = suggest_config(trial, space)
        study.tell(trial, [float(space.encode(config)[1:].mean()), latency.predict_ms(config)])
    assert all(json.loads(t.system_attrs["samnas:proposal"]) for t in study.trials)
    assert all(latency.predict_ms(space.validate(json.loads(t.system_attrs["samnas:proposal"]))) <= budget
               for t in study.trials)


def test_search_on_sam2_micro(supernet, space, tmp_path):
    latency = FakeLatency(space)
    budget = 0.8 * latency.predict_ms(space.largest())
    evaluator = make_evaluator("fidelity", supernet, images=[_scene(2)], prompts_per_image=2)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    settings = SearchSettings(space="sam2_micro", device="cpu-torch", budget_ms=budget, trials=3, storage=storage)
    study = run_search(settings, supernet, space, evaluator, latency, progress=False)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 3
    for trial in done:
        config = space.validate(json.loads(trial.user_attrs["config"]))
        assert trial.user_attrs["predicted_ms"] == pytest.approx(latency.predict_ms(config))
        assert 0.0 <= trial.values[0] <= 1.0 and trial.user_attrs["params"] > 0
    front = pareto_front(load_points(storage, space="sam2_micro"))
    assert front and all(p.predicted_ms <= budget for p in front)


@pytest.mark.slow
def test_search_and_pareto_commands_on_sam2_micro(tmp_path, capsys):
    """``samnas search --space sam2_micro`` end to end on a small real latency predictor, then ``samnas pareto``."""
    from nas.latency import ProfileSettings, fit_device, profile_device

    root = tmp_path / "results"
    profile_device("sam2_micro", "cpu-torch", ProfileSettings(samples=12, repeats=2, warmup=1, min_seconds=0,
                                                              threads=1), root=root / "latency")
    fit_device("cpu-torch", root=root / "latency", folds=3)
    code, out, err = run(["search", "--space", "sam2_micro", "--trials", "4", "--max-images", "1", "--no-verify",
                          "--results", root], capsys)
    assert code == 0, err
    assert "RANDOMLY INITIALISED" in out and "sam2_micro@cpu-torch@" in out and "on the front" in out
    assert "what the demo's quality means" not in out  # that epilogue is about the packaged sam_micro
    code, out, err = run(["pareto", "--space", "sam2_micro", "--format", "json", "--results", root], capsys)
    assert code == 0, err
    front = json.loads(out[: out.rindex("]") + 1])
    space = SearchSpace.load("sam2_micro")
    assert front and all(space.validate(row["config"]) for row in front)
