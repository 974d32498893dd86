"""Which runtime runs a space's full model fastest on this machine (``samnas latency runtimes``).

Every installed runtime and precision this machine offers times the same extracted full model (its
image encoder, random weights: latency does not depend on their values) in interleaved rounds
(:func:`nas.measure.timing.time_rounds`), so a slow spell of the machine touches them all alike. Each row also
gives its output's error against PyTorch fp32 on the same input, since a faster runtime is only worth
profiling when its embeddings stay close to what the model computes.

A row is a device (:class:`nas.latency.store.DeviceSpec`: backend and float precision) and the precision
of the encoder blocks' linear layers (``fp32``, or ``int8``: every block dynamically quantized, as an int8
search space allows and ``samnas export`` writes it).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from infra.errors import UserError
from nas.measure.fingerprint import bf16_problem_here
from nas.export.onnx_export import compare_embeddings
from nas.measure.timing import Timing, time_rounds
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.extract import extract
from supernet.elastic.build import build_sam

from infra.threads import torch_threads

from .profile import make_backend, network_module

BACKEND_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


@dataclass(frozen=True)
class RuntimeCase:
    """One row to time: a device name and the precision of the encoder blocks' linear layers."""

    device: str
    blocks: str = "fp32"

    @property
    def label(self) -> str:
        return self.device + BLOCK_LABELS[self.blocks]


# blocks: fp32; int8 = every block's linear layers dynamically quantized (PyTorch's own, or the int8 ONNX that
# `samnas export` writes); ptq = OpenVINO's own int8 path, the whole model quantized by NNCF.
BLOCK_LABELS = {"fp32": "", "int8": " (int8 blocks)", "ptq": " (NNCF int8)"}


@dataclass
class RuntimeRow:
    """What one case measured: ``timing`` in ms, ``speedup`` over PyTorch fp32 (>1 is faster), and its
    output's ``cosine`` and relative L2 error (``rel_l2``) against PyTorch fp32 on the same input."""

    case: RuntimeCase
    timing: Timing
    speedup: float
    cosine: float
    rel_l2: float

    def as_dict(self) -> dict:
        return {"device": self.case.device, "blocks": self.case.blocks, **self.timing.as_dict(),
                "speedup": self.speedup, "cosine": self.cosine, "rel_l2": self.rel_l2}


def installed_cases(hardware: str = "cpu", int8: bool = True) -> list[RuntimeCase]:
    """Every (runtime, precision) this machine can time: backends whose package imports, bf16 where the
    CPU has native bf16 (:func:`nas.measure.fingerprint.bf16_problem`), int8 blocks on each backend when ``int8``."""
    bf16 = bf16_problem_here() is None
    cases = []
    for backend, module in BACKEND_MODULES.items():
        if importlib.util.find_spec(module) is None:
            continue
        device = f"{hardware}-{backend}"
        cases.append(RuntimeCase(device))
        if bf16 and backend != "onnxruntime":
            cases.append(RuntimeCase(f"{device}-bf16"))
        if int8:
            cases.append(RuntimeCase(device, "int8"))
        if int8 and backend == "openvino" and importlib.util.find_spec("nncf") is not None:
            cases += [RuntimeCase(device, "ptq")] + ([RuntimeCase(f"{device}-bf16", "ptq")] if bf16 else [])
    return cases


def first_output(out) -> np.ndarray:
    """The first output of a prepared callable, whatever the runtime returns, as float32 numpy."""
    if isinstance(out, torch.Tensor):
        return out.float().numpy()
    if isinstance(out, (list, tuple)):
        return first_output(out[0])
    if hasattr(out, "to_tuple"):  # OpenVINO's OVDict
        return np.asarray(out.to_tuple()[0], dtype=np.float32)
    return np.asarray(out, dtype=np.float32)


def full_config(space: SearchSpace, resolution: int | None, blocks: str) -> SubnetConfig:
    """The space's largest config at ``resolution`` (default the space's largest), every kept block ``blocks``
    (int8 whether or not the space itself offers int8: the row shows what an int8 space would gain)."""
    config = space.largest()
    if resolution is not None:
        if resolution not in space.resolutions:
            raise UserError(f"--resolution {resolution}: space {space.name} offers {list(space.resolutions)}")
        config = config.replace(resolution=resolution)
    config = space.validate(config)
    # (ptq quantizes the fp32 export itself)
    return config.with_precision("int8") if blocks == "int8" else config


def compare_runtimes(space: SearchSpace, cases: list[RuntimeCase], threads: int = 1, resolution: int | None = None,
                     rounds: int = 3, repeats: int = 6, warmup: int = 2, min_seconds: float = 0.3,
                     seed: int = 0) -> list[RuntimeRow]:
    """Time ``cases`` on ``space``'s full model (random weights) in interleaved rounds; rows fastest first.

    The first case must be ``cpu-torch`` with fp32 blocks: speed-ups and errors are against it.
    """
    supernet = build_sam(space.model_type, seed=seed)

    def build(case: RuntimeCase):
        config = full_config(space, resolution, case.blocks)
        return network_module(supernet, config, 0, torch.Generator().manual_seed(seed))

    return compare_modules(build, cases, threads, rounds, repeats, warmup, min_seconds, seed)


def compare_modules(build, cases: list[RuntimeCase], threads: int = 1, rounds: int = 3, repeats: int = 6,
                    warmup: int = 2, min_seconds: float = 0.3, seed: int = 0) -> list[RuntimeRow]:
    """Time ``build(case) -> (module, inputs)`` on each case's runtime in interleaved rounds; rows fastest first.

    ``cases[0]`` must be ``cpu-torch`` with fp32 blocks (the reference of speed-ups and errors). Each module is
    exported / compiled once, before any timing (that time is not counted).
    """
    if not cases or cases[0] != RuntimeCase("cpu-torch"):
        raise ValueError("the first case must be cpu-torch with fp32 blocks (the reference)")
    fns, outputs = [], []
    with torch_threads(threads):
        for case in cases:
            module, inputs = build(case)
            backend = make_backend(case.device, threads)
            fn = backend.prepare_ptq(module, inputs) if case.blocks == "ptq" else backend.prepare(module, inputs)
            fns.append(fn)
            outputs.append(first_output(fn()))
        result = time_rounds(fns, rounds=rounds, repeats=repeats, warmup=warmup, min_seconds=min_seconds,
                             shuffle_seed=seed, max_rounds=2 * rounds)
    ref_ms = result.timings[0].median_ms
    rows = []
    for case, timing, out in zip(cases, result.timings, outputs):
        err = compare_embeddings(out, outputs[0])
        rows.append(RuntimeRow(case, timing, ref_ms / timing.median_ms, err["cosine"], err["rel_l2"]))
    return sorted(rows, key=lambda r: r.timing.median_ms)


def decoder_runtimes(space: SearchSpace, cases: list[RuntimeCase], threads: int = 1, resolution: int | None = None,
                     prompt_sets: int = 1, rounds: int = 3, repeats: int = 6, seed: int = 0) -> list[RuntimeRow]:
    """Like :func:`compare_runtimes` for the prompt encoder + mask decoder on SAM's ONNX contract
    (:class:`nas.export.onnx_export.PromptDecoderOnnx`: ``prompt_sets`` sets of one point plus SAM's padding point, a
    mask input, masks upscaled to a 300 x 400 photo). Only fp32-block cases apply: int8 is encoder-only.
    The error columns compare the upscaled mask logits."""
    from nas.export.onnx_export import DECODER_INPUTS, PromptDecoderOnnx, decoder_example

    model = build_sam(space.model_type, seed=seed)
    config = full_config(space, resolution, "fp32")
    decoder = PromptDecoderOnnx(extract(model, config)).eval()
    feed = decoder_example(decoder.model, batch=prompt_sets, points=2, seed=seed)
    feed["point_labels"][:, 1] = -1  # one point plus SAM's padding point, as an interactive click sends
    inputs = tuple(torch.from_numpy(feed[name]) for name in DECODER_INPUTS)
    fp32_cases = [c for c in cases if c.blocks == "fp32"]
    return compare_modules(lambda case: (decoder, inputs), fp32_cases, threads, rounds, repeats, seed=seed)


def subnet_runtimes(supernet, config: SubnetConfig, threads: int = 1, rounds: int = 3, repeats: int = 5) -> list[RuntimeRow]:
    """``config``'s image encoder (its own weights and block precisions) on every runtime of this machine's CPU
    that runs it: bf16 devices only for configs without int8 blocks. Rows fastest first; errors against
    PyTorch fp32 of the same subnet with every block fp32."""
    int8 = bool(config.int8_blocks())
    cases = installed_cases(int8=False)
    if int8:  # the reference, then the config's own int8 blocks on every fp32 runtime
        cases = cases[:1] + [RuntimeCase(c.device, "int8") for c in cases if not c.device.endswith("-bf16")]
    fp32 = config.with_precision("fp32")

    def build(case: RuntimeCase):
        return network_module(supernet, config if case.blocks == "int8" else fp32, 0, torch.Generator().manual_seed(0))

    return compare_modules(build, cases, threads, rounds, repeats)


def module_runtimes(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], threads: int = 1, rounds: int = 3,
                    repeats: int = 5) -> list[RuntimeRow]:
    """An fp32 module (an extracted subnet's encoder as exported, SAM's or SAM 2's) on every fp32 runtime and
    float precision of this machine's CPU, as :func:`subnet_runtimes` times an fp32 config; rows fastest first,
    errors on the module's first output."""
    return compare_modules(lambda case: (module, inputs), installed_cases(int8=False), threads, rounds, repeats)


MIN_COSINE = 0.999  # the fastest row at least this close to fp32 is the one to profile


def recommendation(rows: list[RuntimeRow], space: SearchSpace, threads: int) -> str:
    """Which device to profile: the fastest row whose output stays within :data:`MIN_COSINE` of fp32."""
    devices = [r for r in rows if r.case.blocks != "ptq"]  # NNCF int8 is measured here, not yet a device
    good = [r for r in devices if r.cosine >= MIN_COSINE]
    best = good[0] if good else devices[0]
    int8_note = (f" with an int8 space such as {space.name}_int8" if best.case.blocks == "int8" else "")
    line = (f"fastest here with embeddings within cosine {MIN_COSINE} of fp32: {best.case.label} "
            f"({best.speedup:.2f}x PyTorch fp32); profile it{int8_note}: samnas latency profile --space "
            f"{space.name}{'_int8' if best.case.blocks == 'int8' else ''} --device {best.case.device} --blocks "
            f"--threads {threads}")
    if rows[0].case.blocks == "ptq":
        line += (f"\n{rows[0].case.label} ran faster still ({rows[0].speedup:.2f}x, cosine {rows[0].cosine:.5f}), "
                 "but samnas does not profile or search NNCF-quantized models yet")
    return line


def render_rows(rows: list[RuntimeRow]) -> list[str]:
    """The table, fastest first: ms (median, p10-p90), speed-up and error against PyTorch fp32."""
    header = ("runtime", "median ms", "p10-p90 ms", "x PyTorch fp32", "cosine to fp32", "rel. L2 to fp32")
    lines = [header] + [
        (r.case.label, f"{r.timing.median_ms:.2f}", f"{r.timing.p10_ms:.2f}-{r.timing.p90_ms:.2f}",
         f"{r.speedup:.2f}", f"{r.cosine:.6f}", f"{r.rel_l2:.4f}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]


def rows_json(rows: list[RuntimeRow]) -> list[dict]:
    return [r.as_dict() for r in rows]


__all__ = ["RuntimeCase", "RuntimeRow", "compare_modules", "compare_runtimes", "subnet_runtimes", "installed_cases", "recommendation",
           "render_rows", "rows_json"]
