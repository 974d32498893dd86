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

A SAM 2 subnet (:class:`supernet.modeling.sam2.model.Sam2`) writes the same files: its encoder has three
outputs (``image_embed``, ``high_res_feats_0``, ``high_res_feats_1``) and its decoder takes them
(``nas.export.sam2_onnx``); the card's ``family`` is ``sam2`` and both contracts say so. int8 blocks of a
SAM 2 subnet (its Hiera blocks' linear layers) are quantized and checked as SAM's are, on all three outputs.

:func:`export_subnet` extracts the subnet from a supernet; :func:`export_subnet_folder` exports an
extracted subnet folder (``samnas extract``) as it is, with no supernet at hand.

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
from supernet.elastic.activation import full_config
from supernet.elastic.extract import SUBNET_FORMATS_READ, extract, load_subnet, save_subnet, subnet_metadata
from infra.fileio import atomic_write_text, new_file_mode, read_format_json
from infra.wording import plural
from supernet.elastic.subnet_config import SubnetConfig
from supernet.elastic.quantize import quantize_subnet
from supernet.elastic.ranked import file_sha256
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2, Sam2EncoderCall

from nas.measure.fingerprint import machine_fingerprint
from nas.latency.store import device_spec
from nas.export.onnx_export import (DECODER_INPUTS, DECODER_OUTPUTS, DECODER_TOLERANCE, ONNX_INT8_TOLERANCE, decoder_error, decoder_shapes,
                          decoder_within_tolerance, embedding_error, export_decoder_onnx, export_encoder_onnx,
                          int8_within_tolerance, model_family, onnx_max_abs_diff, quantize_encoder_onnx,
                          worst_error)
from nas.export.sam2_onnx import (SAM2_DECODER_INPUTS, SAM2_ENCODER_OUTPUTS, export_sam2_decoder_onnx,
                                  export_sam2_encoder_onnx, sam2_decoder_error, sam2_encoder_error, sam2_output_errors,
                                  sam2_shapes)
from nas.studies.study import predictor_line
from nas.measure.timing import MIN_SECONDS, time_callable

ONNX_TOLERANCE = 1e-3  # max |ORT - torch| on the embeddings accepted for an export
# The int8 encoder in ONNX Runtime against the same subnet quantized in PyTorch: both quantize the
# same layers dynamically, but round differently (ORT: 7-bit weights, uint8 activations; torch:
# fbgemm's reduced-range uint8 activations), so they agree to int8 precision, not to 1e-3.
# Measured: sam_micro relative L2 0.004-0.012, cosine >= 0.99993 (tests/test_quantize.py); sam_vit_b
# at 512 px, every block int8, random weights: relative L2 0.034, cosine 0.99942 (results/int8.md).
# SAM 2 (each of the three outputs): sam2_micro at 128-256 px, its own initialisation, every block int8:
# image_embed relative L2 0.036-0.037, cosine >= 0.9993; with every parameter drawn from N(0, 0.05^2)
# int8 alone costs image_embed 6% and the two runtimes differ by 9%, which the check refuses
# (tests/test_sam2_int8_export.py, tests/test_deploy_sam2.py).
# Limits on the relative L2 error ||ort - torch|| / ||torch|| and on the cosine:


def encoder_module(sub: Sam | Sam2) -> torch.nn.Module:
    """What ``image_encoder.onnx`` holds for ``sub``: SAM's image encoder, or SAM 2's :class:`Sam2EncoderCall`."""
    return Sam2EncoderCall(sub).eval() if isinstance(sub, Sam2) else sub.image_encoder


def measure_encoder_ms(sub: Sam | Sam2, repeats: int = 5) -> dict:
    """Median and spread (ms) of the subnet's torch encoder on this machine (torch's current threads).

    At least ``repeats`` timed runs and :data:`nas.measure.timing.MIN_SECONDS` of them, after 2 warm-up runs.
    """
    res = sub.resolution
    x = torch.randn(1, 3, res, res)
    encoder = encoder_module(sub)
    with torch.inference_mode():
        torch_t = time_callable(lambda: encoder(x), repeats=repeats, warmup=2, min_seconds=MIN_SECONDS)
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
    DECODER_FILE: "prompt encoder + mask decoder + mask upscaling, ONNX, on SAM's ONNX contract (SAM 2: with "
                  "the high-resolution features)",
    "image_encoder.xml": "image encoder, OpenVINO IR (weights in image_encoder.bin)",
    "image_encoder.bin": "weights of image_encoder.xml",
    "prompt_decoder.xml": "prompt decoder, OpenVINO IR (weights in prompt_decoder.bin)",
    "prompt_decoder.bin": "weights of prompt_decoder.xml",
    "card.json": "this card: provenance, latency, checks, both ONNX contracts",
    "card.md": "this card for people",
}


def write_onnx(sub: Sam | Sam2, config: SubnetConfig, out: Path) -> tuple[Sam | Sam2, dict]:
    """Write both ONNX halves, each checked against PyTorch (UserError beyond tolerance); returns the
    subnet as the encoder was exported (int8 blocks quantized) and the card's check entries.

    With int8 blocks the encoder is exported and checked fp32 first (SAM's or SAM 2's alike), then
    quantized by ONNX Runtime and checked against the subnet quantized in PyTorch (:func:`check_int8_onnx`).
    """
    int8 = bool(config.int8_blocks())
    onnx_path = out / ENCODER_FILE
    fp32_path = out / "image_encoder.fp32.onnx" if int8 else onnx_path
    try:
        checks = (write_sam2_onnx if isinstance(sub, Sam2) else write_sam_onnx)(sub, fp32_path, out)
        if int8:
            quantize_encoder_onnx(fp32_path, onnx_path, config, family=model_family(sub))
    finally:
        if int8:
            fp32_path.unlink(missing_ok=True)
    if not int8:
        return sub, checks
    sub_int8 = quantize_subnet(sub, config)
    checks["onnx_int8_check"] = check_int8_onnx(sub_int8, sub, onnx_path)
    return sub_int8, checks


def write_sam_onnx(sub: Sam, encoder_path: Path, out: Path) -> dict:
    """Both ONNX halves of a SAM subnet (fp32; the encoder at ``encoder_path``), each checked against
    PyTorch; the card's check entries."""
    export_encoder_onnx(sub, encoder_path)
    diff = onnx_max_abs_diff(sub, encoder_path)
    if diff > ONNX_TOLERANCE:
        raise UserError(f"{encoder_path}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g})")
    decoder_path = export_decoder_onnx(sub, out / DECODER_FILE)
    return {"onnx_max_abs_diff": diff, "onnx_int8_check": None,
            "decoder_check": checked_decoder(decoder_path, decoder_error(sub, decoder_path))}


def checked_decoder(path: Path, check: dict) -> dict:
    """The card's ``decoder_check`` from a ``decoder_error`` result; UserError beyond :data:`DECODER_TOLERANCE`."""
    if not decoder_within_tolerance(check):
        raise UserError(f"{path}: ONNX Runtime differs from PyTorch: IoU predictions by {check['max_abs']:.2e}, masks "
                        f"agree on {100 * check['mask_agreement']:.3f}% of pixels (accepted: <= "
                        f"{DECODER_TOLERANCE['max_abs']:g}, >= {100 * DECODER_TOLERANCE['min_mask_agreement']:g}%)")
    return {**check, "tolerance": dict(DECODER_TOLERANCE)}


def write_sam2_onnx(sub: Sam2, encoder_path: Path, out: Path) -> dict:
    """Both ONNX halves of a SAM 2 subnet (fp32; the encoder at ``encoder_path``), each checked against
    PyTorch; the card's check entries (``onnx_max_abs_diff`` is the largest over the encoder's three
    outputs, each in ``onnx_output_max_abs_diff``)."""
    export_sam2_encoder_onnx(sub, encoder_path)
    diffs = sam2_encoder_error(sub, encoder_path)
    name = max(diffs, key=diffs.get)
    if diffs[name] > ONNX_TOLERANCE:
        raise UserError(f"{encoder_path}: ONNX Runtime differs from PyTorch by {diffs[name]:.2e} on {name} "
                        f"(> {ONNX_TOLERANCE:g})")
    decoder_path = export_sam2_decoder_onnx(sub, out / DECODER_FILE)
    return {"onnx_max_abs_diff": diffs[name], "onnx_output_max_abs_diff": diffs, "onnx_int8_check": None,
            "decoder_check": checked_decoder(decoder_path, sam2_decoder_error(sub, decoder_path))}


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


def runtime_table(supernet: Sam | Sam2 | None, config: SubnetConfig, sub_fp32: Sam | Sam2, threads: int) -> dict:
    """The card's ``runtimes`` entry: the subnet's encoder on every runtime and precision this CPU offers
    (interleaved, :mod:`nas.latency.runtimes`), fastest first, and the fastest's name.

    fp32 configs time ``sub_fp32``'s encoder as exported (:func:`encoder_module`); configs with int8 blocks
    need the supernet (:func:`nas.latency.runtimes.subnet_runtimes` builds both precisions from it), and
    without one (an extracted subnet folder) the entry only says why nothing was timed.
    """
    from nas.latency.runtimes import module_runtimes, subnet_runtimes

    note = ("image encoder, interleaved rounds; x_torch_fp32 and the errors are against PyTorch fp32 of "
            "the same subnet with every block fp32")
    if not config.int8_blocks():
        x = torch.randn(1, 3, sub_fp32.resolution, sub_fp32.resolution, generator=torch.Generator().manual_seed(0))
        rows = module_runtimes(encoder_module(sub_fp32), (x,), threads=threads)
    elif supernet is not None:
        rows = subnet_runtimes(supernet, config, threads=threads)
    else:
        return {"threads": threads, "device_class": "cpu", "fastest": None, "rows": [],
                "note": "not timed: a subnet with int8 blocks is timed per runtime from its supernet; export it "
                        "with --config and --checkpoint for this table"}
    if isinstance(sub_fp32, Sam2):
        note += "; for SAM 2 the errors compare image_embed"
    return {"threads": threads, "device_class": "cpu", "fastest": rows[0].case.label,
            "rows": [{"runtime": r.case.label, **r.as_dict()} for r in rows], "note": note}


def export_subnet(model: Sam | Sam2, config: SubnetConfig, out_dir: str | Path, *, source_checkpoint: str | None,
                  trial_info: dict | None = None, repeats: int = 5, latency_check: dict | None = None,
                  measure_runtimes: bool = True) -> dict:
    """Extract ``config`` from the supernet ``model`` and write its export folder; returns the card (dict).

    ``latency_check`` (``{"probe", "stated_error_pct", "threads"}``, from ``samnas export``): time
    with the device's thread count and add the card's latency check (:func:`latency_gap`).
    An OpenVINO device (``trial_info["device"]``) adds the OpenVINO IR of both halves. ``measure_runtimes``:
    time the encoder on every runtime and precision of this machine's CPU (:func:`runtime_table`).
    """
    counts = count(model, config)
    sub_fp32 = extract(model, config, quantize=False)
    sha = file_sha256(source_checkpoint) if source_checkpoint and Path(source_checkpoint).is_file() else None
    meta = subnet_metadata(model, config, source_checkpoint=source_checkpoint, source_sha256=sha, **counts.as_dict())
    runtimes = (lambda threads: runtime_table(model, config, sub_fp32, threads)) if measure_runtimes else None
    return write_export(sub_fp32, config, meta, Path(out_dir), dict(trial_info or {}), repeats, latency_check,
                        runtimes)


def export_subnet_folder(folder: str | Path, out_dir: str | Path, *, trial_info: dict | None = None,
                         repeats: int = 5, latency_check: dict | None = None, measure_runtimes: bool = True) -> dict:
    """Write the export folder of an extracted subnet folder (``subnet.pt`` + ``subnet.json``, from
    ``samnas extract`` or an earlier export) as it is, with no supernet; returns the card.
    Options as :func:`export_subnet`; ``folder`` may be ``out_dir``."""
    sub_fp32 = load_subnet(folder, quantize=False)  # a one-line CheckpointError for a bad folder
    meta = read_format_json(Path(folder) / "subnet.json", SUBNET_FORMATS_READ)
    config = SubnetConfig.from_dict(meta["config"], source=str(Path(folder) / "subnet.json"))
    if not {"params", "encoder_params", "flops"} <= set(meta):  # subnet.json written without counts
        meta.update(count(sub_fp32, full_config(sub_fp32).replace(resolution=config.resolution)).as_dict())
    runtimes = (lambda threads: runtime_table(None, config, sub_fp32, threads)) if measure_runtimes else None
    return write_export(sub_fp32, config, meta, Path(out_dir), dict(trial_info or {}), repeats, latency_check,
                        runtimes)


def write_export(sub_fp32: Sam | Sam2, config: SubnetConfig, meta: dict, out: Path, info: dict, repeats: int,
                 latency_check: dict | None, runtimes) -> dict:
    """Write subnet.pt/.json, both ONNX halves (checked), the OpenVINO IR for an OpenVINO device, and the
    card; ``meta`` is subnet.json's (with the counts), ``runtimes`` ``threads -> card entry`` or None."""
    spec = device_spec(info["device"]) if info.get("device") else None
    save_subnet(sub_fp32, meta, out)
    sub, checks = write_onnx(sub_fp32, config, out)
    openvino = write_openvino(out, spec.name, spec.precision) if spec and spec.backend == "openvino" else None
    threads = (latency_check or {}).get("threads") or torch.get_num_threads()
    measured, measured_on = measure_export(sub, out, threads, repeats, openvino)
    card = {
        "name": out.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": meta.get("source_checkpoint"),
        "source_sha256": meta.get("source_sha256"),
        "family": model_family(sub_fp32),
        "model_type": meta["model_type"],
        "config": config.to_dict(),
        "params": meta["params"],
        "encoder_params": meta["encoder_params"],
        "flops": meta["flops"],
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
        "runtimes": runtimes(threads) if runtimes else None,
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


def encoder_errors(sub: Sam | Sam2, onnx_path: Path) -> dict[str, dict]:
    """Each output of the ONNX encoder at ``onnx_path`` against ``sub``'s in PyTorch on one random input
    (seed 0): ``{output name: compare_embeddings result}``; SAM's ``embeddings``, SAM 2's three outputs."""
    if isinstance(sub, Sam2):
        return sam2_output_errors(sub, onnx_path)
    return {"embeddings": embedding_error(sub, onnx_path)}


def check_int8_onnx(sub_int8: Sam | Sam2, sub_fp32: Sam | Sam2, onnx_path: Path) -> dict:
    """Compare the int8 ONNX encoder with the subnet quantized in PyTorch (UserError when any output is
    beyond :data:`ONNX_INT8_TOLERANCE`) and with fp32 (reported: the error int8 costs).

    ``vs_torch_int8`` / ``vs_torch_fp32`` are the worst over the encoder's outputs (SAM: its one output);
    a SAM 2 check adds ``per_output``, both comparisons for each of its three outputs.
    """
    vs_int8, vs_fp32 = encoder_errors(sub_int8, onnx_path), encoder_errors(sub_fp32, onnx_path)
    for name, error in vs_int8.items():
        if not int8_within_tolerance(error):
            on = f" on {name}" if len(vs_int8) > 1 else ""
            raise UserError(f"{onnx_path}: the int8 encoder in ONNX Runtime differs from the subnet quantized in "
                            f"PyTorch{on}: relative L2 {error['rel_l2']:.4f}, cosine {error['cosine']:.5f} (accepted: "
                            f"relative L2 <= {ONNX_INT8_TOLERANCE['max_rel_l2']}, cosine >= "
                            f"{ONNX_INT8_TOLERANCE['min_cosine']})")
    check = {"vs_torch_int8": worst_error(vs_int8), "vs_torch_fp32": worst_error(vs_fp32),
             "tolerance": dict(ONNX_INT8_TOLERANCE)}
    if len(vs_int8) > 1:
        check["per_output"] = {name: {"vs_torch_int8": vs_int8[name], "vs_torch_fp32": vs_fp32[name]}
                               for name in vs_int8}
    return check


def precision_per_block(config: SubnetConfig) -> list[str | None]:
    """Each block's precision (``None`` for a skipped block), in config order."""
    return [b.precision if b.keep else None for b in config.blocks]


def onnx_input_contract(sub: Sam | Sam2) -> dict:
    """What ``image_encoder.onnx`` expects: the preprocessing of ``Sam.preprocess`` after a longest-side resize
    (SAM 2: :func:`sam2_input_contract`)."""
    if isinstance(sub, Sam2):
        return sam2_input_contract(sub)
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


def sam2_input_contract(sub: Sam2) -> dict:
    """What a SAM 2 ``image_encoder.onnx`` expects (``Sam2.preprocess``) and gives (``Sam2.embed_images``)."""
    res, shapes = sub.resolution, sam2_shapes(sub)
    return {
        "name": "images", "shape": shapes["images"], "dtype": "float32", "channels": "RGB",
        "resize": f"to {res} x {res} px whatever the aspect ratio (SAM 2's square resize: bilinear, antialiased, "
                  "on pixels / 255)",
        "normalise": {"pixel_mean": [round(float(v), 4) for v in sub.pixel_mean.flatten()],
                      "pixel_std": [round(float(v), 4) for v in sub.pixel_std.flatten()],
                      "formula": "(pixel / 255 - mean) / std, pixels in 0-255"},
        "padding": "none",
        "outputs": {name: shapes[name] for name in SAM2_ENCODER_OUTPUTS},
        "output": ", ".join(f"{name} {tuple(shapes[name])}" for name in SAM2_ENCODER_OUTPUTS),
        "output_shape": shapes["image_embed"],
        "no_mem_embed": "added to image_embed inside the graph, as SAM 2 adds it to every image-only prediction",
    }


def onnx_decoder_contract(sub: Sam | Sam2) -> dict:
    """What ``prompt_decoder.onnx`` takes and gives for ``sub`` (SAM's ONNX contract; B, N, H, W dynamic)."""
    if isinstance(sub, Sam2):
        return sam2_decoder_contract(sub)
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


def sam2_decoder_contract(sub: Sam2) -> dict:
    """What a SAM 2 ``prompt_decoder.onnx`` takes and gives (``nas.export.sam2_onnx.Sam2PromptDecoderOnnx``)."""
    shapes = sam2_shapes(sub)
    stability = sub.sam_mask_decoder.stability_thresh
    return {
        "contract": "SAM's ONNX contract (segment_anything.utils.onnx.SamOnnxModel, return_single_mask=False) with "
                    "SAM 2's high-resolution features as inputs, batch B dynamic",
        "inputs": {name: shapes[name] for name in SAM2_DECODER_INPUTS},
        "outputs": {name: shapes[name] for name in DECODER_OUTPUTS},
        "dtype": "float32",
        "point_coords": f"(x, y) px in the {sub.resolution} x {sub.resolution} input frame: x * {sub.resolution} / W, "
                        f"y * {sub.resolution} / H in original pixels",
        "point_labels": "a box's corners first (2 top-left, 3 bottom-right), then the clicks (1 foreground, "
                        "0 background), then always the padding point (0, 0) labelled -1 (SAM 2's prompt encoder "
                        "appends it; here the caller does)",
        "mask_input": "low-res logits of an earlier call (low_res_masks), used when has_mask_input is 1",
        "orig_im_size": "(H, W) of the original image; masks come back at that size",
        "outputs_order": "mask 0 is SAM 2's single-mask output (multimask_output=False: the single-mask token, or the "
                         f"multimask output of highest IoU where its stability score is below {stability:g}), masks "
                         "1-3 the multimask outputs",
        "low_res_masks": "clamped to [-32, 32] as SAM2ImagePredictor returns them; masks are upscaled from the "
                         "unclamped logits",
        "mask_threshold": float(sub.mask_threshold),
    }


LOAD_SNIPPET = """from supernet.elastic.extract import load_subnet
model = load_subnet("{folder}")            # subnet.pt + subnet.json, no supernet needed; int8 blocks quantized
embeddings = model.image_encoder(model.preprocess(images))   # images: (1, 3, h, w) RGB 0-255"""
SAM2_LOAD_SNIPPET = """from supernet.elastic.extract import load_subnet
from supernet.modeling.sam2.predictor import Sam2Predictor
model = load_subnet("{folder}")            # subnet.pt + subnet.json, no supernet needed
predictor = Sam2Predictor(model)           # SAM2ImagePredictor's API: set_image, predict
predictor.set_image(image)                 # (H, W, 3) uint8 RGB"""
RUNNER_SNIPPET = """from deploy import Runner                    # numpy, pillow, onnxruntime or openvino: no torch
runner = Runner.from_folder("{folder}")     # runtime="auto" | "onnxruntime" | "openvino"
masks, iou, low_res = runner.predict("photo.jpg", points=[[320, 240]], labels=[1])"""


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _use_lines(card: dict) -> list[str]:
    """The card's Use section: the torch-free runner, PyTorch, both ONNX contracts, OpenVINO, the files."""
    enc = card["onnx_input"]
    config = SubnetConfig.from_dict(card["config"])
    sam2 = card.get("family") == "sam2"
    lines = ["## Use", "", "Without PyTorch (see README, Deploying a subnet):", "", "```python",
             RUNNER_SNIPPET.format(folder=card["name"]), "```", ""]
    if sam2:
        outs = ", ".join(f"`{k}` `{_shape_text(v)}`" for k, v in enc["outputs"].items())
        lines += ["In PyTorch:", "", "```python", SAM2_LOAD_SNIPPET.format(folder=card["name"]), "```", "",
                  "`image_encoder.onnx` input `images`: float32 `(1, 3, {r}, {r})`, RGB; resize to {r} × {r} px "
                  "whatever the aspect ratio (bilinear, antialiased); normalise `(pixel / 255 - mean) / std` with mean "
                  "{m} and std {s}. Outputs {o}; `no_mem_embed` is already added to `image_embed`."
                  .format(r=config.resolution, m=enc["normalise"]["pixel_mean"], s=enc["normalise"]["pixel_std"],
                          o=outs), ""]
    else:
        lines += ["In PyTorch (`preprocess` normalises and pads; resize the longest side first):", "", "```python",
                  LOAD_SNIPPET.format(folder=card["name"]), "```", "",
                  "`image_encoder.onnx` input `images`: float32 `(1, 3, {r}, {r})`, RGB; resize the longest side to "
                  "{r} px; normalise `(pixel - mean) / std` with mean {m} and std {s} (pixels 0-255); pad with zeros "
                  "at the bottom and right to {r} × {r}. Output `embeddings` `{e}`."
                  .format(r=config.resolution, m=enc["normalise"]["pixel_mean"], s=enc["normalise"]["pixel_std"],
                          e=_shape_text(enc.get("output_shape", []))), ""]
    dec = card.get("onnx_decoder")
    if dec:
        ins = ", ".join(f"`{k}` `{_shape_text(v)}`" for k, v in dec["inputs"].items())
        outs = ", ".join(f"`{k}` `{_shape_text(v)}`" for k, v in dec["outputs"].items())
        frame = dec["point_coords"] if sam2 else "Points are in the resized input frame"
        lines += [f"`prompt_decoder.onnx` ({'SAM 2: ' if sam2 else ''}SAM's ONNX contract, B prompt sets of N points): "
                  f"inputs {ins}; outputs {outs}. {frame[0].upper()}{frame[1:]}; {dec['point_labels']}. "
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
    per_output = check.get("per_output")
    worst = " (the worst of the encoder's three outputs)" if per_output else ""
    lines = [f"int8 encoder (ONNX Runtime dynamic quantization) vs the subnet quantized in PyTorch{worst}: relative L2 "
             f"{a['rel_l2']:.4f}, cosine {a['cosine']:.5f} (accepted: relative L2 <= {tol['max_rel_l2']}, cosine >= "
             f"{tol['min_cosine']}); vs fp32 PyTorch (the error int8 costs): relative L2 {b['rel_l2']:.4f}, "
             f"cosine {b['cosine']:.5f}, max abs {b['max_abs']:.2e}."]
    if per_output:
        lines.append("Per output, vs PyTorch int8 / vs fp32 (relative L2): " + "; ".join(
            f"`{name}` {e['vs_torch_int8']['rel_l2']:.4f} / {e['vs_torch_fp32']['rel_l2']:.4f}"
            for name, e in per_output.items()) + ".")
    return lines


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
        f"# {card['name']}: a {'SAM 2' if card.get('family') == 'sam2' else 'SAM'} {card['model_type']} subnet",
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
        ("ONNX Runtime vs PyTorch max abs difference on the encoder's three outputs"
         if card.get("family") == "sam2" else "ONNX Runtime vs PyTorch max abs difference on the embeddings")
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
    if not runtimes["rows"]:
        return ["", f"On each runtime of this CPU: {runtimes['note']}."]
    lines = ["", f"### On each runtime of this CPU ({runtimes['threads']} thread"
             f"{'s' if runtimes['threads'] != 1 else ''}; fastest: **{runtimes['fastest']}**)", "",
             "| runtime | median ms | p10–p90 ms | x PyTorch fp32 | cosine to fp32 |", "|---|---|---|---|---|"]
    lines += [f"| {r['runtime']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}–{r['p90_ms']:.2f} | "
              f"{r['speedup']:.2f} | {r['cosine']:.6f} |" for r in runtimes["rows"]]
    return lines + ["", runtimes["note"] + "."]
