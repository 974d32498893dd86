"""Measure latency on this machine: block kinds in isolation and sampled subnets end to end.

Two levels, both with warm-up runs first and then ``repeats`` timed runs (median and
p10/p90 spread). The runs of each measurement are split into ``rounds`` rounds that
interleave over every measurement of the run (:func:`nas.measure.timing.time_rounds`), so that a
slow spell of the machine lands on all of them alike, and a round in which the whole
machine ran slower or faster than in the others is run again (up to ``max_rounds``); the
run reports how much the machine's speed moved (:class:`ProfileRun`):

* **blocks** (the lookup table): for every input resolution of the space, the encoder's
  fixed part (patch embedding + position embedding + neck, i.e. an encoder with no
  blocks), and every block kind (window or global attention x heads x MLP width; SAM 2's
  windowed, global and stage-transition Hiera blocks per stage, :mod:`nas.latency.sam2`) as a
  standalone block with the shapes an extracted subnet has; with ``prompts`` > 0 also the
  prompt encoder + mask decoder for that many single-point prompts.
* **networks**: sampled subnets (always including the space's largest and smallest),
  physically extracted with :func:`supernet.elastic.extract.extract` (what a user deploys, not the
  masked supernet), timed as the image encoder alone (:func:`encoder_module`) and, with ``prompts`` > 0,
  as encoder then decoder.

Backends, from the device name (see :mod:`nas.latency.store`): ``torch`` (eager, under
``inference_mode``) and ``onnxruntime`` (the module exported with the TorchScript-based
exporter and run by an ONNX Runtime session; every export is checked against torch on the
same input). ``cuda-*`` devices need a GPU and fail with a clear message without one.
Weights are random (latency does not depend on their values); seeds are fixed.
"""
from __future__ import annotations

import copy
import io
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from deploy.engines import openvino_config, ort_session_options
from nas.measure.fingerprint import bf16_problem_here, machine_fingerprint
from nas.measure.timing import MIN_SECONDS, ROUNDS, RoundTimings, drift_pct, time_rounds
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.modeling.arch import SamArch
from supernet.elastic.build import build_supernet
from supernet.modeling.build import build_from_spec
from infra.errors import UserError
from infra.threads import torch_threads
from supernet.elastic.extract import extract
from supernet.elastic.quantize import quantize_modules, quantize_subnet
from supernet.modeling.image_encoder import EncoderBlock, ImageEncoderViT
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.arch import Sam2Arch
from supernet.modeling.sam2.model import Sam2

from .store import DeviceStore, device_spec, encoder_block_kinds, profile_document, write_json

ONNX_ATOL = 1e-3  # |ORT - torch| allowed, relative to max(1, |torch output|)


# ---------------------------------------------------------------------- backends


class Backend:
    """Turns a module and example inputs into a zero-argument callable that runs it once.

    ``precision``: the device's float precision (``fp32`` or ``bf16``, see :class:`nas.latency.store.DeviceSpec`).
    """

    name = "base"

    def __init__(self, hardware: str, threads: int, precision: str = "fp32") -> None:
        self.hardware = hardware
        self.threads = threads
        self.precision = precision
        self.device = torch.device("cuda" if hardware == "cuda" else "cpu")

    @property
    def sync(self) -> Callable[[], None] | None:
        """Called around each clock read: waits for queued GPU work (None on the CPU)."""
        return torch.cuda.synchronize if self.hardware == "cuda" else None

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
        raise NotImplementedError

    def info(self) -> dict:
        """Backend facts recorded in the fingerprint."""
        return {"backend": self.name, "hardware": self.hardware, "threads": self.threads,
                "precision": self.precision}


class TorchBackend(Backend):
    """PyTorch eager on the CPU or a CUDA GPU, inside ``torch.inference_mode`` (bf16: under autocast)."""

    name = "torch"

    def prepare(self, module, inputs):
        if isinstance(module, Int8Module) and self.hardware != "cpu":
            raise UserError("int8 blocks run as PyTorch dynamic quantization, which is CPU-only: profile an int8 "
                            "space on cpu-torch or cpu-onnxruntime, or an fp32 space on this GPU")
        if isinstance(module, Int8Module) and self.precision == "bf16":
            raise UserError("int8 blocks run as PyTorch dynamic quantization, which has no bf16 path: profile an "
                            "int8 space on cpu-torch, or an fp32-only space on the bf16 device")
        module = module.to(self.device).eval()
        inputs = tuple(x.to(self.device) for x in inputs)
        bf16 = self.precision == "bf16"

        def run():
            with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
                return module(*inputs)

        return run


def export_onnx_bytes(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
    """``module`` as ONNX (opset :data:`nas.export.onnx_export.OPSET`, inputs ``input0``, ``input1``, ...)."""
    from nas.export.onnx_export import OPSET

    buf = io.BytesIO()
    names = [f"input{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu().eval(), inputs, buf, dynamo=False, opset_version=OPSET,
                          input_names=names)
    return buf.getvalue()


def int8_onnx_bytes(module: "Int8Module", inputs: tuple[torch.Tensor, ...]) -> bytes:
    """The int8 module exactly as ``samnas export`` builds it: the fp32 module exported, then its int8 blocks'
    linear layers quantized by ONNX Runtime (dynamic int8)."""
    import tempfile

    from nas.export.onnx_export import quantize_onnx_blocks

    with tempfile.TemporaryDirectory(prefix="samnas-int8-") as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32_path.write_bytes(export_onnx_bytes(module.fp32, inputs))
        quantize_onnx_blocks(fp32_path, int8_path, module.blocks, family=module.family, prefix=module.prefix)
        return int8_path.read_bytes()


def check_int8_matches(module: "Int8Module", inputs: tuple[torch.Tensor, ...], got: np.ndarray, runtime: str) -> None:
    """RuntimeError when a runtime's int8 output is further from PyTorch's int8 one than export accepts
    (``got``: the first output; a SAM 2 encoder's is the image embedding)."""
    from nas.export.onnx_export import ONNX_INT8_TOLERANCE, compare_embeddings, int8_within_tolerance

    with torch.inference_mode():
        want = module(*inputs)
        want = (want[0] if isinstance(want, (tuple, list)) else want).numpy()
    error = compare_embeddings(got, want)
    if not int8_within_tolerance(error):
        raise RuntimeError(f"int8 module on {runtime} differs from the PyTorch int8 one: relative L2 "
                           f"{error['rel_l2']:.4f}, cosine {error['cosine']:.5f} (accepted: {ONNX_INT8_TOLERANCE})")


class OrtBackend(Backend):
    """ONNX Runtime: the module is exported to ONNX in memory, checked against torch, then run by a session."""

    name = "onnxruntime"

    def __init__(self, hardware: str, threads: int, precision: str = "fp32") -> None:
        super().__init__(hardware, threads, precision)
        import onnxruntime as ort

        self.ort = ort
        self.provider = "CUDAExecutionProvider" if hardware == "cuda" else "CPUExecutionProvider"
        if self.provider not in ort.get_available_providers():
            raise UserError(
                f"ONNX Runtime here has no {self.provider} (available: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu on a CUDA machine, or profile a cpu-* device"
            )

    def info(self):
        return {**super().info(), "onnxruntime_provider": self.provider}

    def session(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
        """An inference session for ``module`` (int8 blocks quantized as export does), with the options a
        fresh-process validation timing uses."""
        model = int8_onnx_bytes(module, inputs) if isinstance(module, Int8Module) else export_onnx_bytes(module, inputs)
        return self.ort.InferenceSession(model, providers=[self.provider],
                                         sess_options=ort_session_options(self.ort, self.threads))

    def prepare(self, module, inputs):
        int8 = isinstance(module, Int8Module)
        sess = self.session(module, inputs)
        feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)}
        if int8:
            check_int8_matches(module, inputs, sess.run(None, feeds)[0], "ONNX Runtime")
        else:
            check_onnx_matches(module, inputs, sess.run(None, feeds))
        return lambda: sess.run(None, feeds)


PTQ_SAMPLES, PTQ_SEED = 8, 1234  # NNCF calibration inputs for latency and error rows (random, like profiling's)
BF16_MIN_COSINE = 0.999  # a bf16 run's output against fp32 torch: bf16 rounding stays far above this; a broken export does not


class OpenVinoBackend(Backend):
    """OpenVINO's CPU plugin: the module's ONNX export compiled with the device's precision hint, checked against
    torch (fp32: as ONNX Runtime is; bf16: cosine >= :data:`BF16_MIN_COSINE`; int8 blocks: as export checks them)."""

    name = "openvino"

    def __init__(self, hardware: str, threads: int, precision: str = "fp32") -> None:
        super().__init__(hardware, threads, precision)
        import openvino

        self.ov = openvino
        self.core = openvino.Core()

    def info(self):
        return {**super().info(), "openvino": self.ov.get_version().split("-")[0]}

    def compile(self, model):
        """A compiled model for ONNX bytes (or a model already read), with the properties a fresh-process
        validation timing uses."""
        model = self.core.read_model(model, b"") if isinstance(model, bytes) else model
        return self.core.compile_model(model, "CPU", openvino_config(self.precision, self.threads))

    def prepare(self, module, inputs):
        int8 = isinstance(module, Int8Module)
        compiled = self.compile(int8_onnx_bytes(module, inputs) if int8 else export_onnx_bytes(module, inputs))
        request = compiled.create_infer_request()
        feeds = {i: x.numpy() for i, x in enumerate(inputs)}
        got = [request.infer(feeds)[k] for k in range(len(compiled.outputs))]
        if int8:
            check_int8_matches(module, inputs, got[0], "OpenVINO")
        elif self.precision == "bf16":
            check_bf16_matches(module, inputs, got)
        else:
            check_onnx_matches(module, inputs, got)
        return lambda: request.infer(feeds)

    def prepare_ptq(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], samples: int = PTQ_SAMPLES):
        """OpenVINO's own int8 path: the fp32 ONNX export quantized whole (weights and activations) by NNCF
        post-training quantization (transformer preset: softmax, norms and GELU stay float), calibrated on
        ``samples`` inputs drawn like ``inputs``; then compiled as :meth:`prepare` does. Needs ``nncf``."""
        import logging

        import nncf

        nncf.set_log_level(logging.ERROR)  # its progress bars and notes would bury the command's own output
        model = self.core.read_model(export_onnx_bytes(module, inputs), b"")
        gen = torch.Generator().manual_seed(PTQ_SEED)
        calib = [{i: torch.randn(x.shape, generator=gen).numpy() for i, x in enumerate(inputs)} for _ in range(samples)]
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # its progress bars print to stdout
            warnings.simplefilter("ignore")
            model = nncf.quantize(model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=samples)
        request = self.compile(model).create_infer_request()
        feeds = {i: x.numpy() for i, x in enumerate(inputs)}
        return lambda: request.infer(feeds)


def check_bf16_matches(module: nn.Module, inputs: tuple[torch.Tensor, ...], outputs: list[np.ndarray]) -> float:
    """Lowest cosine of a bf16 runtime's outputs to fp32 torch; RuntimeError below :data:`BF16_MIN_COSINE`."""
    from nas.export.onnx_export import compare_embeddings

    with torch.inference_mode():
        ref = module.cpu()(*inputs)
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    worst = min(compare_embeddings(got, want.numpy())["cosine"] for got, want in zip(outputs, ref))
    if not worst >= BF16_MIN_COSINE:
        raise RuntimeError(f"bf16 output of {type(module).__name__} has cosine {worst:.5f} to fp32 torch "
                           f"(expected >= {BF16_MIN_COSINE})")
    return worst


def check_onnx_matches(module: nn.Module, inputs: tuple[torch.Tensor, ...], outputs: list[np.ndarray]) -> float:
    """Largest |ORT - torch| over the outputs; RuntimeError if beyond :data:`ONNX_ATOL` (scaled)."""
    with torch.inference_mode():
        ref = module.cpu()(*inputs)
    ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    worst = 0.0
    for got, want in zip(outputs, ref):
        want = want.numpy()
        diff = float(np.abs(got - want).max()) if want.size else 0.0
        worst = max(worst, diff)
        if not diff <= ONNX_ATOL * max(1.0, float(np.abs(want).max())):
            raise RuntimeError(f"ONNX Runtime output differs from torch by {diff:.3g} for {type(module).__name__}")
    return worst


def check_space_on_device(space: SearchSpace, device: str) -> None:
    """UserError when ``device`` cannot run ``space``'s subnets as the space defines them.

    A bf16 device runs every block in bf16; the per-block int8 of an int8 space is PyTorch's and ONNX
    Runtime's dynamic quantization, which takes fp32 activations, so int8 spaces are profiled and searched
    on fp32 devices.
    """
    spec = device_spec(device)
    if spec.precision == "bf16" and "int8" in space.precisions:
        plain = space.name.removesuffix("_int8")
        raise UserError(f"space {space.name} has int8 blocks, which run with fp32 activations; on {device} search "
                        f"an fp32 space (e.g. {plain}), or search {space.name} on "
                        f"{spec.hardware}-{spec.backend}")


BACKEND_CLASSES = {"torch": TorchBackend, "onnxruntime": OrtBackend, "openvino": OpenVinoBackend}


def make_backend(device: str, threads: int | None = None) -> Backend:
    """The backend for a device name on this machine; UserError when this machine cannot run it."""
    spec = device_spec(device)
    if spec.hardware == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {device} needs a CUDA GPU, and torch.cuda.is_available() is False here; profile it on a GPU "
            f"machine with `samnas latency profile --device {device} --out FILE`, then `samnas latency import FILE`"
        )
    if spec.precision == "bf16" and spec.hardware == "cpu":
        problem = bf16_problem_here()
        if problem:
            raise UserError(f"device {device}: bf16 is not offered here: {problem}; use {spec.hardware}-{spec.backend}")
    threads = int(threads or torch.get_num_threads())
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    return BACKEND_CLASSES[spec.backend](spec.hardware, threads, spec.precision)


# ---------------------------------------------------------------------- what gets timed


class DecoderCall(nn.Module):
    """Prompt encoder + mask decoder for single-point prompts: ``(emb (1,C,h,w), coords (K,1,2), labels (K,1))``."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, embeddings, coords, labels):
        return self.sam.decode(embeddings, points=(coords, labels), multimask_output=True)


class EncoderDecoderCall(nn.Module):
    """Image encoder then decoder (SAM's or SAM 2's): ``(images (1,3,R,R), coords (K,1,2), labels (K,1))``."""

    def __init__(self, sam: Sam | Sam2) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, images, coords, labels):
        return self.sam.decode(self.sam.embed_images(images), points=(coords, labels), multimask_output=True)


def prompt_inputs(resolution: int, prompts: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompts`` random foreground points: coords ``(K, 1, 2)`` in pixels, labels ``(K, 1)``."""
    coords = torch.rand(prompts, 1, 2, generator=gen) * resolution
    return coords, torch.ones(prompts, 1, dtype=torch.int64)


def block_kinds(space: SearchSpace, prompts: int = 0) -> list[dict]:
    """The lookup table's keys for ``space``: fixed part and block kinds per resolution, decoder if ``prompts``.

    Each is a dict of :data:`nas.latency.store.BLOCK_KEY` fields; the block kinds are every
    :func:`nas.latency.store.encoder_block_kinds` entry of the space at each of its heads x MLP widths x precisions.
    """
    kinds_of = encoder_block_kinds(space)
    shapes = sorted({(*kinds_of[b.index], h, m, q) for b in space.blocks for h in b.heads for m in b.mlp
                     for q in b.precisions})
    kinds = []
    for res in space.resolutions:
        base = {"model_type": space.model_type, "resolution": res, "window": -1, "heads": 0, "mlp": 0, "prompts": 0,
                "precision": "fp32", "stage": 0}
        kinds.append({**base, "kind": "fixed"})
        kinds += [{**base, "kind": k, "window": w, "stage": stage, "heads": h, "mlp": m, "precision": q}
                  for k, w, stage, h, m, q in shapes]
        if prompts:
            kinds.append({**base, "kind": "decoder", "prompts": prompts})
    return kinds


def kind_module(arch: SamArch | Sam2Arch, kind: dict,
                gen: torch.Generator) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A freshly built module for one lookup-table entry, and its example inputs (batch 1).

    An int8 block kind is an :class:`Int8Module` of the block (as ``blocks.0``) quantized as a subnet's is,
    its ONNX export quantized at its family's layers (SAM 2's Hiera MLP names them unlike SAM's).
    """
    sam2 = isinstance(arch, Sam2Arch)
    if sam2:
        from .sam2 import sam2_kind_module

        module, inputs = sam2_kind_module(arch, kind, gen)
    else:
        module, inputs = _sam_kind_module(arch, kind, gen)
    if kind.get("precision", "fp32") == "int8":
        fp32 = OneBlock(module).eval()
        return Int8Module(fp32, quantize_modules(copy.deepcopy(fp32)), [0], "sam2" if sam2 else "sam",
                          OneBlock.PREFIX), inputs
    return module.eval(), inputs


def _sam_kind_module(arch: SamArch, kind: dict, gen: torch.Generator) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """:func:`kind_module` of a SAM (ViT) entry, fp32."""
    res = kind["resolution"]
    grid = res // arch.patch_size
    if kind["kind"] == "fixed":
        module = ImageEncoderViT(res, arch.patch_size, arch.embed_dim, arch.head_dim, [], arch.prompt_embed_dim)
        return module, (torch.randn(1, 3, res, res, generator=gen),)
    if kind["kind"] == "block":
        module = EncoderBlock(arch.embed_dim, kind["heads"], arch.head_dim, kind["mlp"], kind["window"], grid)
        return module, (torch.randn(1, grid, grid, arch.embed_dim, generator=gen),)
    if kind["kind"] == "decoder":
        module = DecoderCall(build_from_spec(arch, [], img_size=res))
        emb = torch.randn(1, arch.prompt_embed_dim, grid, grid, generator=gen)
        return module, (emb, *prompt_inputs(res, kind["prompts"], gen))
    raise ValueError(f"unknown block kind {kind['kind']!r}")


class Int8Module(nn.Module):
    """A module whose encoder blocks ``blocks`` run int8: as ``int8``, the module quantized in PyTorch;
    ``fp32`` keeps the module before quantizing, from which the ONNX backends build their own int8 version
    (a quantized PyTorch module cannot be exported to ONNX), quantizing the linear layers that ``family``
    (``sam`` / ``sam2``) names in block ``i`` at ``prefix`` (None: where the family's encoder holds it; see
    :func:`nas.export.onnx_export.int8_matmul_nodes`)."""

    def __init__(self, fp32: nn.Module, int8: nn.Module, blocks: list[int], family: str,
                 prefix: str | None = None) -> None:
        super().__init__()
        self.fp32, self.int8, self.blocks = fp32.eval(), int8.eval(), list(blocks)
        self.family, self.prefix = family, prefix

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.int8(*inputs)


class OneBlock(nn.Module):
    """One encoder block as ``blocks.0``, so that it exports with the node names of an encoder's block,
    each under :data:`PREFIX` (with ``i`` = 0)."""

    PREFIX = "/blocks.{i}/"

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([block])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


def network_module(supernet: Sam | Sam2, config: SubnetConfig, prompts: int, gen: torch.Generator):
    """The extracted subnet as the module to time (encoder, or encoder + decoder if ``prompts``), with inputs.

    int8 blocks run quantized (an :class:`Int8Module` for the encoder alone).
    """
    res = config.resolution
    images = torch.randn(1, 3, res, res, generator=gen)
    if prompts:
        return EncoderDecoderCall(extract(supernet, config)).eval(), (images, *prompt_inputs(res, prompts, gen))
    if config.int8_blocks():
        from nas.export.onnx_export import model_family

        fp32 = extract(supernet, config, quantize=False)
        return Int8Module(encoder_module(fp32), encoder_module(quantize_subnet(fp32, config)),
                          config.int8_blocks(), model_family(fp32)), (images,)
    return encoder_module(extract(supernet, config)).eval(), (images,)


def encoder_module(subnet: Sam | Sam2) -> nn.Module:
    """What an extracted subnet's image encoder runs as, ``(1, 3, R, R)`` images in: SAM's ``image_encoder``
    (the embeddings out), SAM 2's :class:`supernet.modeling.sam2.model.Sam2EncoderCall` (the image embedding and the two
    high-resolution features the decoder takes)."""
    if isinstance(subnet, Sam2):
        from supernet.modeling.sam2.model import Sam2EncoderCall

        return Sam2EncoderCall(subnet)
    return subnet.image_encoder


def sample_configs(space: SearchSpace, n: int, seed: int = 0) -> list[SubnetConfig]:
    """``n`` distinct valid configs: the largest, the smallest, then random samples (fixed ``seed``).

    Returns fewer when the space has fewer distinct configs than asked for.
    """
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    candidates = [space.largest(), space.smallest()]
    attempts = 0
    while len(out) < n and attempts < 50 * n + 10:
        cfg = space.validate(candidates.pop(0) if candidates else space.sample(rng))
        attempts += 1
        if cfg not in seen:
            seen.add(cfg)
            out.append(cfg)
    return out


def restrict_resolutions(space: SearchSpace, resolutions: list[int] | None) -> SearchSpace:
    """``space`` allowing only ``resolutions`` (same name); UserError for one it does not allow."""
    if not resolutions:
        return space
    bad = [r for r in resolutions if r not in space.resolutions]
    if bad:
        raise UserError(f"--resolutions: {bad} not in space {space.name}'s resolutions {list(space.resolutions)}")
    data = space.to_dict()
    data["resolutions"] = sorted(set(resolutions), reverse=True)
    return SearchSpace.from_dict(data, source=space.source)


# ---------------------------------------------------------------------- profiling runs


@dataclass
class ProfileRun:
    """What one profiling run measured, ready for a device folder or a portable file.

    ``speed``: the machine's relative slowness in each round run (:func:`nas.measure.timing.speed_factors`);
    ``kept``: the rounds whose timings were stored (:func:`nas.measure.timing.steady_rounds`).
    """

    device: str
    fingerprint: dict
    spaces: dict  # space name -> space-file mapping
    blocks: list[dict] = field(default_factory=list)
    networks: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    rounds: int = 1
    speed: list[float] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)  # the drift probe's baseline (nas.latency.probe)
    process_speed: list[float] = field(default_factory=list)  # per profiling process, with processes > 1

    @property
    def process_spread_pct(self) -> float:
        """How much slower the slowest profiling process ran than the fastest, in percent (0 with one process)."""
        return drift_pct(self.process_speed)

    def document(self) -> dict:
        return profile_document(self.device, self.fingerprint, self.spaces, self.blocks, self.networks, self.probes)

    @property
    def drift_pct(self) -> float:
        """How much slower the slowest stored round ran than the fastest, in percent (0 with one round)."""
        return drift_pct([self.speed[k] for k in self.kept])

    @property
    def machine_drift_pct(self) -> float:
        """The same over every round run, the re-timed ones included: how unsteady the machine was."""
        return drift_pct(self.speed)

    @property
    def extra_rounds(self) -> int:
        """Rounds run again because the machine's speed moved (0 on a steady machine)."""
        return len(self.speed) - self.rounds


BURN_IN_S = 0.5  # untimed running before the first measurement of a run: caches, clocks, thread pools
KEEP_BYTES = 2 * 1024**3  # weights of prepared modules kept between rounds; the rest are rebuilt at each visit
# OpenVINO runs the same compiled model at a speed that is steady within a process but differs from one process to
# the next (on this project's AMD VM sd 4-5% for sam_micro subnets of 1 ms and more, one factor for every model of
# the process); a deployment is a fresh process, so its profile is the median over this many processes.
OPENVINO_PROCESSES = 3


@dataclass
class _Job:
    """One measurement to take: the row's fields besides the timing, how to build the module, and its table."""

    fields: dict
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]
    rows: list[dict]


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


class _Prepared(Sequence):
    """The jobs' prepared callables, for :func:`nas.measure.timing.time_rounds`.

    Looking one up builds it unless it is kept: jobs are kept for the whole run, in the
    order they are first looked up, while their weights fit in ``keep_bytes``; the others
    are built at every visit and dropped after it (a ViT-B space does not fit in memory at once). Building
    happens before the visit's warm-up runs, never inside a timed run.
    """

    def __init__(self, backend: Backend, jobs: list[_Job], keep_bytes: int) -> None:
        self.backend, self.jobs, self.keep_bytes = backend, jobs, keep_bytes
        self.kept: dict[int, Callable] = {}
        self.held = 0

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Callable[[], object]:
        if i in self.kept:
            return self.kept[i]
        module, inputs = self.jobs[i].build()
        size = module_bytes(module)
        fn = self.backend.prepare(module, inputs)
        if self.held + size <= self.keep_bytes:
            self.kept[i] = fn
            self.held += size
        return fn


def _run_jobs(backend: Backend, jobs: list[_Job], rounds: int, max_rounds: int, repeats: int, warmup: int,
              min_seconds: float, seed: int, bar, keep_bytes: int = KEEP_BYTES) -> RoundTimings:
    """Time ``jobs`` in interleaved rounds (:func:`nas.measure.timing.time_rounds`) and append their rows."""
    fns = _Prepared(backend, jobs, keep_bytes)
    first = fns[0]
    until = time.perf_counter() + BURN_IN_S
    while time.perf_counter() < until:
        first()
    del first
    spent = [0.0] * len(jobs)
    last = [time.perf_counter()]

    def step(r: int, index: int) -> None:
        now = time.perf_counter()
        spent[index] += now - last[0]
        last[0] = now
        if r >= rounds and bar.total < len(jobs) * (r + 1):
            bar.total = len(jobs) * (r + 1)  # a round run again: the bar grows by one round
        bar.update()

    result = time_rounds(fns, rounds=rounds, repeats=repeats, warmup=warmup, sync=backend.sync,
                         min_seconds=min_seconds, shuffle_seed=seed, max_rounds=max_rounds, on_step=step)
    for job, timing, seconds in zip(jobs, result.timings, spent):
        job.rows.append({**job.fields, **timing.as_dict(), "seconds": seconds})
    return result


def device_fingerprint(backend: Backend) -> dict:
    """:func:`nas.measure.fingerprint.machine_fingerprint` plus the backend, hardware and threads used."""
    return {**machine_fingerprint(), **backend.info()}


@dataclass
class ProfileSettings:
    """What :func:`profile` times, and how. ``samnas latency profile`` reads its option defaults from here
    (all but ``blocks``, which the command turns on only with ``--blocks``).

    ``blocks``: time the lookup table's entries; ``samples``: number of subnets timed end
    to end; ``prompts`` > 0: also time encoder + decoder (and the decoder alone) for that
    many single-point prompts; ``repeats``/``warmup``: timed and untimed runs per
    measurement, and ``min_seconds``: keep timing a measurement until its timed runs add up
    to this long (tiny models get hundreds of runs, large ones just ``repeats``);
    ``rounds``: split each measurement's runs into this many rounds, interleaved over every
    measurement of the run in a fresh random order each round (see
    :func:`nas.measure.timing.time_rounds`; modules up to :data:`KEEP_BYTES` of weights stay prepared,
    the others are rebuilt at each visit); ``max_rounds``: when the machine's speed moved
    between rounds, run more rounds, up to this many in all (default ``2 * rounds``), until
    ``rounds`` of them ran at one steady speed; only those are stored; ``threads``: intra-op threads (torch
    and ONNX Runtime; default torch's current count); ``resolutions``: profile only these
    input sides; ``configs``: time these subnets instead of ``samples`` sampled ones; ``probes``:
    also time the drift probe's subnets (:func:`nas.latency.probe.probe_configs`, image encoder)
    in the same rounds, as ``run.probes`` (the baseline ``samnas latency probe`` compares with);
    ``processes``: run the whole profile this many times, each in a new process, one after another, and store
    the median over them (:func:`nas.latency.processes.profile_in_processes`; default
    :func:`default_processes`); ``process_index``: which of them this is (it moves the visiting order).
    """

    blocks: bool = True
    samples: int = 30
    prompts: int = 0
    repeats: int = 5
    warmup: int = 2
    min_seconds: float = MIN_SECONDS
    rounds: int = ROUNDS
    max_rounds: int | None = None
    threads: int | None = None
    seed: int = 0
    resolutions: list[int] | None = None
    configs: list[SubnetConfig] | None = None
    probes: bool = True
    progress: bool = True
    processes: int | None = None
    process_index: int = 0


def default_processes(backend: str) -> int:
    """Profiling processes a backend needs by default: :data:`OPENVINO_PROCESSES` for OpenVINO, else 1."""
    return OPENVINO_PROCESSES if backend == "openvino" else 1


def profile(space: SearchSpace | str, device: str, settings: ProfileSettings | None = None) -> ProfileRun:
    """Measure ``space`` on this machine as ``device`` as ``settings`` say (:class:`ProfileSettings`); nothing is written."""
    s = settings or ProfileSettings()
    processes = s.processes or default_processes(device_spec(device).backend)
    if processes > 1:
        from .processes import profile_in_processes

        return profile_in_processes(space, device, s, processes)
    blocks, samples, prompts, repeats, warmup = s.blocks, s.samples, s.prompts, s.repeats, s.warmup
    rounds, max_rounds, seed, configs = s.rounds, s.max_rounds, s.seed, s.configs
    space = space if isinstance(space, SearchSpace) else SearchSpace.load(space)
    space = restrict_resolutions(space, s.resolutions)
    if repeats < 1 or rounds < 1 or warmup < 0 or samples < 0 or prompts < 0 or (max_rounds or rounds) < rounds:
        raise UserError("--repeats and --rounds must be >= 1, --max-rounds >= --rounds, and --warmup, --samples, "
                        "--prompts >= 0")
    if configs is not None:
        configs = [space.validate(c) for c in configs]
        samples = len(configs)
    if not blocks and not samples:
        raise UserError("nothing to profile: give --blocks and/or --samples N with N > 0")
    check_space_on_device(space, device)
    backend = make_backend(device, s.threads)
    if prompts and backend.name != "torch":
        raise UserError(f"--prompts: the {backend.name} backend times the exported image encoder only; "
                        "time encoder + decoder on a *-torch device")
    kinds = block_kinds(space, prompts) if blocks else []
    if configs is None:
        configs = sample_configs(space, samples, seed) if samples else []
    parts = [("encoder", 0)] + ([("encoder+decoder", prompts)] if prompts else [])
    run = ProfileRun(device, {}, {space.name: space.to_dict()}, rounds=rounds)
    start = time.perf_counter()
    with torch_threads(backend.threads), torch.random.fork_rng(devices=[]):  # the caller's RNG state is kept
        run.fingerprint = device_fingerprint(backend)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        jobs = [_Job(kind, lambda kind=kind: kind_module(space.arch, kind, gen), run.blocks) for kind in kinds]
        if configs:
            supernet = build_supernet(space.model_type, seed)
            jobs += [_Job({"space": space.name, "part": part, "prompts": k, "resolution": cfg.resolution,
                           "config": cfg.key},
                          lambda cfg=cfg, k=k: network_module(supernet, cfg, k, gen), run.networks)
                     for cfg in configs for part, k in parts]
        if s.probes:
            from .probe import probe_configs

            supernet = supernet if configs else build_supernet(space.model_type, seed)
            jobs += [_Job({"space": space.name, "config": cfg.key},
                          lambda cfg=cfg: network_module(supernet, cfg, 0, gen), run.probes)
                     for cfg in probe_configs(space)]
        bar = tqdm(total=len(jobs) * rounds, desc=f"profiling {space.name} on {device}", unit="timing",
                   disable=not s.progress, dynamic_ncols=True)
        with bar:
            timed = _run_jobs(backend, jobs, rounds, max_rounds or 2 * rounds, repeats, warmup, s.min_seconds,
                              seed + 7919 * s.process_index, bar)
            run.speed, run.kept = timed.factors, timed.kept
    run.seconds = time.perf_counter() - start
    return run


def device_problem(device: str, threads: int | None = None, root=None) -> str | None:
    """Why this machine cannot time ``device`` as its predictor was profiled (None when it can).

    It can when the device's stored fingerprint (``fingerprint.json``) agrees with this machine's, at
    ``threads`` (:meth:`nas.latency.store.DeviceStore.fingerprint_differences`): same CPU, backend, libraries, GPU.
    """
    store = DeviceStore(device, root)
    stored = store.fingerprint()
    if stored is None:
        return f"device {device} has no measurements in {store.folder}"
    try:
        backend = make_backend(device, threads or stored.get("threads"))
    except UserError as err:
        return str(err)
    with torch_threads(backend.threads):
        diff = store.fingerprint_differences(device_fingerprint(backend))
    if diff:
        return (f"device {device} was profiled on another machine or set-up ("
                + ", ".join(f"{f} {old!r} there, {new!r} here" for f, old, new in diff) + ")")
    return None


def profile_device(space: SearchSpace | str, device: str, settings: ProfileSettings | None = None, *, root=None,
                   out=None, replace: bool = False) -> ProfileRun:
    """:func:`profile`, then store the run under ``<root>/<device>/`` or, with ``out``, write one portable JSON file.

    With ``out`` the local results are left alone (the file is meant for another
    machine's ``samnas latency import``). ``replace`` drops the device's old measurements.
    """
    store = DeviceStore(device, root)
    if out is None:  # fail before minutes of measuring, not after
        backend = make_backend(device, (settings or ProfileSettings()).threads)
        with torch_threads(backend.threads):
            store.check_same_device(device_fingerprint(backend), replace)
    run = profile(space, device, settings)
    if out is not None:
        write_json(Path(out), run.document())
    else:
        store.add_measurements(run.fingerprint, run.spaces, run.blocks, run.networks, replace=replace,
                               probes=run.probes)
    return run


def profile_and_fit_quick(space: SearchSpace | str, device: str, root=None, samples: int = 24, repeats: int = 3,
                          threads: int | None = None, progress: bool = True, min_seconds: float = 0.05):
    """Profile this machine briefly (block table + ``samples`` subnets), fit, and return the predictor.

    For a first search on a machine with no predictor yet: on ``sam_micro`` this takes
    seconds; on a ViT-B space minutes (the progress bar shows the time left).
    """
    from .predictor import fit_device, load_predictor

    space = space if isinstance(space, SearchSpace) else SearchSpace.load(space)
    profile_device(space, device, ProfileSettings(blocks=True, samples=samples, repeats=repeats, threads=threads,
                                                  progress=progress, min_seconds=min_seconds), root=root)
    fit_device(device, root=root, space=space.name)
    return load_predictor(device, space=space.name, root=root)
