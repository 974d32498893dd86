"""The rank / extract command line end to end on sam_micro, and its one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import cli
from search_spaces.space import SearchSpace
from supernet.elastic.activation import active_subnet
from supernet.elastic.extract import load_subnet


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rank_then_extract(tmp_path, micro_checkpoint, image_dir, capsys):
    ranked = tmp_path / "ranked.pt"
    code, out, err = run(["rank", "--checkpoint", micro_checkpoint, "--model-type", "micro", "--images", image_dir,
                          "--method", "wanda", "--out", ranked], capsys)
    assert code == 0, err
    assert "skipped" in out and "broken.jpg" in out and "3 images (1 skipped)" in out
    meta = json.loads(ranked.with_suffix(".json").read_text())
    assert meta["method"] == "wanda" and meta["model_type"] == "micro" and len(meta["calibration_images"]) == 3

    space = SearchSpace.load("sam_micro")
    cfg = space.sample(4)
    cfg_path = tmp_path / "subnet.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    code, out, err = run(["extract", "--checkpoint", ranked, "--config", cfg_path, "--out", tmp_path / "sub"], capsys)
    assert code == 0, err
    sub = load_subnet(tmp_path / "sub")
    info = json.loads((tmp_path / "sub" / "subnet.json").read_text())
    assert info["ranking_method"] == "wanda" and info["flops"] > 0

    from supernet.elastic.ranked import load_ranked

    supernet, _ = load_ranked(ranked)
    res = cfg.resolution
    x = torch.randn(1, 3, res, res)
    with torch.no_grad(), active_subnet(supernet, cfg):
        torch.testing.assert_close(sub.image_encoder(x), supernet.image_encoder(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rank", "--checkpoint", "{tmp}/missing.pth", "--method", "magnitude", "--out", "{tmp}/r.pt"],
         "checkpoint file not found"),
        (["rank", "--checkpoint", "{ckpt}", "--method", "wanda", "--out", "{tmp}/r.pt"],
         "--images is required for --method wanda"),
        (["rank", "--checkpoint", "{ckpt}", "--images", "{tmp}/nowhere", "--method", "wanda", "--out", "{tmp}/r.pt"],
         "nowhere"),
        (["extract", "--checkpoint", "{ckpt}", "--config", "{tmp}/nope.yaml", "--out", "{tmp}/o"], "nope.yaml"),
    ],
)
def test_errors_are_one_line(tmp_path, micro_checkpoint, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, ckpt=micro_checkpoint) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err and err.startswith("samnas: error:") and err.count("\n") == 1


def test_extract_rejects_a_bad_config(tmp_path, micro_checkpoint, capsys):
    cfg = SearchSpace.load("sam_micro").largest().to_dict()
    cfg["blocks"][1]["heads"] = 7
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run(["extract", "--checkpoint", micro_checkpoint, "--config", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "blocks[1].heads: 7 not in [1, 2, 3, 4]" in err


def test_every_command_group_is_on_the_samnas_parser(tmp_path, capsys):
    parser = cli.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    expected = {"spaces", "rank", "extract", "train-supernet", "latency", "search", "pareto", "export",
                "train-reference", "tune-everything", "everything", "everything-front"}
    assert expected <= commands, sorted(expected - commands)
    code, _, err = run(["everything", "--policy", tmp_path / "missing.yaml", "--images", tmp_path,
                       "--out", tmp_path / "masks"], capsys)
    assert code == 2 and "missing.yaml" in err and err.count("\n") == 1
