"""Per-block int8 precision: quantized subnets in PyTorch (extract, save/load) and the int8 ONNX export."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import cli
from infra.errors import CheckpointError, ConfigError
from nas.export.subnet import export_subnet
from nas.export.onnx_export import ONNX_INT8_TOLERANCE
from nas.export.onnx_export import compare_embeddings, embedding_error, int8_matmul_nodes, onnx_session
from search_spaces import SearchSpace, save_config
from supernet.elastic.activation import active_subnet, check_fits
from supernet.elastic.extract import extract, load_subnet, save_subnet, subnet_metadata
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig
from supernet.elastic.quantize import is_quantized, quantize_subnet
from supernet.elastic.build import build_sam

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear

# Measured on sam_micro (seed 3, and the packaged reference weights) at 128-256 px, all blocks or
# blocks 1, 2, 4 int8: int8 vs fp32 embeddings cosine 0.99997-1.0, relative L2 0.003-0.008 in
# PyTorch; ONNX Runtime int8 vs PyTorch int8 cosine >= 0.99996, relative L2 0.004-0.012.
INT8_MIN_COSINE = 0.9995
INT8_MAX_REL_L2 = 0.03


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.load("sam_micro_int8")


@pytest.fixture(scope="module")
def model():
    return build_sam("micro", seed=3)


def mixed_config(space: SearchSpace, resolution: int = 192) -> SubnetConfig:
    """Blocks 1 and 4 skipped; 0 and 3 int8, 2 and 5 fp32 (kept blocks 0, 2 of the subnet are int8)."""
    blocks = list(space.largest().blocks)
    blocks[1] = blocks[4] = BlockChoice.skipped()
    blocks[0] = dataclasses.replace(blocks[0], precision="int8")
    blocks[2] = dataclasses.replace(blocks[2], heads=2)
    blocks[3] = dataclasses.replace(blocks[3], mlp=256, precision="int8")
    return space.validate(space.largest().replace(resolution=resolution, blocks=tuple(blocks)))


def images(res: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, res, res, generator=torch.Generator().manual_seed(seed))


def errors(got: torch.Tensor, ref: torch.Tensor) -> dict:
    return compare_embeddings(got.numpy(), ref.numpy())


@pytest.mark.parametrize("resolution", [192, 128])
@torch.no_grad()
def test_quantized_subnet_runs_close_to_fp32(model, space, resolution):
    config = mixed_config(space, resolution)
    assert config.int8_blocks() == [0, 2]
    fp32 = extract(model, config, quantize=False)
    int8 = extract(model, config)
    assert not is_quantized(fp32) and is_quantized(int8)
    # exactly the int8 blocks' four linear layers are quantized; everything else stays fp32
    for i, block in enumerate(int8.image_encoder.blocks):
        layers = (block.attn.qkv, block.attn.proj, block.mlp.lin1, block.mlp.lin2)
        assert all(type(m) is (DynamicLinear if i in (0, 2) else nn.Linear) for m in layers), i
    for part in (int8.prompt_encoder, int8.mask_decoder, int8.image_encoder.neck, int8.image_encoder.patch_embed):
        assert not is_quantized(part)
    x = images(resolution, n=2)
    with active_subnet(model, config.with_precision("fp32")):
        supernet_fp32 = model.image_encoder(x)
    torch.testing.assert_close(fp32.image_encoder(x), supernet_fp32, rtol=0, atol=1e-5)
    got = int8.image_encoder(x)
    err = errors(got, supernet_fp32)
    assert err["cosine"] >= INT8_MIN_COSINE and err["rel_l2"] <= INT8_MAX_REL_L2, err
    assert err["max_abs"] > 0  # it did run quantized
    masks, iou = int8.decode(got[:1], points=(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]])))
    assert masks.shape == (1, 3, resolution // 4, resolution // 4) and torch.isfinite(iou).all()


@torch.no_grad()
def test_all_fp32_config_is_not_quantized(model, space):
    config = space.largest()
    sub = extract(model, config)
    assert not is_quantized(sub) and quantize_subnet(sub, config) is sub


def test_quantize_subnet_refuses_a_mismatched_or_elastic_model(model, space):
    config = mixed_config(space)
    with pytest.raises(ValueError, match="the subnet has 6 encoder blocks but the config keeps 4"):
        quantize_subnet(extract(model, space.largest(), quantize=False), config)
    all_int8 = space.largest().with_precision("int8")
    with pytest.raises(ValueError, match="weight-sharing supernet .* runs fp32 only"):
        quantize_subnet(model, all_int8)


@torch.no_grad()
def test_int8_subnet_saves_fp32_and_quantizes_on_load(model, space, tmp_path):
    config = mixed_config(space)
    with pytest.raises(ValueError, match="save_subnet stores fp32 weights"):
        save_subnet(extract(model, config), subnet_metadata(model, config), tmp_path / "bad")
    save_subnet(extract(model, config, quantize=False), subnet_metadata(model, config), tmp_path / "sub")
    meta = json.loads((tmp_path / "sub" / "subnet.json").read_text())
    assert meta["format"] == "samnas-subnet/2" and meta["config"]["blocks"][0]["precision"] == "int8"
    loaded = load_subnet(tmp_path / "sub")
    x = images(192)
    assert torch.equal(loaded.image_encoder(x), extract(model, config).image_encoder(x))  # deterministic
    assert not is_quantized(load_subnet(tmp_path / "sub", quantize=False))


@torch.no_grad()
def test_subnet_json_format_1_reads_as_fp32(model, space, tmp_path):
    """A subnet folder written before precision existed (format 1, no precision fields) loads all-fp32."""
    fp32_space = SearchSpace.load("sam_micro")
    config = fp32_space.largest()
    save_subnet(extract(model, config), subnet_metadata(model, config), tmp_path)
    path = tmp_path / "subnet.json"
    path.write_text(path.read_text().replace("samnas-subnet/2", "samnas-subnet/1"))
    sub = load_subnet(tmp_path)
    assert not is_quantized(sub)
    x = images(256)
    assert torch.equal(sub.image_encoder(x), extract(model, config).image_encoder(x))
    path.write_text(path.read_text().replace("samnas-subnet/1", "samnas-subnet/7"))
    with pytest.raises(CheckpointError, match="format 'samnas-subnet/7', expected 'samnas-subnet/1' or 'samnas-subnet/2'"):
        load_subnet(tmp_path)
    meta = json.loads(path.read_text().replace("samnas-subnet/7", "samnas-subnet/2"))
    meta["config"]["blocks"][2]["precision"] = "int4"
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"subnet\.json: missing or malformed field "
                                              r"\(config\.blocks\[2\]\.precision: 'int4' not in \['fp32', 'int8'\]\)"):
        load_subnet(tmp_path)


def test_bad_precision_is_a_one_line_error_naming_the_field(model, space, tmp_path, capsys):
    config = space.largest().to_dict()
    config["blocks"][3]["precision"] = "int4"
    expected = "blocks[3].precision: 'int4' not in ['fp32', 'int8']"
    with pytest.raises(ConfigError) as info:
        space.validate(config)
    assert str(info.value) == expected
    with pytest.raises(ConfigError) as info:  # without a space: reading the config's dict form checks it
        SubnetConfig.from_dict(config)
    assert str(info.value) == expected
    bad = SubnetConfig.from_dict(space.largest().to_dict())
    bad = bad.with_block(3, dataclasses.replace(bad.blocks[3], precision="int4"))
    with pytest.raises(ConfigError) as info:  # a record built in code: the supernet's own check
        extract(model, bad)
    assert str(info.value) == expected
    path = tmp_path / "bad.yaml"
    save_config(config, path)
    assert cli.main(["export", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"bad.yaml: {expected}") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_supernet_refuses_to_run_an_int8_config(model, space):
    config = mixed_config(space)
    check_fits(model, config)  # the shapes fit; only running it on the supernet is refused
    with pytest.raises(ConfigError, match=r"blocks\[0\]\.precision: int8 runs only on an extracted subnet"):
        with active_subnet(model, config):
            pass
    assert model.image_encoder.blocks[0].attn.active_heads == 4  # nothing changed


# --------------------------------------------------------------------------- ONNX export


def test_exported_int8_onnx_matches_quantized_pytorch(model, space, tmp_path):
    config = mixed_config(space, 128)
    # the card's runtime table (int8 rows included) is checked on the CLI export below
    card = export_subnet(model, config, tmp_path / "exp", source_checkpoint=None, repeats=1, measure_runtimes=False)
    onnx_path = tmp_path / "exp" / "image_encoder.onnx"
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["card.json", "card.md", "image_encoder.onnx",
                                                                     "prompt_decoder.onnx", "subnet.json", "subnet.pt"]
    # the deployed file holds int8 MatMuls for exactly the int8 blocks' linear layers
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    quantized = {n.name for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")}
    assert quantized and all(n.startswith(("/blocks.0/", "/blocks.2/")) for n in quantized)
    assert {n.split("/")[1] for n in quantized} == {"blocks.0", "blocks.2"}
    # ONNX Runtime runs it and matches the subnet quantized in PyTorch within the stated int8 tolerance
    int8 = load_subnet(tmp_path / "exp")
    for seed in (0, 1):
        err = embedding_error(int8, onnx_path, seed=seed)
        assert err["rel_l2"] <= min(INT8_MAX_REL_L2, ONNX_INT8_TOLERANCE["max_rel_l2"]), err
        assert err["cosine"] >= max(INT8_MIN_COSINE, ONNX_INT8_TOLERANCE["min_cosine"]), err
    check = card["onnx_int8_check"]
    assert check["vs_torch_int8"] == embedding_error(int8, onnx_path, seed=0)
    fp32 = load_subnet(tmp_path / "exp", quantize=False)
    assert check["vs_torch_fp32"] == embedding_error(fp32, onnx_path, seed=0)
    assert 0 < check["vs_torch_fp32"]["rel_l2"] <= INT8_MAX_REL_L2 and check["tolerance"] == ONNX_INT8_TOLERANCE
    assert card["precision"] == ["int8", None, "fp32", "int8", None, "fp32"]
    assert card["onnx_max_abs_diff"] < 1e-3 and card["measured_ms"]["onnxruntime"] > 0
    md = (tmp_path / "exp" / "card.md").read_text()
    assert "| precision | int8 linear layers in blocks 0, 3; fp32 elsewhere |" in md
    assert "| 3 | yes | 4 | 256 | int8 |" in md and "| 1 | skipped | | | |" in md
    assert "vs the subnet quantized in PyTorch: relative L2" in md and "vs fp32 PyTorch" in md


def test_int8_matmul_nodes_must_all_exist(model, space, tmp_path):
    from nas.export.onnx_export import export_encoder_onnx

    path = export_encoder_onnx(extract(model, space.largest().replace(resolution=128)), tmp_path / "e.onnx")
    assert int8_matmul_nodes(path, [5], family="sam") == [f"/blocks.5/{l}/MatMul" for l in ("attn/qkv", "attn/proj", "mlp/lin1", "mlp/lin2")]
    with pytest.raises(ValueError, match=r"no MatMul node named /blocks\.6/attn/qkv/MatMul \(and 3 more\)"):
        int8_matmul_nodes(path, [6], family="sam")
    with pytest.raises(ValueError, match="torch's dynamic int8 layers do not export to ONNX"):
        export_encoder_onnx(extract(model, mixed_config(space, 128)), tmp_path / "q.onnx")


@pytest.mark.slow
def test_cli_export_int8_config(space, tmp_path, capsys):
    config_path = save_config(mixed_config(space, 128), tmp_path / "mixed.yaml")
    assert config_path.read_text().startswith("format: samnas-config/2")
    out = tmp_path / "exported"
    assert cli.main(["export", "--config", str(config_path), "--out", str(out), "--repeats", "1"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["precision"] == ["int8", None, "fp32", "int8", None, "fp32"]
    # the summary names the int8 checks, not the fp32 export's that was deleted
    summary = capsys.readouterr().out
    assert "int8: vs PyTorch int8 cosine" in summary and "|ORT-torch|" not in summary
    sess = onnx_session(out / "image_encoder.onnx", threads=1)
    got = sess.run(None, {"images": np.zeros((1, 3, 128, 128), np.float32)})[0]
    assert got.shape == (1, 64, 8, 8) and np.isfinite(got).all()  # micro: 64 prompt channels, 128 px / 16
    # the runtime table times the config's own int8 blocks on every fp32 runtime, fastest first
    rows = card["runtimes"]["rows"]
    labels = [r["runtime"] for r in rows]
    assert {"cpu-torch", "cpu-torch (int8 blocks)", "cpu-onnxruntime (int8 blocks)"} <= set(labels)
    assert card["runtimes"]["fastest"] == labels[0] and [r["median_ms"] for r in rows] == sorted(r["median_ms"] for r in rows)


def test_fresh_process_validation_prepares_int8_subnets_quantized(model, space, tmp_path):
    """nas.latency.validate times int8 blocks quantized: the subnet folder loads quantized, the ONNX file is int8."""
    import onnx

    from nas.latency.validate import prepare_subnet

    config = mixed_config(space, 128)
    folder = prepare_subnet(model, config, "torch", tmp_path / "torch")
    assert is_quantized(load_subnet(folder))
    path = prepare_subnet(model, config, "onnxruntime", tmp_path / "ort")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    fp32_path = prepare_subnet(model, space.largest().replace(resolution=128), "onnxruntime", tmp_path / "ort32")
    assert fp32_path.name == "encoder.onnx" and "MatMulInteger" not in {n.op_type for n in onnx.load(str(fp32_path)).graph.node}


@pytest.mark.parametrize("device", ["cpu-torch", "cpu-onnxruntime"])
def test_profiling_times_int8_subnets_quantized_in_both_runtimes(model, space, device):
    """The profiler's module for an int8 config runs quantized in PyTorch, and ONNX Runtime builds the
    same int8 encoder that `samnas export` writes (checked against PyTorch int8 when prepared)."""
    import onnxruntime as ort

    from nas.latency.profile import Int8Module, make_backend, network_module

    config = mixed_config(space, 128)
    module, inputs = network_module(model, config, 0, torch.Generator().manual_seed(0))
    assert isinstance(module, Int8Module) and is_quantized(module.int8) and not is_quantized(module.fp32)
    seen = []
    if device == "cpu-onnxruntime":  # record the graph ONNX Runtime is given
        real = ort.InferenceSession

        def spy(model_bytes, *args, **kwargs):
            import onnx

            seen.extend(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)
            return real(model_bytes, *args, **kwargs)

        ort.InferenceSession = spy
    try:
        run = make_backend(device, threads=1).prepare(module, inputs)
    finally:
        if device == "cpu-onnxruntime":
            ort.InferenceSession = real
    out = run()
    out = out[0] if isinstance(out, list) else out.numpy()
    assert out.shape == (1, 64, 8, 8) and np.isfinite(out).all()
    if device == "cpu-onnxruntime":
        assert "MatMulInteger" in seen or "DynamicQuantizeMatMul" in seen
    fp32 = network_module(model, space.largest().replace(resolution=128), 0, torch.Generator())[0]
    assert not isinstance(fp32, Int8Module) and not is_quantized(fp32)
