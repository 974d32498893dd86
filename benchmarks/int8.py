"""Benchmark for int8 precision: the full model's image encoder with every block int8 against fp32.

On ``--space`` (default ``sam_vit_b_int8``: the full ViT-B) at ``--resolution`` (default 512 px),
extract the largest config twice, all fp32 and with every block ``precision: int8``, and time
the image encoder in PyTorch eager (int8: ``supernet.elastic.quantize.quantize_subnet``) and in
ONNX Runtime (int8: ``nas.export.onnx_export.quantize_encoder_onnx`` on the fp32 export, exactly what
``samnas export`` writes), with ``--threads`` threads (default 1). The four variants are
interleaved: each round runs each of them once, in turn, after ``--warmup`` untimed runs each,
so a change in the shared machine's speed hits them alike. Reported: median and p10-p90 per
variant, int8-over-fp32 speedups per runtime (ratio of medians, and the p10-p90 of the per-round
ratios), and the embedding error against fp32 PyTorch on one fixed random image (cosine and
relative L2); the ONNX int8 encoder against the PyTorch int8 subnet too (what the export checks).
A fifth variant, ONNX Runtime int8 with full 8-bit weights (``reduce_range`` off), shows why the
export uses 7-bit weights: on CPUs without VNNI, ONNX Runtime's AVX2 u8 x s8 kernel adds pairs
of products in 16 bits, which 8-bit weights can saturate.

The weights are random (``build_sam(model_type, seed=0)``), standing in for a checkpoint: the
timings do not depend on weight values, the errors do (trained weights have other ranges).

Acceptance (issue 16): int8 at least 1.4x faster than fp32 in ONNX Runtime, 1 thread.

    python benchmarks/int8.py                      # sam_vit_b at 512 px, 15 rounds (minutes)
    python benchmarks/int8.py --space sam_micro_int8 --resolution 128 --repeats 1   # smoke test
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import load_averages, machine_header, markdown_table, reproduce_command, write_results

from deploy.engines import ort_session_options
from nas.export.onnx_export import compare_embeddings, export_encoder_onnx, quantize_encoder_onnx
from nas.measure.timing import steady_allocator, summarize
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.extract import extract
from supernet.elastic.quantize import quantize_subnet
from supernet.elastic.build import build_sam

TARGET_ORT_SPEEDUP = 1.4
FULL_RANGE = "int8, 8-bit weights"  # the variant without reduce_range (not what samnas export writes)


def configs(space: SearchSpace, resolution: int) -> tuple[SubnetConfig, SubnetConfig]:
    """The largest config at ``resolution``, all fp32 and with every block int8."""
    fp32 = space.validate(space.largest().replace(resolution=resolution))
    int8 = space.validate(fp32.with_precision("int8"))
    return fp32, int8


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sam_vit_b_int8", help="a space with int8 among its precisions")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15, help="rounds; each times every variant once")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topic", default="int8")
    args = parser.parse_args(argv)
    with steady_allocator():  # models and timings with the profiling malloc set-up, as samnas times them
        return run_benchmark(args, argv)


def run_benchmark(args: argparse.Namespace, argv) -> int:
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    load_start = load_averages()
    space = SearchSpace.load(args.space)
    fp32_cfg, int8_cfg = configs(space, args.resolution)
    model = build_sam(space.model_type, seed=0)  # random weights stand in for a checkpoint
    sub_fp32 = extract(model, fp32_cfg)
    sub_int8 = quantize_subnet(sub_fp32, int8_cfg)
    res = args.resolution
    x = torch.randn(1, 3, res, res, generator=torch.Generator().manual_seed(0))
    xn = x.numpy()
    with tempfile.TemporaryDirectory(prefix="samnas-int8-") as tmp:
        t0 = time.perf_counter()
        fp32_onnx = export_encoder_onnx(sub_fp32, Path(tmp) / "fp32.onnx")
        int8_onnx = quantize_encoder_onnx(fp32_onnx, Path(tmp) / "int8.onnx", int8_cfg, family="sam")
        int8_full_onnx = quantize_encoder_onnx(fp32_onnx, Path(tmp) / "int8_8bit.onnx", int8_cfg, reduce_range=False, family="sam")
        export_s = time.perf_counter() - t0
        sessions = {name: ort.InferenceSession(str(path), sess_options=ort_session_options(ort, args.threads),
                                               providers=["CPUExecutionProvider"])
                    for name, path in (("fp32", fp32_onnx), ("int8", int8_onnx), (FULL_RANGE, int8_full_onnx))}
        sizes_mb = {"fp32": fp32_onnx.stat().st_size / 1e6, "int8": int8_onnx.stat().st_size / 1e6}

    def torch_run(sub):
        def run():
            with torch.inference_mode():
                return sub.image_encoder(x).numpy()
        return run

    def ort_run(sess):
        return lambda: sess.run(None, {"images": xn})[0]

    variants = {
        ("torch", "fp32"): torch_run(sub_fp32),
        ("torch", "int8"): torch_run(sub_int8),
        ("onnxruntime", "fp32"): ort_run(sessions["fp32"]),
        ("onnxruntime", "int8"): ort_run(sessions["int8"]),
        ("onnxruntime", FULL_RANGE): ort_run(sessions[FULL_RANGE]),
    }
    outputs = {key: fn() for key, fn in variants.items()}  # also the first warm-up run
    for _ in range(args.warmup - 1):
        for fn in variants.values():
            fn()
    samples = {key: [] for key in variants}
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        for key, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - start) * 1000.0)
    timing_s = time.perf_counter() - t0
    load_end = load_averages()

    reference = outputs[("torch", "fp32")]
    rows = []
    for (runtime, precision), ms in samples.items():
        stats = summarize(ms)
        err = compare_embeddings(outputs[(runtime, precision)], reference)
        fp32_ms = samples[(runtime, "fp32")]
        ratios = np.array(fp32_ms) / np.array(ms)
        rows.append({
            "runtime": runtime, "precision": precision,
            "median_ms": round(stats.median_ms, 1), "p10_ms": round(stats.p10_ms, 1), "p90_ms": round(stats.p90_ms, 1),
            "repeats": stats.repeats,
            "speedup_vs_fp32": round(float(np.median(fp32_ms)) / stats.median_ms, 3),
            "round_speedup_p10": round(float(np.percentile(ratios, 10)), 3),
            "round_speedup_p90": round(float(np.percentile(ratios, 90)), 3),
            "cosine_vs_torch_fp32": round(err["cosine"], 6), "rel_l2_vs_torch_fp32": round(err["rel_l2"], 5),
        })
    ort_vs_torch_int8 = compare_embeddings(outputs[("onnxruntime", "int8")], outputs[("torch", "int8")])
    by = {(r["runtime"], r["precision"]): r for r in rows}
    ort_speedup = by[("onnxruntime", "int8")]["speedup_vs_fp32"]
    met = ort_speedup >= TARGET_ORT_SPEEDUP

    table_rows = [{
        "runtime": r["runtime"], "precision": r["precision"],
        "median ms": r["median_ms"], "p10-p90 ms": f"{r['p10_ms']}-{r['p90_ms']}",
        "int8 speedup (median; per-round p10-p90)": "1" if r["precision"] == "fp32" else
        f"**{r['speedup_vs_fp32']:.2f}x** ({r['round_speedup_p10']:.2f}-{r['round_speedup_p90']:.2f})",
        "cosine to torch fp32": f"{r['cosine_vs_torch_fp32']:.6f}", "rel. L2 to torch fp32": f"{r['rel_l2_vs_torch_fp32']:.5f}",
    } for r in rows]
    command = reproduce_command("int8.py", argv)
    header = machine_header(command, args.repeats, threads=args.threads, repeats_line=(
        f"- repeats: {args.repeats} interleaved rounds (each runs the {len(variants)} variants once, in turn) after "
        f"{args.warmup} warm-up runs each; latency is the median, spread is p10-p90"))
    header += (f"\n- load average (1/5/15 min): {load_start} at the start, {load_end} at the end (about 1 while "
               f"this benchmark runs alone at 1 thread on this 2-core VM; more means other jobs shared it)"
               f"\n- model: {space.model_type} ({args.space} largest config, {fp32_cfg.num_blocks} blocks) at "
               f"{res} px, **random weights** (seed 0) standing in for a checkpoint; one fixed random image "
               f"(seed 0) for the errors")
    body = "\n".join([
        f"Image encoder, every block's attention qkv/proj and MLP linear layers int8 (dynamic quantization) "
        f"against fp32; patch embedding and neck fp32. PyTorch: `torch.ao.quantization.quantize_dynamic` "
        f"(fbgemm). ONNX Runtime {ort.__version__}: `onnxruntime.quantization.quantize_dynamic` on those "
        f"MatMuls, 7-bit int8 weights (reduce_range), uint8 activations, as `samnas export` writes it; "
        f"'{FULL_RANGE}' is the same with reduce_range off.",
        "",
        markdown_table(table_rows, list(table_rows[0])),
        "",
        f"- **Acceptance (int8 >= {TARGET_ORT_SPEEDUP}x fp32 in ONNX Runtime, {args.threads} thread"
        f"{'s' if args.threads != 1 else ''}): {'met' if met else 'NOT met'}** ({ort_speedup:.2f}x).",
        f"- ONNX Runtime fp32 vs PyTorch fp32: {by[('torch', 'fp32')]['median_ms'] / by[('onnxruntime', 'fp32')]['median_ms']:.2f}x "
        f"(ratio of medians); int8: {by[('torch', 'int8')]['median_ms'] / by[('onnxruntime', 'int8')]['median_ms']:.2f}x.",
        f"- ONNX Runtime int8 vs PyTorch int8 embeddings (what `samnas export` checks): cosine "
        f"{ort_vs_torch_int8['cosine']:.6f}, relative L2 {ort_vs_torch_int8['rel_l2']:.5f}, max abs "
        f"{ort_vs_torch_int8['max_abs']:.3g}.",
        f"- ONNX model size: fp32 {sizes_mb['fp32']:.1f} MB, int8 {sizes_mb['int8']:.1f} MB; export + quantization "
        f"took {export_s:.0f} s, the timed rounds {timing_s:.0f} s.",
    ])
    csv_rows = [{**r, "ort_int8_vs_torch_int8_cosine": round(ort_vs_torch_int8["cosine"], 6),
                 "ort_int8_vs_torch_int8_rel_l2": round(ort_vs_torch_int8["rel_l2"], 5)} for r in rows]
    path = write_results(args.topic, f"int8 vs fp32: {space.model_type} image encoder at {res} px", header, body,
                         csv_rows)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
