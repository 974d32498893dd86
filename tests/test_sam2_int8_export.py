"""int8 blocks in a SAM 2 subnet's export: ONNX Runtime's dynamic quantization of exactly the Hiera blocks'
linear layers that ``quantize_subnet`` quantizes in PyTorch, the int8 encoder's three outputs against the
subnet quantized in PyTorch, the card, and the torch-free runner on the int8 folder.

The subnet is ``test_deploy_sam2.subnet_config`` (``sam2_micro``, block 3 skipped) with blocks 1 and 4 int8
(the subnet's blocks 1 and 3, both stage transitions with a shortcut ``proj``); the supernet keeps its own
initialisation (seed 0), as SAM's int8 tests do. With every parameter redrawn from N(0, 0.05^2)
(``sam2_oracle.randomise``) int8 itself costs more than the tolerance allows (see
``test_deploy_sam2.test_int8_sam2_export_beyond_tolerance_is_refused_in_one_line``).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from deploy import Runner
from nas.export.onnx_export import ONNX_INT8_TOLERANCE, int8_matmul_nodes, int8_within_tolerance, worst_error
from nas.export.sam2_onnx import SAM2_ENCODER_OUTPUTS, export_sam2_encoder_onnx, sam2_output_errors
from nas.export.subnet import export_subnet
from supernet.elastic.build import build_sam2_supernet
from supernet.elastic.extract import extract, load_subnet
from supernet.elastic.quantize import is_quantized
from supernet.modeling.sam2.predictor import Sam2Predictor
from test_deploy import run_without_torch, synthetic_photo
from test_deploy_sam2 import prompt_cases, subnet_config

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul")


def int8_config(resolution: int = 128):
    """``subnet_config`` with blocks 1 and 4 int8 (the subnet's blocks 1 and 3)."""
    config = subnet_config(resolution)
    blocks = list(config.blocks)
    for i in (1, 4):
        blocks[i] = dataclasses.replace(blocks[i], precision="int8")
    return config.replace(blocks=tuple(blocks))


@pytest.fixture(scope="module")
def supernet():
    return build_sam2_supernet("sam2_micro", seed=0).eval()


@pytest.fixture(scope="module")
def int8_export(supernet, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sam2_int8") / "micro2_int8"
    export_subnet(supernet, int8_config(), out, source_checkpoint=None, repeats=1, measure_runtimes=False)
    return out


def onnx_layer(module_name: str) -> str:
    """A PyTorch module's qualified name as the TorchScript exporter scopes its nodes:
    ``image_encoder.trunk.blocks.1.mlp.layers.0`` -> ``/image_encoder/trunk/blocks.1/mlp/layers.0``."""
    return "/" + re.sub(r"/(\d+)", r".\1", module_name.replace(".", "/"))


def test_int8_sam2_export_matches_the_subnet_quantized_in_pytorch(int8_export):
    card = json.loads((int8_export / "card.json").read_text())
    assert card["family"] == "sam2" and card["precision"] == ["fp32", "int8", "fp32", None, "int8"]
    assert sorted(p.name for p in int8_export.iterdir()) == ["card.json", "card.md", "image_encoder.onnx",
                                                             "prompt_decoder.onnx", "subnet.json", "subnet.pt"]
    onnx_path = int8_export / "image_encoder.onnx"
    int8, fp32 = load_subnet(int8_export), load_subnet(int8_export, quantize=False)
    assert is_quantized(int8) and not is_quantized(fp32)
    for seed in (0, 1):  # each of the three outputs within the rule SAM's int8 export is held to
        errors = sam2_output_errors(int8, onnx_path, seed=seed)
        assert set(errors) == set(SAM2_ENCODER_OUTPUTS)
        assert all(int8_within_tolerance(e) for e in errors.values()), (seed, errors)
    check = card["onnx_int8_check"]
    vs_int8, vs_fp32 = sam2_output_errors(int8, onnx_path), sam2_output_errors(fp32, onnx_path)
    assert check["vs_torch_int8"] == worst_error(vs_int8) and check["vs_torch_fp32"] == worst_error(vs_fp32)
    assert check["per_output"] == {n: {"vs_torch_int8": vs_int8[n], "vs_torch_fp32": vs_fp32[n]} for n in vs_int8}
    assert check["tolerance"] == ONNX_INT8_TOLERANCE
    # blocks 1 and 3 of the subnet come after the stride-4 level: high_res_feats_0 is computed in fp32 alone
    assert vs_fp32["high_res_feats_0"]["max_abs"] < 1e-3 < vs_fp32["image_embed"]["max_abs"]
    assert card["onnx_max_abs_diff"] < 1e-3  # the fp32 export, checked before quantizing
    md = (int8_export / "card.md").read_text()
    assert "| precision | int8 linear layers in blocks 1, 4; fp32 elsewhere |" in md
    assert "vs the subnet quantized in PyTorch (the worst of the encoder's three outputs)" in md
    assert "`high_res_feats_1`" in md.split("Per output")[1]


def test_int8_sam2_onnx_quantizes_exactly_the_layers_pytorch_quantizes(int8_export):
    graph = onnx.load(str(int8_export / "image_encoder.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("DynamicQuantizeLinear") > 0
    quantized = {n.name.rsplit("/", 1)[0] for n in graph.node if n.op_type in QUANTIZED_OPS}
    torch_int8 = {onnx_layer(name) for name, m in load_subnet(int8_export).named_modules()
                  if isinstance(m, DynamicLinear)}
    assert len(torch_int8) == 10  # four layers and the transition's shortcut proj, in each of two blocks
    assert quantized == torch_int8
    assert sum(op in QUANTIZED_OPS for op in ops) == len(torch_int8)
    # attention's own products (q k^T, weights x v) stay float MatMuls
    assert any(n.op_type == "MatMul" and n.name.startswith("/image_encoder/trunk/blocks.1/attn/MatMul")
               for n in graph.node)


def test_int8_matmul_nodes_read_the_hiera_names(supernet, tmp_path):
    path = export_sam2_encoder_onnx(extract(supernet, subnet_config(128), quantize=False), tmp_path / "e.onnx")
    layers = ("attn/qkv", "attn/proj", "mlp/layers.0", "mlp/layers.1")
    assert int8_matmul_nodes(path, [0], family="sam2") == [f"/image_encoder/trunk/blocks.0/{layer}/MatMul" for layer in layers]
    # block 1 starts a stage: its shortcut proj is a linear layer too
    assert int8_matmul_nodes(path, [1], family="sam2") == [f"/image_encoder/trunk/blocks.1/{layer}/MatMul"
                                            for layer in layers + ("proj",)]
    with pytest.raises(ValueError, match=r"no MatMul node named /image_encoder/trunk/blocks\.4/attn/qkv/MatMul "
                                         r"\(and 3 more\)"):
        int8_matmul_nodes(path, [4], family="sam2")


@pytest.mark.slow
def test_runner_without_torch_runs_the_int8_sam2_export(int8_export, tmp_path):
    """The torch-free runner loads the int8 encoder as it loads the fp32 one; its masks against
    ``Sam2Predictor`` on the subnet quantized in PyTorch (the two runtimes round int8 differently)."""
    image_path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(6, (150, 230))).save(image_path)
    image = np.array(Image.open(image_path).convert("RGB"))
    cases = {name: {"points": c["point_coords"].tolist() if "point_coords" in c else None,
                    "labels": c["point_labels"].tolist() if "point_coords" in c else None,
                    "boxes": c["box"].tolist() if "box" in c else None}
             for name, c in prompt_cases(*image.shape[:2]).items()}
    run_without_torch(int8_export, tmp_path / "out", "onnxruntime", [image_path], "-", {"photo": cases})
    predictor = Sam2Predictor(load_subnet(int8_export).eval())
    predictor.set_image(image)
    in_process = Runner.from_folder(int8_export, runtime="onnxruntime", threads=1)
    for name, case in prompt_cases(*image.shape[:2]).items():
        got = np.load(tmp_path / "out" / f"photo-{name}.npz")
        ref_masks, ref_iou, _ = predictor.predict(**case, multimask_output=True)
        assert got["masks"].shape == ref_masks.shape, name
        assert (got["masks"] == ref_masks).mean() >= 0.98, name
        assert np.abs(got["iou"] - ref_iou).max() <= 0.05, name
        masks, iou, _ = in_process.predict(image_path, **cases[name])
        assert np.array_equal(masks, got["masks"]) and np.allclose(iou, got["iou"]), name


@pytest.mark.slow
def test_card_times_the_int8_sam2_blocks_on_every_runtime(supernet):
    """The card's runtime table for an int8 SAM 2 config: its int8 blocks quantized in PyTorch and in ONNX
    Runtime (the same node names the export quantizes; checked against PyTorch int8 before timing)."""
    from nas.export.subnet import runtime_table

    config = int8_config()
    table = runtime_table(supernet, config, extract(supernet, config, quantize=False), threads=1)
    labels = [r["runtime"] for r in table["rows"]]
    assert {"cpu-torch", "cpu-torch (int8 blocks)", "cpu-onnxruntime (int8 blocks)"} <= set(labels)
    assert table["fastest"] == labels[0] and "image_embed" in table["note"]
    ort = next(r for r in table["rows"] if r["runtime"] == "cpu-onnxruntime (int8 blocks)")
    assert 0.998 <= ort["cosine"] < 1.0  # against fp32: int8 costs something, within int8 precision
