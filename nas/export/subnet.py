"""Export a chosen subnet: standalone checkpoint + config, ONNX encoder, and a model card.

Layout of the output folder (``results/exports/<name>/`` by default)::

    subnet.pt            state dict of the standalone subnet (fp32 weights, whatever the precision)
    subnet.json          config + architecture (``supernet.elastic.extract.load_subnet`` reads both,
                         and quantizes the config's int8 blocks)
    image_encoder.onnx   the image encoder, checked against PyTorch with ONNX Runtime; with int8
                         blocks, ONNX Runtime's dynamic int8 quantization of them
    prompt_decoder.onnx  prompt encoder + mask decoder + mask upscaling on SAM's ONNX contract
                         (``nas.export.onnx_export.PromptDecoderOnnx``), checked against PyTorch
    image_encoder.xml/.bin, prompt_decoder.xml/.bin
                         OpenVINO IR of both halves (fp32 weights), for an OpenVINO device only; the
                         card's ``openvino`` entry names the precision to compile them with
    card.json, card.md   provenance, size, precision per block, quality, predicted and measured latency,
                         both ONNX contracts with this subnet's shapes, and the list of files

``deploy.Runner.from_folder`` runs the folder without PyTorch.

A config with int8 blocks is exported fp32, checked (:data:`ONNX_TOLERANCE`), quantized by ONNX
Runtime (``nas.export.onnx_export.quantize_encoder_onnx``), and the int8 encoder is checked against the
subnet quantized in PyTorch (:data:`ONNX_INT8_TOLERANCE`); its error against fp32 goes on the card.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import torch

from search_spaces.counting import count
from infra.errors import UserError
from supernet.elastic.extract import extract, save_subnet, subnet_metadata
from infra.fileio import atomic_write_text, new_file_mode
from infra.wording import plural
from supernet.elastic.subnet_config import SubnetConfig
from supernet.elastic.quantize import quantize_subnet
from supernet.elastic.ranked import file_sha256
from supernet.modeling.sam import Sam

from nas.measure.fingerprint import machine_fingerprint
from nas.latency.store import device_spec
from nas.export.onnx_export import (DECODER_INPUTS, DECODER_OUTPUTS, DECODER_TOLERANCE, ONNX_INT8_TOLERANCE, decoder_error, decoder_shapes,
                          decoder_within_tolerance, embedding_error, export_decoder_onnx, export_encoder_onnx,
                          int8_within_tolerance, onnx_max_abs_diff, quantize_encoder_onnx)
from nas.studies.study import predictor_line
from nas.measure.timing import MIN_SECONDS, time_callable

ONNX_TOLERANCE = 1e-3  # max |ORT - torch| on the embeddings accepted for an export
# The int8 encoder in ONNX Runtime against the same subnet quantized in PyTorch: both quantize the
# same layers dynamically, but round differently (ORT: 7-bit weights, uint8 activations; torch:
# fbgemm's reduced-range uint8 activations), so they agree to int8 precision, not to 1e-3.
# Measured: sam_micro relative L2 0.004-0.012, cosine >= 0.99993 (tests/test_quantize.py); sam_vit_b
# at 512 px, every block int8, random weights: relative L2 0.034, cosine 0.99942 (results/int8.md).
# Limits on the relative L2 error ||ort - torch|| / ||torch|| and on the cosine:


def measure_encoder_ms(sub: Sam, repeats: int = 5) -> dict:
    """Median and spread (ms) of the subnet's torch encoder on this machine (torch's current threads).

    At least ``repeats`` timed runs and :data:`nas.measure.timing.MIN_SECONDS` of them, after 2 warm-up runs.
    """
    res = sub.resolution
    x = torch.randn(1, 3, res, res)
    with torch.inference_mode():
        torch_t = time_callable(lambda: sub.image_encoder(x), repeats=repeats, warmup=2, min_seconds=MIN_SECONDS)
    return {"torch": torch_t.as_dict()}


def latency_gap(info: dict, check: dict, measured: dict) -> dict:
    """The card's latency check: raw and recalibrated predictions against the latency measured here.

    ``check``: ``{"probe": probe record, "stated_error_pct", "threads"}`` (see ``samnas export``);
    the device's backend picks which measurement compares. ``gap_pct``: (recalibrated -
    measured) / measured; ``flag``: its size is beyond the stated error (the predictor's CV MAPE).
    """
    from nas.latency.store import parse_device

    hardware, backend, _ = parse_device(info["device"])
    factor = check["probe"].get("factor")
    raw = info.get("predicted_raw_ms")
    recal = None if raw is None else raw * (factor or 1.0)
    ms = measured.get(backend, {}).get("median_ms") if hardware == "cpu" else None
    gap = None if ms is None or recal is None else 100 * (recal - ms) / ms
    stated = check.get("stated_error_pct")
    return {
        "backend": backend, "threads": check.get("threads"), "predicted_raw_ms": raw, "probe_factor": factor,
        "predicted_recalibrated_ms": recal, "measured_ms": ms, "gap_pct": gap,
        "raw_gap_pct": None if ms is None or raw is None else 100 * (raw - ms) / ms,
        "stated_error_pct": stated, "flag": gap is not None and stated is not None and abs(gap) > stated,
        "probe": check["probe"],
        "note": "" if ms is not None else f"{info['device']} is not this machine's CPU: nothing measured to compare",
    }


ENCODER_FILE, DECODER_FILE = "image_encoder.onnx", "prompt_decoder.onnx"
# What each file of an export is, for the card's list (only the files written are listed).
EXPORT_FILES = {
    "subnet.pt": "state dict of the standalone subnet (PyTorch, fp32 weights)",
    "subnet.json": "config + architecture; supernet.elastic.extract.load_subnet reads both",
    ENCODER_FILE: "image encoder, ONNX (int8 blocks quantized by ONNX Runtime when the config has them)",
    DECODER_FILE: "prompt encoder + mask decoder + mask upscaling, ONNX, on SAM's ONNX contract",
    "image_encoder.xml": "image encoder, OpenVINO IR (weights in image_encoder.bin)",
    "image_encoder.bin": "weights of image_encoder.xml",
    "prompt_decoder.xml": "prompt decoder, OpenVINO IR (weights in prompt_decoder.bin)",
    "prompt_decoder.bin": "weights of prompt_decoder.xml",
    "card.json": "this card: provenance, latency, checks, both ONNX contracts",
    "card.md": "this card for people",
}


def write_onnx(sub: Sam, config: SubnetConfig, out: Path) -> tuple[Sam, dict]:
    """Write both ONNX halves, each checked against PyTorch (UserError beyond tolerance); returns the
    subnet as the encoder was exported (int8 blocks quantized) and the card's check entries."""
    int8 = bool(config.int8_blocks())
    onnx_path = out / ENCODER_FILE
    fp32_path = out / "image_encoder.fp32.onnx" if int8 else onnx_path
    export_encoder_onnx(sub, fp32_path)
    diff = onnx_max_abs_diff(sub, fp32_path)
    if diff > ONNX_TOLERANCE:
        raise UserError(f"{fp32_path}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g})")
    decoder_path = export_decoder_onnx(sub, out / DECODER_FILE)
    decoder_check = decoder_error(sub, decoder_path)
    if not decoder_within_tolerance(decoder_check):
        raise UserError(f"{decoder_path}: ONNX Runtime differs from PyTorch: IoU predictions by "
                        f"{decoder_check['max_abs']:.2e}, masks agree on {100 * decoder_check['mask_agreement']:.3f}% "
                        f"of pixels (accepted: <= {DECODER_TOLERANCE['max_abs']:g}, >= "
                        f"{100 * DECODER_TOLERANCE['min_mask_agreement']:g}%)")
    int8_check = None
    if int8:
        try:
            quantize_encoder_onnx(fp32_path, onnx_path, config)
        finally:
            fp32_path.unlink(missing_ok=True)
        sub_fp32, sub = sub, quantize_subnet(sub, config)
        int8_check = check_int8_onnx(sub, sub_fp32, onnx_path)
    return sub, {"onnx_max_abs_diff": diff, "onnx_int8_check": int8_check,
                 "decoder_check": {**decoder_check, "tolerance": dict(DECODER_TOLERANCE)}}


def write_openvino(out: Path, device: str, precision: str) -> dict:
    """OpenVINO IR of both ONNX halves (``ov.convert_model``, weights kept fp32) and how to compile them:
    the card's ``openvino`` entry."""
    import openvino as ov

    from deploy.engines import openvino_config

    files = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".openvino.") as tmp:
        for onnx_name in (ENCODER_FILE, DECODER_FILE):
            stem = onnx_name.split(".")[0]
            ov.save_model(ov.convert_model(str(out / onnx_name)), str(Path(tmp) / f"{stem}.xml"), compress_to_fp16=False)
            for suffix in (".xml", ".bin"):  # moved into place whole, readable as every export file is
                os.chmod(Path(tmp) / f"{stem}{suffix}", new_file_mode())
                os.replace(Path(tmp) / f"{stem}{suffix}", out / f"{stem}{suffix}")
            files[stem] = f"{stem}.xml"
    return {"device": device, "precision": precision, "compile_config": openvino_config(precision),
            "files": files, "openvino": ov.__version__,
            "note": "compile for the CPU with compile_config; add INFERENCE_NUM_THREADS to set the threads"}


def measure_export(sub: Sam, out: Path, threads: int, repeats: int, openvino: dict | None) -> tuple[dict, dict]:
    """The encoder's latency here: torch, ONNX Runtime on the written ONNX and, for an OpenVINO device,
    OpenVINO on the IR at the device's precision (``threads`` threads each); and this machine's fingerprint."""
    from deploy.engines import Engine
    from infra.threads import torch_threads

    with torch_threads(threads):
        measured = measure_encoder_ms(sub, repeats)
        x = torch.randn(1, 3, sub.resolution, sub.resolution).numpy()
        engines = {"onnxruntime": Engine(out / ENCODER_FILE, "onnxruntime", threads)}
        if openvino:
            engines["openvino"] = Engine(out / openvino["files"]["image_encoder"], "openvino", threads,
                                         openvino["precision"])
        for backend, engine in engines.items():  # each lambda runs within its own iteration
            measured[backend] = time_callable(lambda: engine({"images": x}), repeats=repeats, warmup=2,  # noqa: B023
                                              min_seconds=MIN_SECONDS).as_dict()
        return measured, machine_fingerprint()


def runtime_table(model: Sam, config: SubnetConfig, threads: int) -> dict:
    """The card's ``runtimes`` entry: the subnet's encoder on every runtime and precision this CPU offers
    (:func:`nas.latency.runtimes.subnet_runtimes`, interleaved), fastest first, and the fastest's name."""
    from nas.latency.runtimes import subnet_runtimes

    rows = subnet_runtimes(model, config, threads=threads)
    return {"threads": threads, "device_class": "cpu", "fastest": rows[0].case.label,
            "rows": [{"runtime": r.case.label, **r.as_dict()} for r in rows],
            "note": "image encoder, interleaved rounds; x_torch_fp32 and the errors are against PyTorch fp32 of "
                    "the same subnet with every block fp32"}


def export_subnet(model: Sam, config: SubnetConfig, out_dir: str | Path, *, source_checkpoint: str | None,
                  trial_info: dict | None = None, repeats: int = 5, latency_check: dict | None = None,
                  measure_runtimes: bool = True) -> dict:
    """Write the export folder for ``config``; returns the card (dict).

    ``latency_check`` (``{"probe", "stated_error_pct", "threads"}``, from ``samnas export``): time
    with the device's thread count and add the card's latency check (:func:`latency_gap`).
    An OpenVINO device (``trial_info["device"]``) adds the OpenVINO IR of both halves. ``measure_runtimes``:
    time the encoder on every runtime and precision of this machine's CPU (:func:`runtime_table`).
    """
    out = Path(out_dir)
    info = dict(trial_info or {})
    spec = device_spec(info["device"]) if info.get("device") else None
    counts = count(model, config)
    sub_fp32 = extract(model, config, quantize=False)
    sha = file_sha256(source_checkpoint) if source_checkpoint and Path(source_checkpoint).is_file() else None
    meta = subnet_metadata(model, config, source_checkpoint=source_checkpoint, source_sha256=sha, **counts.as_dict())
    save_subnet(sub_fp32, meta, out)
    sub, checks = write_onnx(sub_fp32, config, out)
    openvino = write_openvino(out, spec.name, spec.precision) if spec and spec.backend == "openvino" else None
    threads = (latency_check or {}).get("threads") or torch.get_num_threads()
    measured, measured_on = measure_export(sub, out, threads, repeats, openvino)
    runtimes = runtime_table(model, config, threads) if measure_runtimes else None

    card = {
        "name": out.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": source_checkpoint,
        "source_sha256": sha,
        "model_type": model.arch.name,
        "config": config.to_dict(),
        "params": counts.total_params,
        "encoder_params": counts.encoder_params,
        "flops": counts.encoder_flops,
        "flops_convention": "fvcore: one multiply-add = one flop; image encoder at the config's resolution",
        "quality": info.get("quality"),
        "quality_evaluator": info.get("evaluator"),
        "quality_definition": info.get("quality_definition"),
        "predictor": info.get("predictor"),
        "onnx_input": onnx_input_contract(sub_fp32),
        "onnx_decoder": onnx_decoder_contract(sub_fp32),
        "openvino": openvino,
        "quality_metrics": info.get("metrics"),
        "study": info.get("study"),
        "trial": info.get("trial"),
        "device": info.get("device"),
        "predicted_ms": info.get("predicted_ms"),
        "measured_ms": {k: v["median_ms"] for k, v in measured.items()},
        "measured": measured,
        "measured_on": measured_on,
        "runtimes": runtimes,
        **checks,
        "precision": precision_per_block(config),
    }
    if latency_check and info.get("device"):
        card["predicted_raw_ms"] = info.get("predicted_raw_ms")
        card["latency_check"] = latency_gap(info, latency_check, measured)
    card["files"] = {name: what for name, what in EXPORT_FILES.items() if (out / name).is_file() or name.startswith("card.")}
    atomic_write_text(out / "card.json", json.dumps(card, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "card.md", render_card(card))
    return card


def check_int8_onnx(sub_int8: Sam, sub_fp32: Sam, onnx_path: Path) -> dict:
    """Compare the int8 ONNX encoder with the subnet quantized in PyTorch (UserError beyond
    :data:`ONNX_INT8_TOLERANCE`) and with fp32 (reported: the embedding error int8 costs)."""
    vs_int8 = embedding_error(sub_int8, onnx_path)
    if not int8_within_tolerance(vs_int8):
        raise UserError(f"{onnx_path}: the int8 encoder in ONNX Runtime differs from the subnet quantized in PyTorch: "
                        f"relative L2 {vs_int8['rel_l2']:.4f}, cosine {vs_int8['cosine']:.5f} (accepted: relative L2 <= "
                        f"{ONNX_INT8_TOLERANCE['max_rel_l2']}, cosine >= {ONNX_INT8_TOLERANCE['min_cosine']})")
    return {"vs_torch_int8": vs_int8, "vs_torch_fp32": embedding_error(sub_fp32, onnx_path),
            "tolerance": dict(ONNX_INT8_TOLERANCE)}


def precision_per_block(config: SubnetConfig) -> list[str | None]:
    """Each block's precision (``None`` for a skipped block), in config order."""
    return [b.precision if b.keep else None for b in config.blocks]


def onnx_input_contract(sub: Sam) -> dict:
    """What ``image_encoder.onnx`` expects: the preprocessing of ``Sam.preprocess`` after a longest-side resize."""
    res = sub.resolution
    return {
        "name": "images", "shape": [1, 3, res, res], "dtype": "float32", "channels": "RGB",
        "resize": f"longest side to {res} px, aspect ratio kept (supernet.modeling.transforms.ResizeLongestSide)",
        "normalise": {"pixel_mean": [round(float(v), 3) for v in sub.pixel_mean.flatten()],
                      "pixel_std": [round(float(v), 3) for v in sub.pixel_std.flatten()],
                      "formula": "(pixel - mean) / std, pixels in 0-255"},
        "padding": f"zeros at the bottom and right, after normalising, up to {res} x {res}",
        "output": "embeddings {}".format(tuple(decoder_shapes(sub)["image_embeddings"])),
        "output_shape": decoder_shapes(sub)["image_embeddings"],
    }


def onnx_decoder_contract(sub: Sam) -> dict:
    """What ``prompt_decoder.onnx`` takes and gives for ``sub`` (SAM's ONNX contract; B, N, H, W dynamic)."""
    shapes = decoder_shapes(sub)
    return {
        "contract": "segment_anything.utils.onnx.SamOnnxModel (return_single_mask=False), batch B dynamic",
        "inputs": {name: shapes[name] for name in DECODER_INPUTS},
        "outputs": {name: shapes[name] for name in DECODER_OUTPUTS},
        "dtype": "float32",
        "point_coords": f"(x, y) px in the resized {sub.resolution} px input frame (scale original pixels as the "
                        "image was resized)",
        "point_labels": "1 foreground, 0 background, 2 / 3 box top-left / bottom-right, -1 padding: with no box, "
                        "append the point (0, 0) labelled -1",
        "mask_input": "low-res logits of an earlier call (low_res_masks), used when has_mask_input is 1",
        "orig_im_size": "(H, W) of the original image; masks come back at that size",
        "outputs_order": "mask 0 is the single-mask output, masks 1-3 the multimask outputs",
        "mask_threshold": float(sub.mask_threshold),
    }


LOAD_SNIPPET = """from supernet.elastic.extract import load_subnet
model = load_subnet("{folder}")            # subnet.pt + subnet.json, no supernet needed; int8 blocks quantized
embeddings = model.image_encoder(model.preprocess(images))   # images: (1, 3, h, w) RGB 0-255"""
RUNNER_SNIPPET = """from deploy import Runner                    # numpy, pillow, onnxruntime or openvino: no torch
runner = Runner.from_folder("{folder}")     # runtime="auto" | "onnxruntime" | "openvino"
masks, iou, low_res = runner.predict("photo.jpg", points=[[320, 240]], labels=[1])"""


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _use_lines(card: dict) -> list[str]:
    """The card's Use section: the torch-free runner, PyTorch, both ONNX contracts, OpenVINO, the files."""
    enc = card["onnx_input"]
    config = SubnetConfig.from_dict(card["config"])
    lines = ["## Use", "", "Without PyTorch (see README, Deploying a subnet):", "", "```python",
             RUNNER_SNIPPET.format(folder=card["name"]), "```", "",
             "In PyTorch (`preprocess` normalises and pads; resize the longest side first):", "", "```python",
             LOAD_SNIPPET.format(folder=card["name"]), "```", "",
             "`image_encoder.onnx` input `images`: float32 `(1, 3, {r}, {r})`, RGB; resize the longest side to {r} px; "
             "normalise `(pixel - mean) / std` with mean {m} and std {s} (pixels 0-255); pad with zeros at the bottom "
             "and right to {r} × {r}. Output `embeddings` `{e}`."
             .format(r=config.resolution, m=enc["normalise"]["pixel_mean"], s=enc["normalise"]["pixel_std"],
                     e=_shape_text(enc.get("output_shape", []))), ""]
    dec = card.get("onnx_decoder")
    if dec:
        ins = ", ".join(f"`{k}` `{_shape_text(v)}`" for k, v in dec["inputs"].items())
        outs = ", ".join(f"`{k}` `{_shape_text(v)}`" for k, v in dec["outputs"].items())
        lines += [f"`prompt_decoder.onnx` (SAM's ONNX contract, B prompt sets of N points): inputs {ins}; outputs "
                  f"{outs}. Points are in the resized input frame; {dec['point_labels']}. "
                  f"{dec['outputs_order'].capitalize()}; a mask is logits > {dec['mask_threshold']:g}.", ""]
    ov = card.get("openvino")
    if ov:
        lines += [f"OpenVINO IR for `{ov['device']}`: compile `{ov['files']['image_encoder']}` and "
                  f"`{ov['files']['prompt_decoder']}` for the CPU with `{json.dumps(ov['compile_config'])}` "
                  f"({ov['precision']}).", ""]
    lines += ["Files:", ""] + [f"- `{name}`: {what}" for name, what in card.get("files", {}).items()] + [""]
    return lines


def predictor_sentence(pred: dict | None) -> str:
    """The predictor's error and thread count (``nas.studies.study.predictor_line``), for the card."""
    if not pred:
        return "The latency predictor's error was not recorded."
    return f"{predictor_line(pred)[0].upper()}{predictor_line(pred)[1:]}; the measurements above used that thread count."


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _check_text(device: str, check: dict) -> str:
    """The card's sentence on predicted vs measured latency."""
    probe = check["probe"]
    if check["gap_pct"] is None:
        return f"Latency check: {check['note']}."
    text = (f"Latency check ({check['backend']}, {plural(check['threads'], 'thread')}, as `{device}` was profiled): measured "
            f"{check['measured_ms']:.2f} ms against {check['predicted_recalibrated_ms']:.2f} ms recalibrated "
            f"({check['gap_pct']:+.1f}%) and {check['predicted_raw_ms']:.2f} ms raw ({check['raw_gap_pct']:+.1f}%); "
            f"the predictor's stated error is {_fmt(check['stated_error_pct'], '.1f')}% (CV MAPE). ")
    text += ("**The gap is beyond the stated error.**" if check["flag"] else "The gap is within the stated error.")
    if probe.get("factor") is None:
        text += f" Drift probe skipped: {probe.get('note')}"
    elif probe.get("stated_error_pct") is not None and abs(probe["factor"] - 1) * 100 > probe["stated_error_pct"]:
        text += (f" The drift probe found the device {abs(probe['factor'] - 1) * 100:.0f}% "
                 f"{'slower' if probe['factor'] > 1 else 'faster'} than when it was profiled.")
    return text


def _precision_summary(card: dict) -> str:
    """``all fp32``, ``all int8`` or ``int8 in blocks 1, 3; fp32 in the others`` (of the kept blocks)."""
    precisions = card.get("precision") or precision_per_block(SubnetConfig.from_dict(card["config"]))
    int8 = [i for i, p in enumerate(precisions) if p == "int8"]
    kept = [i for i, p in enumerate(precisions) if p is not None]
    if not int8:
        return "fp32 (all blocks)"
    if int8 == kept:
        return "int8 linear layers in every kept block (patch embedding, neck, decoder fp32)"
    return f"int8 linear layers in blocks {', '.join(map(str, int8))}; fp32 elsewhere"


def _blocks_table(card: dict) -> list[str]:
    config = SubnetConfig.from_dict(card["config"])
    precisions = card.get("precision") or precision_per_block(config)
    rows = ["| block | kept | heads | MLP | precision |", "|---|---|---|---|---|"]
    for i, (b, p) in enumerate(zip(config.blocks, precisions)):
        rows.append(f"| {i} | yes | {b.heads} | {b.mlp} | {p} |" if p else f"| {i} | skipped | | | |")
    return rows


def _int8_lines(check: dict | None) -> list[str]:
    if not check:
        return []
    a, b, tol = check["vs_torch_int8"], check["vs_torch_fp32"], check["tolerance"]
    return [f"int8 encoder (ONNX Runtime dynamic quantization) vs the subnet quantized in PyTorch: relative L2 "
            f"{a['rel_l2']:.4f}, cosine {a['cosine']:.5f} (accepted: relative L2 <= {tol['max_rel_l2']}, cosine >= "
            f"{tol['min_cosine']}); vs fp32 PyTorch (the error int8 costs): relative L2 {b['rel_l2']:.4f}, "
            f"cosine {b['cosine']:.5f}, max abs {b['max_abs']:.2e}."]


def _decoder_check_lines(check: dict | None) -> list[str]:
    if not check:
        return []
    return [f"Prompt decoder, ONNX Runtime vs PyTorch on point, box, point + box and mask-input prompts: IoU "
            f"predictions within {check['max_abs']:.1e}, masks agree on {100 * check['mask_agreement']:.4f}% of "
            f"pixels (accepted: {check['tolerance']['max_abs']:g}, "
            f"{100 * check['tolerance']['min_mask_agreement']:g}%)."]


def render_card(card: dict) -> str:
    """The model card as Markdown."""
    fp = card["measured_on"]
    config = SubnetConfig.from_dict(card["config"])
    lines = [
        f"# {card['name']}: a SAM {card['model_type']} subnet",
        "",
        f"Exported by samnas on {card['created']} from `{card['source_checkpoint']}`"
        + (f" (sha256 `{card['source_sha256'][:16]}…`)." if card["source_sha256"] else "."),
        "",
        "| | |",
        "|---|---|",
        f"| input resolution | {config.resolution} px |",
        f"| encoder blocks kept | {len(config.kept_blocks)} of {config.num_blocks} |",
        f"| precision | {_precision_summary(card)} |",
        f"| parameters | {card['params'] / 1e6:.2f} M (encoder {card['encoder_params'] / 1e6:.2f} M) |",
        f"| encoder FLOPs | {card['flops'] / 1e9:.2f} G ({card['flops_convention']}) |",
        f"| quality | {_fmt(card['quality'])} ({card.get('quality_definition') or card['quality_evaluator'] or 'not evaluated'}) |",
        "",
        "## Latency of the image encoder" + (" (as exported: int8 blocks quantized in both runtimes)"
                                              if card.get("onnx_int8_check") else ""),
        "",
        "| | ms |",
        "|---|---|",
        f"| predicted for `{card['device'] or 'n/a'}` | {_fmt(card['predicted_ms'], '.2f')} |",
    ]
    check = card.get("latency_check")
    if check:
        factor = check["probe_factor"]
        lines.append(f"| predicted, raw (as profiled) | {_fmt(check['predicted_raw_ms'], '.2f')} |")
        lines.append(f"| predicted, recalibrated by the drift probe (factor {_fmt(factor, '.3f')}) | "
                     f"{_fmt(check['predicted_recalibrated_ms'], '.2f')} |")
    for backend, stats in card["measured"].items():
        lines.append(f"| measured here, {backend} (median of {stats['repeats']}, p10–p90 "
                     f"{stats['p10_ms']:.2f}–{stats['p90_ms']:.2f}) | {stats['median_ms']:.2f} |")
    if check:
        lines += ["", _check_text(card["device"], check)]
    lines += _runtime_lines(card.get("runtimes"))
    lines += [
        "",
        f"Measured on: {fp['cpu']}, {plural(fp['torch_threads'], 'torch thread')}, torch {fp['torch']}, "
        f"onnxruntime {fp.get('onnxruntime')}" + (f", GPU {fp['gpu']}" if fp.get("gpu") else "") + ".",
        "ONNX Runtime vs PyTorch max abs difference on the embeddings"
        + (" (fp32 export, before quantizing)" if card.get("onnx_int8_check") else "")
        + f": {card['onnx_max_abs_diff']:.2e}.",
        *_decoder_check_lines(card.get("decoder_check")),
        *_int8_lines(card.get("onnx_int8_check")),
        predictor_sentence(card.get("predictor")),
        "",
        "## Blocks",
        "",
        *_blocks_table(card),
        "",
        "## Config",
        "",
        "```json",
        json.dumps(card["config"], indent=1),
        "```",
        "",
        *_use_lines(card),
    ]
    return "\n".join(lines)


def _runtime_lines(runtimes: dict | None) -> list[str]:
    """The card's table of the encoder on each runtime of this CPU, fastest first (none for older cards)."""
    if not runtimes:
        return []
    lines = ["", f"### On each runtime of this CPU ({runtimes['threads']} thread"
             f"{'s' if runtimes['threads'] != 1 else ''}; fastest: **{runtimes['fastest']}**)", "",
             "| runtime | median ms | p10–p90 ms | x PyTorch fp32 | cosine to fp32 |", "|---|---|---|---|---|"]
    lines += [f"| {r['runtime']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}–{r['p90_ms']:.2f} | "
              f"{r['speedup']:.2f} | {r['cosine']:.6f} |" for r in runtimes["rows"]]
    return lines + ["", runtimes["note"] + "."]
