"""The whole exported subnet without PyTorch: the prompt decoder's ONNX against the PyTorch subnet,
the OpenVINO IR of an OpenVINO device's export, and the torch-free runner (``deploy``) in a process
where importing torch fails, against the PyTorch path on the shared photos."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deploy import DeployError, Runner
from infra.fileio import new_file_mode
from nas.export.subnet import export_subnet
from supernet.model_source import load_model
from nas.export.onnx_export import DECODER_OUTPUTS, onnx_session
from search_spaces import SearchSpace
from search_spaces.config import BlockChoice, SubnetConfig
from supernet.elastic.extract import load_subnet
from supernet.elastic.build import build_sam
from supernet.modeling.predictor import SamPredictor

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("dog", "groceries", "truck")


def _config(resolution: int, drop: int | None = 3) -> SubnetConfig:
    space = SearchSpace.load("sam_micro")
    config = space.largest().replace(resolution=resolution)
    if drop is not None:
        config = config.with_block(drop, BlockChoice.skipped())
    return space.validate(config)


@pytest.fixture(scope="module")
def reference_export(tmp_path_factory) -> Path:
    """The packaged sam_micro reference, one block skipped, 192 px, exported fp32; no runtime table (timing every
    CPU runtime is most of an export's cost: :func:`test_card_lists_every_cpu_runtime_fastest_first` checks it)."""
    return export_reference(tmp_path_factory.mktemp("deploy") / "micro192", measure_runtimes=False)


def export_reference(out: Path, measure_runtimes: bool) -> Path:
    model, source = load_model(None, log=lambda message: None)
    export_subnet(model, _config(192), out, source_checkpoint=source.path, repeats=1, measure_runtimes=measure_runtimes)
    return out


@pytest.fixture(scope="module")
def random_export(tmp_path_factory) -> Path:
    """Random weights (seed 5), full depth, 128 px; no runtime table (reference_export's is checked)."""
    out = tmp_path_factory.mktemp("deploy") / "random128"
    export_subnet(build_sam("micro", seed=5).eval(), _config(128, drop=None), out, source_checkpoint=None, repeats=1,
                  measure_runtimes=False)
    return out


def photo(shared_data: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(shared_data / "images" / f"{name}.jpg").convert("RGB"))


def synthetic_photo(seed: int = 0, hw=(150, 230)) -> np.ndarray:
    """Smooth blobs, so that masks have structure even without the shared photos."""
    yy, xx = np.mgrid[: hw[0], : hw[1]] / max(hw)
    rng = np.random.default_rng(seed)
    img = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)[..., None] * rng.random(3) * 255
              for cx, cy in rng.random((4, 2)))
    return np.clip(img, 0, 255).astype(np.uint8)


def prompt_cases(h: int, w: int) -> dict[str, dict]:
    """SamPredictor.predict keyword arguments in original pixels: points, box, both."""
    points, labels = np.array([[w / 2, h / 2], [w / 5, h / 6]]), np.array([1, 0])
    box = np.array([w / 4, h / 4, 3 * w / 4, 3 * h / 4])
    return {"points": dict(point_coords=points, point_labels=labels),
            "box": dict(box=box),
            "points+box": dict(point_coords=points[:1], point_labels=labels[:1], box=box)}


def contract_feed(predictor: SamPredictor, case: dict, mask_input=None) -> dict:
    """SAM's ONNX decoder inputs for one prompt set, written out here as SAM's own notebook does."""
    orig = predictor.original_size
    coords = [predictor.transform.apply_coords(case["point_coords"], orig)] if "point_coords" in case else []
    labels = [case["point_labels"]] if "point_coords" in case else []
    if "box" in case:
        coords.append(predictor.transform.apply_boxes(case["box"], orig).reshape(2, 2))
        labels.append([2, 3])
    else:
        coords.append([[0.0, 0.0]])
        labels.append([-1])
    emb = predictor.get_image_embedding().numpy()
    g = emb.shape[-1]
    return {"image_embeddings": emb,
            "point_coords": np.concatenate(coords)[None].astype(np.float32),
            "point_labels": np.concatenate(labels)[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, 4 * g, 4 * g), np.float32) if mask_input is None
            else mask_input.reshape(1, 1, 4 * g, 4 * g).astype(np.float32),
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
            "orig_im_size": np.array(orig, np.float32)}


def assert_decoder_matches(folder: Path, image: np.ndarray) -> None:
    sub = load_subnet(folder).eval()
    predictor = SamPredictor(sub)
    predictor.set_image(image)
    sess = onnx_session(folder / "prompt_decoder.onnx")
    for name, case in prompt_cases(*image.shape[:2]).items():
        ref_masks, ref_iou, ref_low = predictor.predict(**case)
        masks, iou, low = sess.run(list(DECODER_OUTPUTS), contract_feed(predictor, case))
        assert masks.shape == (1, 4) + image.shape[:2], name
        assert ((masks[0, 1:] > 0) == ref_masks).mean() >= 0.999, name
        assert np.abs(iou[0, 1:] - ref_iou).max() <= 1e-3, name
        # the single-mask output, with the best multimask output's logits as the mask input
        prev = ref_low[int(np.argmax(ref_iou))][None]
        ref_masks, ref_iou, _ = predictor.predict(**case, mask_input=prev, multimask_output=False)
        masks, iou, _ = sess.run(list(DECODER_OUTPUTS), contract_feed(predictor, case, prev))
        assert ((masks[0, :1] > 0) == ref_masks).mean() >= 0.999, name + " with mask input"
        assert np.abs(iou[0, :1] - ref_iou).max() <= 1e-3, name + " with mask input"
        assert ref_masks.any() or name == "points"  # the comparison is over real masks


def test_decoder_onnx_matches_pytorch_reference_weights(reference_export):
    assert_decoder_matches(reference_export, synthetic_photo())


def test_decoder_onnx_matches_pytorch_random_weights(random_export):
    assert_decoder_matches(random_export, synthetic_photo(1, (97, 61)))


def test_card_states_real_shapes_and_files(reference_export):
    card = json.loads((reference_export / "card.json").read_text())
    assert card["onnx_input"]["output_shape"] == [1, 64, 12, 12]
    assert card["onnx_decoder"]["inputs"]["image_embeddings"] == [1, 64, 12, 12]
    assert card["onnx_decoder"]["inputs"]["mask_input"] == [1, 1, 48, 48]
    assert card["onnx_decoder"]["outputs"]["low_res_masks"] == ["B", 4, 48, 48]
    on_disk = sorted(p.name for p in reference_export.iterdir())
    assert sorted(card["files"]) == on_disk == ["card.json", "card.md", "image_encoder.onnx", "prompt_decoder.onnx",
                                                "subnet.json", "subnet.pt"]
    assert card["openvino"] is None and card["decoder_check"]["mask_agreement"] >= 0.999
    md = (reference_export / "card.md").read_text()
    assert "Output `embeddings` `(1, 64, 12, 12)`" in md and "`low_res_masks` `(B, 4, 48, 48)`" in md


@pytest.mark.slow
def test_card_lists_every_cpu_runtime_fastest_first(tmp_path):
    out = export_reference(tmp_path / "micro192", measure_runtimes=True)
    card = json.loads((out / "card.json").read_text())
    md = (out / "card.md").read_text()
    runtimes = card["runtimes"]  # the encoder on every CPU runtime of this machine, fastest first, and named
    labels = [r["runtime"] for r in runtimes["rows"]]
    assert {"cpu-torch", "cpu-onnxruntime"} <= set(labels) and runtimes["fastest"] == labels[0]
    medians = [r["median_ms"] for r in runtimes["rows"]]
    assert medians == sorted(medians) and f"fastest: **{labels[0]}**" in md


@pytest.mark.slow
def test_openvino_device_export_writes_ir_with_its_precision(tmp_path):
    out = tmp_path / "ov"
    card = export_subnet(build_sam("micro", seed=2).eval(), _config(128), out, source_checkpoint=None, repeats=1,
                         trial_info={"device": "cpu-openvino-bf16"})
    ov_entry = card["openvino"]
    assert ov_entry["precision"] == "bf16" and ov_entry["compile_config"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert sorted(p.name for p in out.iterdir()) == sorted(card["files"])  # no temporary left behind
    for stem in ("image_encoder", "prompt_decoder"):
        assert (out / f"{stem}.xml").stat().st_mode & 0o777 == new_file_mode() and f"{stem}.bin" in card["files"]
    assert card["measured_ms"]["openvino"] > 0
    runtimes = card["runtimes"]  # every CPU runtime of this machine, fastest first, and named
    labels = [r["runtime"] for r in runtimes["rows"]]
    assert {"cpu-torch", "cpu-onnxruntime", "cpu-openvino"} <= set(labels) and runtimes["fastest"] == labels[0]
    medians = [r["median_ms"] for r in runtimes["rows"]]
    assert medians == sorted(medians) and f"fastest: **{labels[0]}**" in (out / "card.md").read_text()
    # the IR run in fp32 gives what ONNX Runtime gives on the ONNX files
    image = synthetic_photo(2)
    ort_runner, ov_runner = (Runner.from_folder(out, runtime=r, precision=p) for r, p in
                             (("onnxruntime", None), ("openvino", "fp32")))
    assert Runner.from_folder(out).runtime == "openvino" and ov_runner.encoder.path.suffix == ".xml"
    a, b = (r.predict(image, points=[[100, 70]], labels=[1]) for r in (ort_runner, ov_runner))
    assert (a[0] == b[0]).mean() >= 0.999 and np.abs(a[1] - b[1]).max() <= 1e-3


def test_an_older_export_gets_the_reexport_command(reference_export, tmp_path):
    old = tmp_path / "old_export"
    old.mkdir()
    card = json.loads((reference_export / "card.json").read_text())
    for key in ("onnx_decoder", "files", "openvino", "decoder_check"):
        card.pop(key)
    (old / "card.json").write_text(json.dumps(card))
    (old / "image_encoder.onnx").write_bytes((reference_export / "image_encoder.onnx").read_bytes())
    with pytest.raises(DeployError) as err:
        Runner.from_folder(old)
    message = str(err.value)
    assert "\n" not in message and "older samnas" in message
    assert f"samnas export --config {old / 'card.json'} --checkpoint {card['source_checkpoint']} --out {old}" in message
    with pytest.raises(DeployError, match="no card.json"):
        Runner.from_folder(tmp_path)


def test_runner_rejects_bad_prompts_and_images(reference_export):
    runner = Runner.from_folder(reference_export, runtime="onnxruntime")
    with pytest.raises(DeployError, match="2 points but 1 labels"):
        runner.predict(synthetic_photo(), points=[[1, 2], [3, 4]], labels=[1])
    with pytest.raises(DeployError, match="uint8"):
        runner.predict(np.zeros((10, 10)), points=[[1, 2]], labels=[1])
    with pytest.raises(DeployError, match="runtime 'tensorrt'"):
        Runner.from_folder(reference_export, runtime="tensorrt")


# Runs the runner where `import torch` fails: a finder at the front of sys.meta_path refuses torch
# before anything else is imported. Writes each result to an .npz file in argv[2]; policy "-": prompts only.
NO_TORCH_SCRIPT = r'''
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, _NoTorch())
import json
from pathlib import Path
import numpy as np
from deploy import Runner
folder, out, runtime, images, policy = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:-1], sys.argv[-1]
runner = Runner.from_folder(folder, runtime=runtime, precision="fp32" if runtime == "openvino" else None, threads=1)
cases = json.loads(sys.stdin.read())
for image in images:
    stem = Path(image).stem
    for name, case in cases[stem].items():
        masks, iou, low = runner.predict(image, **case)
        np.savez(out / f"{stem}-{name}.npz", masks=masks, iou=iou)
    if policy == "-":  # prompts only
        continue
    records = runner.everything(image, policy)
    np.savez(out / f"{stem}-everything.npz", masks=np.array([r["segmentation"] for r in records]),
             iou=np.array([r["predicted_iou"] for r in records]), bbox=np.array([r["bbox"] for r in records]))
assert "torch" not in sys.modules
'''


def run_without_torch(folder: Path, out: Path, runtime: str, images: list[Path], policy: Path, cases: dict):
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(folder), str(out), runtime,
                           *map(str, images), str(policy)], input=json.dumps(cases), capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


GRID_POLICY = {"kind": "grid", "points_per_side": 6, "points_per_batch": 16, "pred_iou_thresh": 0.2,
               "stability_score_thresh": 0.2}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runner_without_torch_matches_pytorch_on_photos(reference_export, shared_data, tmp_path, runtime):
    from nas.everything.generator import MaskGenerator
    from nas.everything.policies import Policy, save_policy

    images = [shared_data / "images" / f"{name}.jpg" for name in PHOTOS]
    if not all(p.is_file() for p in images):
        pytest.skip(f"the photos {PHOTOS} are not all in {shared_data / 'images'}")
    policy = save_policy(Policy(**GRID_POLICY), tmp_path / "grid.yaml")
    cases = {}
    for path in images:
        h, w = photo(shared_data, path.stem).shape[:2]
        cases[path.stem] = {name: {"points": c["point_coords"].tolist() if "point_coords" in c else None,
                                   "labels": c["point_labels"].tolist() if "point_coords" in c else None,
                                   "boxes": c["box"].tolist() if "box" in c else None}
                            for name, c in prompt_cases(h, w).items()}
    run_without_torch(reference_export, tmp_path / "out", runtime, images, policy, cases)

    sub = load_subnet(reference_export).eval()
    for path in images:
        image = photo(shared_data, path.stem)
        predictor = SamPredictor(sub)
        predictor.set_image(image)
        for name, case in prompt_cases(*image.shape[:2]).items():
            got = np.load(tmp_path / "out" / f"{path.stem}-{name}.npz")
            ref_masks, ref_iou, _ = predictor.predict(**case)
            assert got["masks"].shape == ref_masks.shape
            assert (got["masks"] == ref_masks).mean() >= 0.999, (path.stem, name)
            assert np.abs(got["iou"] - ref_iou).max() <= 1e-3, (path.stem, name)
        with torch.no_grad():
            ref = MaskGenerator(SamPredictor(sub), Policy(**GRID_POLICY)).generate(image)
        got = np.load(tmp_path / "out" / f"{path.stem}-everything.npz")
        assert ref and len(got["masks"]) == len(ref), path.stem
        assert (got["masks"] == np.stack([r["segmentation"] for r in ref])).mean() >= 0.999, path.stem
        assert np.abs(got["iou"] - np.array([r["predicted_iou"] for r in ref])).max() <= 1e-3
        assert np.abs(got["bbox"] - np.array([r["bbox"] for r in ref])).max() <= 2


@pytest.mark.slow
def test_runner_everything_with_crops_matches_pytorch(reference_export):
    from nas.everything.generator import MaskGenerator
    from nas.everything.policies import Policy

    policy = {**GRID_POLICY, "crop_n_layers": 1, "pred_iou_thresh": 0.1, "stability_score_thresh": 0.1}
    image = synthetic_photo(3, (180, 260))
    got = Runner.from_folder(reference_export, runtime="onnxruntime").everything(image, policy)
    with torch.no_grad():
        ref = MaskGenerator(SamPredictor(load_subnet(reference_export).eval()), Policy(**policy)).generate(image)
    assert ref and len(got) == len(ref) and {tuple(r["crop_box"]) for r in ref} == {tuple(r["crop_box"]) for r in got}
    assert (np.stack([r["segmentation"] for r in got]) == np.stack([r["segmentation"] for r in ref])).mean() >= 0.999
    assert [r["crop_box"] for r in got] == [r["crop_box"] for r in ref]


def test_runner_policy_defaults_and_errors_follow_the_policy_file(tmp_path):
    from deploy.everything import DEFAULTS, read_policy
    from nas.everything.policies import Policy, save_policy

    assert DEFAULTS == Policy().to_dict()
    path = save_policy(Policy(points_per_side=4), tmp_path / "p.yaml")
    assert read_policy(path)["points_per_side"] == 4 and read_policy({"points_per_side": 5})["points_per_side"] == 5
    with pytest.raises(DeployError, match="kind 'adaptive'"):
        read_policy(save_policy(Policy(kind="adaptive"), tmp_path / "a.yaml"))
    with pytest.raises(DeployError, match="unknown field 'points'"):
        read_policy({"points": 3})
    with pytest.raises(DeployError, match="expected 'samnas-everything-policy/1'"):
        read_policy({"format": "other/1", "policy": {}})
