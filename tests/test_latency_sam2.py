"""Latency predictors on a SAM 2 space (sam2_micro at 128 px): Hiera block kinds, the lookup table,
profile -> fit -> predict through the CLI, held-out subnets timed in fresh processes, ONNX runtimes."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import onnx
import pytest
import torch
import yaml

import cli
from infra.errors import UserError
from nas.latency.predictor import load_predictor, lut_index, lut_parts
from supernet.elastic.build import build_supernet
from nas.latency.profile import (Int8Module, OpenVinoBackend, OrtBackend, ProfileSettings, block_kinds,
                                 check_space_on_device, int8_onnx_bytes, kind_module, network_module,
                                 profile_device, restrict_resolutions, sample_configs)
from supernet.modeling.sam2.model import Sam2EncoderCall
from nas.latency.store import DeviceStore
from nas.latency.validate import VALIDATION_FILE, prepare_subnet, time_in_fresh_process, validation_configs
from search_spaces.config import BlockChoice, SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.extract import extract
from supernet.elastic.quantize import is_quantized, quantize_subnet
from test_sam2_int8_export import QUANTIZED_OPS, DynamicLinear, onnx_layer

# sam2_micro's blocks, from its architecture (stages [1, 1, 2, 1], windows [8, 4, 6, 4], global block 3):
# (kind, window, stage). A stage's first block is a transition attending in the previous stage's window.
MICRO_KINDS = [("window", 8, 0), ("transition", 8, 1), ("transition", 4, 2), ("global", 0, 2), ("transition", 6, 3)]
FIXED_BLOCKS = (0, 1, 2, 4)  # block 0 and the transitions: never skipped
PROFILE = ["--blocks", "--samples", 6, "--prompts", 1, "--repeats", 1, "--warmup", 1, "--min-seconds", 0,
           "--rounds", 1, "--resolutions", 128, "--threads", 1]


@pytest.fixture(scope="module")
def full():
    return SearchSpace.load("sam2_micro")


@pytest.fixture(scope="module")
def space(full):
    return restrict_resolutions(full, [128])


def cli_run(argv) -> tuple[int, str, str]:
    """``samnas`` with the latency commands only; exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(cli, "COMMAND_MODULES", ["nas.latency.commands"])
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def block_key(kind) -> tuple:
    return kind["kind"], kind["window"], kind["stage"], kind["heads"], kind["mlp"], kind["precision"]


# ---------------------------------------------------------------------- block kinds and sampling


def test_block_kinds_are_windowed_global_and_transition_blocks_per_resolution(full):
    kinds = block_kinds(full, prompts=1)
    assert {k["resolution"] for k in kinds} == set(full.resolutions) == {256, 192, 128}
    for res in full.resolutions:
        at = [k for k in kinds if k["resolution"] == res]
        names = [k["kind"] for k in at]
        assert names.count("fixed") == names.count("decoder") == 1
        blocks = [k for k in at if k["kind"] not in ("fixed", "decoder")]
        assert {(k["kind"], k["window"], k["stage"]) for k in blocks} == set(MICRO_KINDS)
        # every heads x MLP width choice of each block, once
        expected = {(*MICRO_KINDS[b.index], h, m, "fp32") for b in full.blocks for h in b.heads for m in b.mlp}
        assert sorted(block_key(k) for k in blocks) == sorted(expected)


def test_profiling_and_validation_samplers_keep_block_0_and_the_transitions(space):
    profiled = sample_configs(space, 20, seed=0)
    assert profiled[0] == space.largest() and profiled[1] == space.validate(space.smallest())
    held_out = validation_configs(space, 10, seed=0, exclude=profiled)
    assert len(held_out) == 10 and not set(held_out) & set(profiled)
    for cfg in profiled + held_out:
        assert all(cfg.blocks[i].keep for i in FIXED_BLOCKS)
        assert [b.stage for b in cfg.blocks] == [0, 1, 2, 2, 3]
    assert any(not c.blocks[3].keep for c in profiled) and any(c.blocks[3].keep for c in profiled)


def test_kind_modules_have_the_shapes_and_sizes_of_the_subnet_blocks(space):
    """Each block kind of the largest config is built as the extracted subnet's block is: same input and
    output shapes, same parameter count; the fixed part gives the encoder's three outputs."""
    cfg = space.largest()
    subnet = extract(build_supernet(space.model_type, 0), cfg)
    seen = []
    for block in subnet.image_encoder.trunk.blocks:
        block.register_forward_hook(lambda m, i, o: seen.append((tuple(i[0].shape), tuple(o.shape),
                                                                 sum(p.numel() for p in m.parameters()))))
    with torch.inference_mode():
        want = Sam2EncoderCall(subnet)(torch.zeros(1, 3, 128, 128))
    kinds = {block_key(k): k for k in block_kinds(space, prompts=1)}
    gen = torch.Generator().manual_seed(0)
    for b, (name, window, stage), shapes in zip(cfg.blocks, MICRO_KINDS, seen, strict=True):
        module, (x,) = kind_module(space.arch, kinds[(name, window, stage, b.heads, b.mlp, "fp32")], gen)
        with torch.inference_mode():
            y = module(x)
        assert (tuple(x.shape), tuple(y.shape), sum(p.numel() for p in module.parameters())) == shapes
    fixed = next(k for k in kinds.values() if k["kind"] == "fixed")
    module, inputs = kind_module(space.arch, fixed, gen)
    with torch.inference_mode():
        got = module(*inputs)
    assert [g.shape for g in got] == [w.shape for w in want] == [(1, 64, 8, 8), (1, 8, 32, 32), (1, 16, 16, 16)]
    # the later stages' maps come in as the trunk hands them to the neck
    assert [tuple(x.shape) for x in inputs[1:]] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]
    decoder = next(k for k in kinds.values() if k["kind"] == "decoder")
    module, inputs = kind_module(space.arch, decoder, gen)
    with torch.inference_mode():
        masks, iou = module(*want, *inputs[3:])
    assert masks.shape == (1, 3, 32, 32) and iou.shape == (1, 3)


# ---------------------------------------------------------------------- the lookup table


def test_lookup_table_sum_is_the_fixed_part_plus_each_kept_block(space):
    """Every entry timed at a distinct value: a config's table sum is its fixed part plus the entry of each
    kept block's (kind, window, stage, heads, MLP width); a skipped block adds nothing."""
    kinds = block_kinds(space, prompts=1)
    rows = [{**k, "median_ms": float(2 ** (i % 40)) * (1 + i)} for i, k in enumerate(kinds)]
    table = {block_key(r): r["median_ms"] for r in rows}
    lut = lut_index(rows)
    for cfg in sample_configs(space, 12, seed=1):
        expected = table[("fixed", -1, 0, 0, 0, "fp32")]
        for b, (name, window, stage) in zip(cfg.blocks, MICRO_KINDS):
            if b.keep:
                expected += table[(name, window, stage, b.heads, b.mlp, "fp32")]
        parts = lut_parts(space, lut, cfg)
        assert [p for p, _ in parts] == ["fixed"] + [f"blocks[{i}]" for i, b in enumerate(cfg.blocks) if b.keep]
        assert sum(ms for _, ms in parts) == pytest.approx(expected, rel=1e-12)
        decoder = dict(lut_parts(space, lut, cfg, prompts=1))["decoder"]
        assert decoder == table[("decoder", -1, 0, 0, 0, "fp32")]


# ---------------------------------------------------------------------- profile -> fit -> predict -> validate


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """cpu-torch profiled (block table, 6 subnets, 1 prompt) and fitted through the CLI."""
    root = tmp_path_factory.mktemp("latency")
    code, out, err = cli_run(["latency", "profile", "--space", "sam2_micro", "--device", "cpu-torch", *PROFILE,
                              "--root", root])
    assert code == 0, err
    assert "profiled sam2_micro on cpu-torch: 50 block timings, 12 subnet timings" in out
    code, out, err = cli_run(["latency", "fit", "--device", "cpu-torch", "--root", root])
    assert code == 0, err
    assert "sam2_micro on cpu-torch (lookup table + 12 subnets, resolutions 128)" in out
    return root


def test_profile_fit_predict_round_trip_through_the_cli(root, space, tmp_path):
    store = DeviceStore("cpu-torch", root)
    blocks = store.blocks()
    assert {r["kind"] for r in blocks} == {"fixed", "window", "global", "transition", "decoder"}
    assert {(r["kind"], r["window"], r["stage"]) for r in blocks if r["kind"] not in ("fixed", "decoder")} \
        == set(MICRO_KINDS)
    networks = store.networks()
    assert len(networks) == 12 and {r["part"] for r in networks} == {"encoder", "encoder+decoder"}
    assert all(r["median_ms"] > 0 for r in blocks + networks)
    table = {block_key(r): r["median_ms"] for r in blocks}

    cfg = space.validate(space.largest().with_block(3, BlockChoice.skipped(2)))
    path = tmp_path / "subnet.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    code, out, err = cli_run(["latency", "predict", "--device", "cpu-torch", "--config", path, "--parts",
                              "--root", root])
    assert code == 0, err
    predicted = float(out.split(" ms predicted")[0])
    predictor = load_predictor("cpu-torch", space="sam2_micro", root=root)
    assert predicted == pytest.approx(predictor.predict_ms(cfg), abs=5e-4) and predicted > 0
    expected = table[("fixed", -1, 0, 0, 0, "fp32")] + sum(
        table[(*MICRO_KINDS[i], b.heads, b.mlp, "fp32")] for i, b in enumerate(cfg.blocks) if b.keep)
    assert predictor.lut_ms(cfg) == pytest.approx(expected, rel=1e-9)
    assert "blocks[3]" not in out and f"{expected:9.3f} ms" in out  # the lookup sum, printed
    code, out, err = cli_run(["latency", "predict", "--device", "cpu-torch", "--config", path, "--prompts", 1,
                              "--root", root])
    assert code == 0 and "(encoder+decoder@1, sam2_micro)" in out, err


@pytest.mark.slow
def test_validate_times_held_out_sam2_subnets_in_fresh_processes(root):
    code, out, err = cli_run(["latency", "validate", "--device", "cpu-torch", "--space", "sam2_micro", "--samples", 2,
                              "--min-seconds", 0.02, "--quiet", "--root", root])
    assert code == 0, err
    assert "2 held-out subnets, each timed in a fresh process (1 thread)" in out
    report = json.loads((root / "cpu-torch" / VALIDATION_FILE).read_text())["spaces"]["sam2_micro"]
    timed = {r["config"] for r in DeviceStore("cpu-torch", root).networks()}
    assert report["samples"] == 2 and not {s["config"] for s in report["subnets"]} & timed
    for sub in report["subnets"]:
        cfg = SubnetConfig.from_json(sub["config"])
        assert all(cfg.blocks[i].keep for i in FIXED_BLOCKS) and sub["measured_ms"] > 0 and sub["predicted_raw_ms"] > 0


# ---------------------------------------------------------------------- ONNX runtimes and int8


@pytest.mark.parametrize("backend_cls", [OrtBackend, pytest.param(OpenVinoBackend, marks=pytest.mark.slow)])
def test_onnx_runtimes_run_every_sam2_kind_and_subnet_as_torch_does(space, tmp_path, backend_cls):
    """Each kind (largest heads and MLP) and a subnet export, and the runtime's outputs match torch's
    (prepare checks them, RuntimeError otherwise); the subnet's ONNX file is timed in a fresh process."""
    backend = backend_cls("cpu", 1)
    gen = torch.Generator().manual_seed(0)
    largest = {(k["kind"], k["window"], k["stage"]): k for k in block_kinds(space)}  # sorted: the last is largest
    for kind in largest.values():
        backend.prepare(*kind_module(space.arch, kind, gen))()
    supernet = build_supernet(space.model_type, 0)
    cfg = space.validate(space.smallest())
    assert len(backend.prepare(*network_module(supernet, cfg, 0, gen))()) == 3
    path = prepare_subnet(supernet, cfg, backend.name, tmp_path / "sub")
    result = time_in_fresh_process(backend.name, path, 128, threads=1, repeats=2, warmup=1, min_seconds=0.01)
    assert result["median_ms"] > 0


def int8_space(full, single: bool = False) -> SearchSpace:
    """sam2_micro at 128 px with every block fp32 or int8 (``single``: only each stage's fewest heads and
    narrowest MLP, so the lookup table holds one shape per block kind and precision)."""
    data = {**full.to_dict(), "name": "sam2_micro_int8"}
    data["defaults"] = {**data["defaults"], "precisions": ["fp32", "int8"]}
    if single:
        data["defaults"].update(heads=data["defaults"]["heads"][:1], mlp=data["defaults"]["mlp"][:1])
        data["stages"] = [{key: choices[:1] for key, choices in stage.items()} for stage in data["stages"]]
    return restrict_resolutions(SearchSpace.from_dict(data), [128])


def with_int8_block(space8: SearchSpace, config: SubnetConfig, i: int) -> SubnetConfig:
    """``config`` with block ``i`` int8 (its heads, MLP and stage kept)."""
    return space8.validate(config.with_block(i, dataclasses.replace(config.blocks[i], precision="int8")))


def quantized_layers(onnx_model) -> set[str]:
    """The layers (node scopes) an ONNX graph runs as integer matrix products."""
    return {n.name.rsplit("/", 1)[0] for n in onnx_model.graph.node if n.op_type in QUANTIZED_OPS}


def test_int8_sam2_spaces_run_on_every_fp32_device_and_blocks_are_timed_quantized_on_torch(full):
    space8 = int8_space(full)
    for device in ("cpu-torch", "cpu-onnxruntime", "cpu-openvino"):
        check_space_on_device(space8, device)
    with pytest.raises(UserError, match="space sam2_micro_int8 has int8 blocks.*on cpu-openvino-bf16"):
        check_space_on_device(space8, "cpu-openvino-bf16")  # int8 blocks take fp32 activations, as SAM's
    gen = torch.Generator().manual_seed(0)
    kind = next(k for k in block_kinds(space8) if k["kind"] == "transition" and k["precision"] == "int8")
    module, (x,) = kind_module(space8.arch, kind, gen)
    assert isinstance(module, Int8Module) and is_quantized(module.int8) and not is_quantized(module.fp32)
    cfg = with_int8_block(space8, space8.largest(), 1)
    module, (images,) = network_module(build_supernet(space8.model_type, 0), cfg, 0, gen)
    assert isinstance(module, Int8Module) and module.blocks == [1] and module.family == "sam2"
    with torch.inference_mode():
        assert [tuple(o.shape) for o in module(images)] == [(1, 64, 8, 8), (1, 8, 32, 32), (1, 16, 16, 16)]


@pytest.mark.parametrize("backend_cls", [OrtBackend, pytest.param(OpenVinoBackend, marks=pytest.mark.slow)])
def test_onnx_runtimes_time_int8_sam2_kinds_quantized_at_the_layers_torch_quantizes(full, backend_cls):
    """Each int8 Hiera kind (windowed, transition, global; largest heads and MLP) exports with exactly the
    linear layers PyTorch quantizes as integer products, and the runtime's output matches PyTorch's int8
    one (prepare checks it, RuntimeError otherwise)."""
    backend = backend_cls("cpu", 1)
    gen = torch.Generator().manual_seed(0)
    kinds = {(k["kind"], k["window"], k["stage"]): k for k in block_kinds(int8_space(full)) if k["precision"] == "int8"}
    assert {key[0] for key in kinds} == {"window", "transition", "global"}
    for (kind, _, _), entry in kinds.items():
        module, inputs = kind_module(full.arch, entry, gen)
        graph = onnx.load_from_string(int8_onnx_bytes(module, inputs))
        torch_int8 = {onnx_layer(name) for name, m in module.int8.named_modules() if isinstance(m, DynamicLinear)}
        assert len(torch_int8) == (5 if kind == "transition" else 4)  # a transition's shortcut proj as well
        assert quantized_layers(graph) == torch_int8
        assert "DynamicQuantizeLinear" in {n.op_type for n in graph.graph.node}
        backend.prepare(module, inputs)()


def test_int8_sam2_lookup_table_on_onnxruntime_times_the_int8_kinds_and_predicts_with_them(full, tmp_path):
    space8 = int8_space(full, single=True)
    settings = ProfileSettings(blocks=True, samples=0, repeats=1, warmup=1, min_seconds=0, rounds=1, threads=1,
                               progress=False)
    profile_device(space8, "cpu-onnxruntime", settings, root=tmp_path)
    rows = DeviceStore("cpu-onnxruntime", tmp_path).blocks()
    int8_rows = {(r["kind"], r["window"], r["stage"]) for r in rows if r["precision"] == "int8"}
    assert int8_rows == {(r["kind"], r["window"], r["stage"]) for r in rows
                         if r["precision"] == "fp32" and r["kind"] != "fixed"} == set(MICRO_KINDS)
    lut = lut_index(rows)
    cfg = space8.largest()
    parts8 = dict(lut_parts(space8, lut, with_int8_block(space8, cfg, 1)))
    parts32 = dict(lut_parts(space8, lut, cfg))
    assert parts8["blocks[1]"] != parts32["blocks[1]"]
    assert {k: v for k, v in parts8.items() if k != "blocks[1]"} == {k: v for k, v in parts32.items() if k != "blocks[1]"}


def test_fresh_process_validation_times_the_int8_sam2_onnx_on_onnxruntime(full, tmp_path):
    """prepare_subnet writes the int8 encoder ``samnas export`` writes (the subnet's int8 blocks' layers,
    exactly those PyTorch quantizes, as integer products), and a fresh process times that file."""
    space8 = int8_space(full)
    supernet = build_supernet(space8.model_type, 0)
    cfg = with_int8_block(space8, space8.validate(space8.smallest().with_precision("fp32")), 1)
    path = prepare_subnet(supernet, cfg, "onnxruntime", tmp_path / "sub")
    assert path.name == "encoder.int8.onnx"
    sub8 = quantize_subnet(extract(supernet, cfg, quantize=False), cfg)
    torch_int8 = {onnx_layer(name) for name, m in sub8.named_modules() if isinstance(m, DynamicLinear)}
    assert len(torch_int8) == 5 and quantized_layers(onnx.load(str(path))) == torch_int8
    result = time_in_fresh_process("onnxruntime", path, 128, threads=1, repeats=2, warmup=1, min_seconds=0.01)
    assert result["median_ms"] > 0
