"""Segment-everything tuning: AR and agreement metrics, a tiny study via the CLI, policy files, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.everything import commands
from nas.everything.policies import Policy, load_policy, save_policy
from nas.everything.quality import agreement, mask_ar
from infra.errors import ConfigError, UserError
from scenes.synthetic import write_coco_dataset
from cli_parse import run_with


def run_cli(argv: list[str]) -> int:
    """Our commands through a parser built with ``register`` (cli.py lists the module separately)."""
    return run_with(commands, argv)


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


def test_agreement_metric_known_answers():
    from nas.everything.masks import encode_rles

    a = np.zeros((3, 20, 20), dtype=bool)
    a[0, :10, :10] = a[1, 10:, 10:] = a[2, :5, 15:] = True
    ref = encode_rles(a)
    same = agreement([ref], [ref])
    assert (same["recall"], same["mean_iou"], same["quality"], same["precision"]) == (1.0, 1.0, 1.0, 1.0)
    shrunk = a.copy()
    shrunk[0, :, 8:] = False  # IoU 80/100 = 0.8
    res = agreement([ref], [encode_rles(shrunk[:2])])
    assert res["recall"] == pytest.approx(2 / 3) and res["mean_iou"] == pytest.approx(0.9)
    assert res["quality"] == pytest.approx((0.8 + 1.0) / 3) and res["precision"] == 1.0
    # pooled over images: an image whose reference is empty adds candidates, not reference masks
    off = np.zeros((1, 20, 20), dtype=bool)
    off[0, 15:, :5] = True  # overlaps nothing
    res = agreement([ref, []], [encode_rles(np.concatenate([a[:1], off])), encode_rles(a[1:2])])
    assert res["recall"] == pytest.approx(1 / 3) and res["quality"] == pytest.approx(1 / 3)
    assert res["precision"] == pytest.approx(1 / 3) and res["matched_masks"] == 1
    assert res["reference_masks"] == 3 and res["candidate_masks"] == 3
    below = a.copy()
    below[0, :, 4:] = False  # IoU 0.4 < 0.5: not a match
    assert agreement([ref[:1]], [encode_rles(below[:1])])["quality"] == 0.0
    assert agreement([ref], [[]])["quality"] == 0.0


def test_empty_reference_is_an_error_never_quality_one(dataset):
    from nas.everything.evaluator import PolicyEvaluator
    from scenes.images import read_image_folder
    from supernet.elastic.build import build_sam
    from supernet.modeling.predictor import SamPredictor

    with pytest.raises(UserError, match="found no mask on any of the 2 image"):
        agreement([[], []], [[], []])
    images, _ = read_image_folder(dataset[0])
    never = Policy(points_per_side=4, pred_iou_thresh=1.0, stability_score_thresh=1.0)
    with pytest.raises(UserError) as err:
        PolicyEvaluator(SamPredictor(build_sam("micro", seed=0).eval()), images, reference_policy=never)
    msg = str(err.value)
    assert "found no mask" in msg and "pred_iou_thresh 1" in msg and "\n" not in msg


@pytest.mark.slow
def test_tune_then_everything_with_the_policy(dataset, tmp_path, capsys):
    images, ann = dataset
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    policy_path = tmp_path / "policy.yaml"
    tracking = (tmp_path / "mlruns").as_uri()
    assert run_cli(["tune-everything", "--images", str(images), "--annotations", str(ann), "--budget-ms", "60000",
                    "--trials", "3", "--storage", storage, "--out", str(policy_path), "--max-points-per-side", "8",
                    "--max-crop-layers", "0", "--sampler", "random", "--tracking-uri", tracking]) == 0
    out = capsys.readouterr()
    assert "zz_broken.png" in out.err and "zz_broken.png" in out.out
    assert "[I " not in out.err, "Optuna's INFO lines are silenced"
    assert "tuning:" in out.err and "3/3" in out.err, "a progress bar over the trials"
    policy, meta = load_policy(policy_path)
    assert meta["study"].endswith("@everything") and meta["evaluator"] == "mask_ar"
    assert meta["model"] == commands.load_model(None, None)[1].tag and len(meta["model_digest"]) == 16
    assert set(meta["metrics"]) >= {"AR@10", "AR@100", "AR@1000"} and 0.0 <= meta["quality"] <= 1.0
    assert policy.points_per_side <= 8

    # the study driver (nas.studies.driver) records study attributes, trial records and one MLflow run with a child per trial
    import mlflow
    import optuna

    from nas.studies.record import TrialRecord

    study = optuna.load_study(study_name=meta["study"], storage=storage)
    assert study.user_attrs["model"] == meta["model"] and study.user_attrs["evaluator"] == "mask_ar"
    assert study.user_attrs["budget_ms"] == 60000 and study.metric_names == ["quality", "predicted_ms"]
    records = [TrialRecord.read(t) for t in study.trials]
    assert all(r.host and r.pid and r.config["kind"] in ("grid", "hierarchical", "adaptive") for r in records)
    assert records[0].config["kind"] == "grid" and records[1].config["kind"] == "hierarchical"  # the baselines
    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs([mlflow.get_experiment_by_name(meta["study"]).experiment_id], output_format="list")
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3 and all("metric.AR_100" in r.data.metrics for r in children)

    # the front is stored and queryable
    assert run_cli(["everything-front", "--storage", storage, "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front and all(r["study"] == meta["study"] for r in front)

    out_dir = tmp_path / "masks"
    assert run_cli(["everything", "--policy", str(policy_path), "--images", str(images), "--out", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert "everything:" in err and "2/2" in err and "image/s" in err, "a progress bar over the images"
    files = sorted(p.name for p in out_dir.glob("val_*.json"))
    assert files == ["val_00000.json", "val_00001.json"]
    doc = json.loads((out_dir / files[0]).read_text())
    assert doc["height"] == 128 and all("counts" in a["segmentation"] for a in doc["annotations"])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [s["image"] for s in summary["skipped"]][0].endswith("zz_broken.png")

    # resuming the study to more trials adds only the missing ones
    assert run_cli(["tune-everything", "--images", str(images), "--budget-ms", "5000", "--trials", "4",
                    "--storage", storage, "--out", str(policy_path), "--max-points-per-side", "8",
                    "--max-crop-layers", "0", "--sampler", "random", "--annotations", str(ann),
                    "--tracking-uri", tracking]) == 0
    assert "4 trials" in capsys.readouterr().out


def test_agreement_tuning_reference_scores_itself_one(dataset):
    from nas.everything.evaluator import PolicyEvaluator
    from scenes.images import read_image_folder
    from supernet.elastic.build import build_sam
    from supernet.modeling.predictor import SamPredictor

    images, _ = read_image_folder(dataset[0])
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


LOW = "format: samnas-everything-policy/1\npolicy: {points_per_side: 8, pred_iou_thresh: 0.0, stability_score_thresh: 0.0}\n"


def test_single_json_writes_annotation_ids_and_scores_with_cocoeval(dataset, tmp_path, capsys):
    from pycocotools.cocoeval import COCOeval

    from scenes.annotations import load_coco

    images, ann = dataset
    policy = tmp_path / "low.yaml"
    policy.write_text(LOW)
    out = tmp_path / "dets"
    assert run_cli(["everything", "--policy", str(policy), "--images", str(images), "--out", str(out),
                    "--single-json", "--annotations", str(ann), "--no-progress"]) == 0
    dets = json.loads((out / "results.json").read_text())
    gt = load_coco(ann)
    by_name = {im["file_name"]: im["id"] for im in gt.dataset["images"]}
    assert dets and all(d["image_id"] == by_name[d["file_name"]] for d in dets)
    assert {d["image_id"] for d in dets} <= set(gt.getImgIds())
    gt.dataset["categories"] = [{"id": 1, "name": "object"}]
    for a in gt.dataset["annotations"]:
        a["category_id"] = 1
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(dets), iouType="segm")
    ev.params.useCats = 0
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.0 <= ev.stats[8] <= 1.0 and ev.eval["recall"].max() > 0  # some ground truth is found
    # without annotations: the file names, never 1..N
    assert run_cli(["everything", "--policy", str(policy), "--images", str(images), "--out", str(out),
                    "--single-json", "--no-progress"]) == 0
    assert {d["image_id"] for d in json.loads((out / "results.json").read_text())} <= \
        {"val_00000.png", "val_00001.png"}
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 9, "file_name": "x.png", "height": 1, "width": 1}],
                                 "annotations": []}))
    with pytest.raises(UserError) as err:
        run_cli(["everything", "--policy", str(policy), "--images", str(images), "--out", str(out),
                 "--single-json", "--annotations", str(other)])
    assert str(other) in str(err.value) and "mismatched image ids" in str(err.value)


def test_zero_masks_warns_once_naming_thresholds(dataset, tmp_path, capsys):
    images, _ = dataset
    never = tmp_path / "never.yaml"
    never.write_text("format: samnas-everything-policy/1\npolicy: {points_per_side: 4, pred_iou_thresh: 0.999, "
                     "stability_score_thresh: 0.99}\n")
    assert run_cli(["everything", "--policy", str(never), "--images", str(images), "--out", str(tmp_path / "o"),
                    "--no-progress"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "0 masks" in line]
    assert len(warnings) == 1, err
    assert "pred_iou_thresh 0.999" in warnings[0] and "stability_score_thresh 0.99" in warnings[0]
    assert "samnas tune-everything" in warnings[0]


def test_policy_for_another_model_is_one_line_error(dataset, tmp_path):
    images, _ = dataset
    path = tmp_path / "foreign.yaml"
    save_policy(Policy(points_per_side=4), path, {"model": "sam_vit_h-x", "model_digest": "0123456789abcdef"})
    with pytest.raises(UserError) as err:
        run_cli(["everything", "--policy", str(path), "--images", str(images), "--out", str(tmp_path / "o")])
    msg = str(err.value)
    assert str(path) in msg and "sam_vit_h-x" in msg and "tune-everything" in msg and "\n" not in msg


@pytest.mark.slow
def test_tune_without_labels_on_some_images_scored_on_others(dataset, tmp_path, capsys):
    images, _ = dataset
    root = images.parent
    held = write_coco_dataset(root, 1, size=128, seed=6, split="held")
    ref = tmp_path / "ref.yaml"
    ref.write_text(LOW)
    policy_path = tmp_path / "p.yaml"
    args = ["tune-everything", "--images", str(images), "--budget-ms", "5000", "--trials", "2",
            "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(policy_path), "--max-points-per-side", "8",
            "--max-crop-layers", "0", "--sampler", "random"]
    # a reference that finds nothing: an error saying why, before any trial
    with pytest.raises(UserError, match="found no mask"):
        run_cli(args + ["--reference-policy", str(_never(tmp_path))])
    assert run_cli(args + ["--reference-policy", str(ref), "--eval-images", str(root / "held")]) == 0
    out = capsys.readouterr().out
    assert "(agreement)" in out and "on 1 other images" in out
    _, meta = load_policy(policy_path)
    assert meta["evaluator"] == "agreement" and set(meta["metrics"]) >= {"recall", "mean_iou", "quality"}
    assert meta["held_out"]["images"] == 1 and 0.0 <= meta["held_out"]["quality"] <= 1.0
    assert held.exists()


def _never(tmp_path):
    path = tmp_path / "never.yaml"
    path.write_text("format: samnas-everything-policy/1\npolicy: {points_per_side: 4, pred_iou_thresh: 1.0, "
                    "stability_score_thresh: 1.0}\n")
    return path


def test_calibration_finds_the_largest_threshold_with_target_masks(tmp_path):
    from nas.everything.calibrate import (calibrate_thresholds, masks_per_image, model_defaults,
                                          read_card_defaults, write_card_defaults)
    from nas.everything.generator import DecoderCache
    from scenes.images import read_image_folder
    from supernet.checkpoint import load_sam
    from supernet.modeling.predictor import SamPredictor
    from supernet.reference import reference_checkpoint
    from scenes.synthetic import write_coco_dataset as write

    write(tmp_path, 2, size=96, seed=7, split="cal")
    images, _ = read_image_folder(tmp_path / "cal")
    ckpt = reference_checkpoint("micro")
    predictor = SamPredictor(load_sam(ckpt).eval()) if ckpt else SamPredictor(build_sam_seeded())
    found = calibrate_thresholds(predictor, images, target_masks=3, points_per_side=8)
    t = found["pred_iou_thresh"]
    assert t == found["stability_score_thresh"] and 0.05 <= t <= 0.95
    cache = DecoderCache()
    at_t = masks_per_image(predictor, images, t, cache, 8)
    assert at_t == found["masks_per_image"]
    if at_t >= 3 and t < 0.95:
        assert masks_per_image(predictor, images, round(t + 0.01, 2), cache, 8) < 3
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"model": "x"}))
    write_card_defaults(card, found)
    assert json.loads(card.read_text())["model"] == "x" and read_card_defaults(card)["pred_iou_thresh"] == t
    assert model_defaults("sam_micro", card)[0] == {"pred_iou_thresh": t, "stability_score_thresh": t}
    assert model_defaults("sam_vit_b-mine")[0] == {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
    assert model_defaults("sam_micro", tmp_path / "none.json")[0]["pred_iou_thresh"] == 0.88
    card.write_text(json.dumps({"everything_defaults": {"pred_iou_thresh": 3}}))
    with pytest.raises(UserError, match="card.json"):
        read_card_defaults(card)


def build_sam_seeded():
    from supernet.elastic.build import build_sam

    return build_sam("micro", seed=0).eval()


def test_threshold_ranges_reach_the_models_defaults():
    """A model calibrated near 0.2 (the packaged reference) gets threshold ranges that reach below its
    defaults; the usual ranges would only hold policies stricter than its own dense grid."""
    import optuna

    from nas.everything.policy_space import THRESHOLD_MARGIN, THRESHOLD_RANGES, suggest_policy, threshold_ranges

    assert threshold_ranges() == THRESHOLD_RANGES
    low = threshold_ranges({"pred_iou_thresh": 0.22, "stability_score_thresh": 0.1})
    assert low["pred_iou_thresh"] == pytest.approx((0.22 - THRESHOLD_MARGIN, 0.95))
    assert low["stability_score_thresh"] == (0.0, 0.98)  # clipped at 0
    assert low["confidence_thresh"] == low["pred_iou_thresh"]  # a predicted IoU as well
    high = threshold_ranges({"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95})
    assert high["pred_iou_thresh"] == (0.3, 0.99) and high["stability_score_thresh"] == (0.5, 0.99)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [suggest_policy(study.ask(), defaults={"pred_iou_thresh": 0.22, "stability_score_thresh": 0.22})
             for _ in range(40)]
    assert min(p.pred_iou_thresh for p in drawn) < 0.22 and min(p.stability_score_thresh for p in drawn) < 0.22
    assert all(p.pred_iou_thresh >= 0.22 - THRESHOLD_MARGIN - 1e-9 for p in drawn)


@pytest.mark.slow
def test_speedup_sets_the_budget_from_the_reference_grid(dataset, tmp_path, monkeypatch, capsys):
    """--speedup X: the budget is the reference policy's time on the tuning images / X, in the
    same time mode as the trials; the policy goes to results/everything/<study>.yaml by default."""
    from nas.everything.tune import TuneSettings, tune_everything
    from scenes.images import read_image_folder
    from supernet.elastic.build import build_sam
    from supernet.modeling.predictor import SamPredictor

    images, _ = read_image_folder(dataset[0])
    ref = Policy(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    settings = TuneSettings(model_tag="sam_micro-test", device="cpu-torch", budget_ms=None, speedup=2.0, trials=2,
                            storage=f"sqlite:///{tmp_path / 's.db'}", out_dir=tmp_path / "everything",
                            max_points_per_side=6, max_crop_layers=0, sampler="random", reference_policy=ref,
                            tracking_uri=(tmp_path / "mlruns").as_uri())
    res = tune_everything(SamPredictor(build_sam("micro", seed=0).eval()), images, settings, log=lambda m: None)
    best = res["best"]
    assert best["reference_ms"] > 0 and best["budget_ms"] == round(best["reference_ms"] / 2.0, 1)
    assert best["budget_source"].endswith("/ 2")
    assert res["out"] == str(tmp_path / "everything" / f"{res['study']}.yaml") and Path(res["out"]).is_file()
    with pytest.raises(UserError, match="--budget-ms.*--speedup"):
        tune_everything(None, images, TuneSettings(model_tag="m", device="cpu-torch", budget_ms=None,
                                                   reference_policy=ref, storage=f"sqlite:///{tmp_path / 't.db'}"))
    for argv, expected in ((["--speedup", "4", "--budget-ms", "100"], "not allowed with"),
                           ([], "one of the arguments --budget-ms --speedup is required")):
        with pytest.raises(SystemExit):
            run_cli(["tune-everything", "--images", str(dataset[0]), *argv])
        assert expected in capsys.readouterr().err


def test_the_densest_grid_expected_to_fit_the_budget_is_a_baseline_trial():
    from nas.everything.tune import _baseline_trials, fitting_grid_side

    # 100 ms encoder + 924 ms for 32x32 prompts: 12x12 (181.2 ms) fits 300 ms, 16x16 (331 ms) does not
    assert fitting_grid_side(1024.0, 32, 100.0, 300.0, 32) == 12
    assert fitting_grid_side(1024.0, 32, 100.0, 331.0, 32) == 16
    assert fitting_grid_side(1024.0, 32, 100.0, 90.0, 32) is None  # below the encoder's own time
    assert fitting_grid_side(1024.0, 32, 100.0, 1e6, 24) == 24  # never above the densest grid allowed
    defaults = {"pred_iou_thresh": 0.3, "stability_score_thresh": 0.4}
    trials = _baseline_trials(defaults, 32, 5, fitting_side=12)
    assert [(t["kind"], t["points_per_side"]) for t in trials] == [("grid", 32), ("hierarchical", 32), ("grid", 12)]
    assert trials[2]["pred_iou_thresh"] == 0.3 and trials[2]["crop_n_layers"] == 0
    assert len(_baseline_trials(defaults, 32, 5, fitting_side=32)) == 2  # the dense grid itself fits
    assert len(_baseline_trials(defaults, 32, 2, fitting_side=12)) == 2  # no more than the trials asked for
