"""Segment-everything tuning: AR and agreement metrics, a tiny study via the CLI, policy files, errors."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import yaml

from nas.everything import commands
from nas.everything.policies import Policy, load_policy, save_policy
from nas.everything.tune import agreement, mask_ar
from supernet.errors import ConfigError, UserError
from supernet.synthetic import write_coco_dataset


def run_cli(argv: list[str]) -> int:
    """Our commands through a parser built with ``register`` (cli.py lists the module separately)."""
    parser = argparse.ArgumentParser(prog="samnas")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    ann = write_coco_dataset(root, 2, size=128, seed=5, split="val")
    (root / "val" / "zz_broken.png").write_bytes(b"not a png")  # unreadable: reported and skipped
    return root / "val", ann


def test_ar_of_ground_truth_is_one(dataset):
    _, ann = dataset
    gt = json.loads(ann.read_text())
    preds = {}
    for a in gt["annotations"]:
        preds.setdefault(a["image_id"], []).append({"segmentation": a["segmentation"], "predicted_iou": 1.0})
    res = mask_ar(gt, preds)
    assert res["AR@10"] == res["AR@100"] == res["AR@1000"] == res["quality"] == 1.0
    half = {i: p[:1] for i, p in preds.items()}  # one mask per image: recall drops
    assert mask_ar(gt, half)["AR@100"] < 1.0
    assert mask_ar(gt, {i: [] for i in preds})["quality"] == 0.0


def test_agreement_metric():
    a = np.zeros((3, 20, 20), dtype=bool)
    a[0, :10, :10] = a[1, 10:, 10:] = a[2, :5, 15:] = True
    from nas.everything.masks import encode_rles

    ref = encode_rles(a)
    assert agreement(ref, ref) == {"matched": 1.0, "mean_iou": 1.0, "quality": 1.0}
    shrunk = a.copy()
    shrunk[0, :, 8:] = False  # IoU 0.8
    res = agreement(ref, encode_rles(shrunk[:2]))
    assert res["matched"] == pytest.approx(2 / 3) and res["mean_iou"] == pytest.approx(0.9)
    assert agreement([], [])["quality"] == 1.0 and agreement(ref, [])["quality"] == 0.0


def test_tune_then_everything_with_the_policy(dataset, tmp_path, capsys):
    images, ann = dataset
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    policy_path = tmp_path / "policy.yaml"
    assert run_cli(["tune-everything", "--images", str(images), "--annotations", str(ann), "--budget-ms", "5000",
                    "--trials", "3", "--storage", storage, "--out", str(policy_path), "--max-points-per-side", "8",
                    "--max-crop-layers", "0", "--sampler", "random"]) == 0
    out = capsys.readouterr()
    assert "zz_broken.png" in out.err and "zz_broken.png" in out.out
    policy, meta = load_policy(policy_path)
    assert meta["study"].endswith("@everything") and meta["evaluator"] == "mask_ar"
    assert set(meta["metrics"]) >= {"AR@10", "AR@100", "AR@1000"} and 0.0 <= meta["quality"] <= 1.0
    assert policy.points_per_side <= 8

    # the front is stored and queryable
    assert run_cli(["everything-front", "--storage", storage, "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(r["study"] == meta["study"] for r in front)

    out_dir = tmp_path / "masks"
    assert run_cli(["everything", "--policy", str(policy_path), "--images", str(images), "--out", str(out_dir)]) == 0
    capsys.readouterr()
    files = sorted(p.name for p in out_dir.glob("val_*.json"))
    assert files == ["val_00000.json", "val_00001.json"]
    doc = json.loads((out_dir / files[0]).read_text())
    assert doc["height"] == 128 and all("counts" in a["segmentation"] for a in doc["annotations"])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [s["image"] for s in summary["skipped"]][0].endswith("zz_broken.png")

    # resuming the study to more trials adds only the missing ones
    assert run_cli(["tune-everything", "--images", str(images), "--budget-ms", "5000", "--trials", "4",
                    "--storage", storage, "--out", str(policy_path), "--max-points-per-side", "8",
                    "--max-crop-layers", "0", "--sampler", "random", "--annotations", str(ann)]) == 0
    assert "4 trials" in capsys.readouterr().out


def test_agreement_tuning_reference_scores_itself_one(dataset):
    from nas.everything.tune import PolicyEvaluator, read_images
    from supernet.build import build_sam
    from supernet.predictor import SamPredictor

    images, _ = read_images(dataset[0], log=lambda m: None)
    ref = Policy(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ev = PolicyEvaluator(SamPredictor(build_sam("micro", seed=0).eval()), images, reference_policy=ref)
    assert sum(len(r) for r in ev.reference) > 0
    same = ev.evaluate(ref)
    assert same.quality == 1.0 and same.time_ms > 0
    other = ev.evaluate(Policy(points_per_side=6, pred_iou_thresh=0.99, stability_score_thresh=0.0))
    assert other.quality < 1.0
    calls = ev.cache.misses
    ev.evaluate(Policy(points_per_side=6, pred_iou_thresh=0.6, stability_score_thresh=0.5))
    assert ev.cache.misses == calls  # same points: everything from the cache


@pytest.mark.parametrize("content,needle", [
    ("policy: [unclosed", "invalid YAML"),
    ("format: something-else\npolicy: {}\n", "format 'something-else'"),
    ("format: samnas-everything-policy/1\npolicy: {kind: magic}\n", "policy.kind"),
    ("format: samnas-everything-policy/1\npolicy: {box_nms_thresh: 3}\n", "policy.box_nms_thresh"),
])
def test_bad_policy_file_is_a_one_line_error(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        run_cli(["everything", "--policy", str(path), "--images", str(tmp_path), "--out", str(tmp_path / "o")])
    msg = str(err.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_policy_round_trip_and_missing_file(tmp_path):
    p = Policy(kind="adaptive", points_per_side=12, stop_coverage=0.75)
    save_policy(p, tmp_path / "p.yaml", {"note": "x"})
    assert load_policy(tmp_path / "p.yaml") == (p, {"note": "x"})
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["format"] == "samnas-everything-policy/1"
    with pytest.raises(UserError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="--checkpoint or --subnet"):
        commands.load_model("a.pt", "b/")
