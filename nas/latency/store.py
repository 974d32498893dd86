"""Per-device latency files: names, folders, CSV tables, the portable profile file.

A device's measurements live in ``<root>/<device>/`` (root: ``--root``, else ``latency/`` in
the results folder the CLI passes down, :func:`infra.fileio.results_root`)::

    fingerprint.json   where it was measured: CPU, threads, backend, library versions, GPU
    spaces.json        the search spaces profiled there, in space-file form (name -> mapping)
    blocks.csv         one row per timed block kind (the lookup table's entries)
    networks.csv       one row per timed subnet: its config as JSON, median/p10/p90 in ms, repeats
    predictor.joblib   the fitted predictors, one per space (written by ``samnas latency fit``)
    report.json        cross-validated error, sample counts and profiling seconds per space
    probes.json        per space, the profiling-time medians of a few probe subnets (see nas.latency.probe)
    validation.json    per space, the latest `samnas latency validate` report (see nas.latency.validate)

Everything but ``predictor.joblib`` is plain text a person can read and copy. Another
machine's measurements arrive as one JSON file (:data:`PROFILE_FORMAT`, written by
``samnas latency profile --out FILE``) read by :func:`read_profile_file`; it holds only
measurements, never a pickled model, so importing a file from elsewhere runs no code.
Every file here is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from infra.errors import UserError
from infra.fileio import atomic_write_text, results_dir

PROFILE_FORMAT = "samnas-latency-profile/1"
PROBES_FORMAT = "samnas-latency-probes/1"
PROBES_FILE = "probes.json"
PROBE_FIELDS = ("config", "median_ms", "p10_ms", "p90_ms", "repeats")

HARDWARE = ("cpu", "cuda")
BACKENDS = ("torch", "onnxruntime", "openvino")
# The float precision a device computes in; int8 is per block, in the search space (supernet.elastic.precision).
DEVICE_PRECISIONS = ("fp32", "bf16")
DEVICE_PATTERN = re.compile(r"^(?P<hw>[a-z]+)-(?P<backend>[a-z]+)(?:-(?P<precision>[a-z0-9]+))?"
                            r"(?:@(?P<tag>[A-Za-z0-9][A-Za-z0-9_.-]{0,63}))?$")
# (hardware, backend) pairs samnas can time, with the precisions each runs; bf16 needs CPU support as well
# (nas.measure.fingerprint.bf16_problem). ONNX Runtime's CPU provider has no bf16 kernels for these models, and the
# OpenVINO runtime measured here is its CPU plugin.
RUNTIME_PRECISIONS = {
    ("cpu", "torch"): ("fp32", "bf16"),
    ("cpu", "onnxruntime"): ("fp32",),
    ("cpu", "openvino"): ("fp32", "bf16"),
    ("cuda", "torch"): ("fp32", "bf16"),
    ("cuda", "onnxruntime"): ("fp32",),
}

TIMING_FIELDS = ("median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "repeats", "seconds")
# kind: "fixed" (patch embedding + position embedding + neck, i.e. an encoder with no
# blocks; SAM 2's also the decoder's high-resolution projections), "decoder" (prompt encoder +
# mask decoder for ``prompts`` single-point prompts), or one encoder block (:func:`encoder_block_kinds`):
# SAM's "block", SAM 2's "window", "global" or "transition". window: attention window side in
# tokens, 0 = global attention; -1 where it does not apply. precision: the block's linear layers,
# fp32 or int8 (dynamic); files from before it read as fp32. stage: the encoder stage of the block
# (SAM 2's Hiera; 0 otherwise); files from before it read as 0.
BLOCK_KEY = ("model_type", "kind", "resolution", "window", "heads", "mlp", "prompts", "precision", "stage")
BLOCK_FIELDS = BLOCK_KEY + TIMING_FIELDS
# part: "encoder" (image encoder alone) or "encoder+decoder" (then ``prompts`` > 0).
NETWORK_KEY = ("space", "part", "prompts", "config")
NETWORK_FIELDS = ("space", "part", "prompts", "resolution", "config") + TIMING_FIELDS
INT_FIELDS = {"resolution", "window", "heads", "mlp", "prompts", "repeats", "stage"}
FLOAT_FIELDS = {"median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "seconds"}
# Fields added after files were first written: a file without them reads as this value.
FIELD_DEFAULTS = {"precision": "fp32", "stage": 0}
# Fingerprint fields that must agree for two measurement runs to describe one device.
SAME_DEVICE_FIELDS = ("cpu", "threads", "backend", "torch", "onnxruntime", "gpu", "allocator")


class BlockKind(NamedTuple):
    """What an encoder block's lookup-table entry is, besides its heads, MLP width and precision
    (fields of :data:`BLOCK_KEY`)."""

    kind: str  # "block" (SAM's ViT), or SAM 2's "window", "global", "transition" (a q-pool stage opener)
    window: int  # attention window side in tokens of the block's input grid; 0 = global attention
    stage: int  # SAM 2's stage: with the resolution it fixes the block's grid and widths; 0 in SAM


def encoder_block_kinds(space) -> list[BlockKind]:
    """The :class:`BlockKind` of each encoder block of ``space`` (a ``SearchSpace``), in order.

    SAM's blocks differ only by window (``space.arch.window_size``, or 0 for global attention). A
    SAM 2 block costs what its stage's grid and widths, its window and whether it opens the stage
    (pooling its queries, widening ``dim -> dim_out``) make it cost, so those are in its kind.
    """
    arch = space.arch
    if not space.is_sam2:
        return [BlockKind("block", 0 if b.is_global else arch.window_size, 0) for b in space.blocks]
    return [sam2_block_kind(spec) for spec in arch.block_specs()]


def sam2_block_kind(spec) -> BlockKind:
    """The :class:`BlockKind` of a SAM 2 block (a ``supernet.modeling.sam2.arch.Sam2BlockSpec``)."""
    return BlockKind("transition" if spec.q_pool else "global" if spec.window == 0 else "window", spec.window,
                     spec.stage)


@dataclass(frozen=True)
class DeviceSpec:
    """A device name taken apart: ``cpu-openvino-bf16@lab1`` is hardware ``cpu``, backend ``openvino``,
    precision ``bf16`` (``fp32`` when the name has none) and tag ``lab1``."""

    name: str
    hardware: str
    backend: str
    precision: str
    tag: str | None

    @property
    def runtime(self) -> str:
        """``backend`` plus the precision when it is not fp32 (``openvino-bf16``), as tables name a runtime."""
        return self.backend if self.precision == "fp32" else f"{self.backend}-{self.precision}"


def device_spec(name: str) -> DeviceSpec:
    """Parse ``<hardware>-<backend>[-<precision>][@tag]``; UserError naming the allowed forms."""
    m = DEVICE_PATTERN.match(name) if isinstance(name, str) else None
    if not m or (m["hw"], m["backend"]) not in RUNTIME_PRECISIONS:
        forms = ", ".join(f"{h}-{b}" for h, b in RUNTIME_PRECISIONS)
        raise UserError(
            f"device {name!r}: expected <hardware>-<backend>[-bf16][@tag] with one of {forms} "
            "and an optional tag of letters, digits, '_', '.', '-' (e.g. cpu-torch@laptop, cpu-openvino-bf16)"
        )
    allowed = RUNTIME_PRECISIONS[(m["hw"], m["backend"])]
    precision = m["precision"] or "fp32"
    if m["precision"] == "fp32" or precision not in allowed:
        extra = [p for p in allowed if p != "fp32"]
        raise UserError(
            f"device {name!r}: precision {m['precision']!r} is not offered on {m['hw']}-{m['backend']}; "
            f"write {m['hw']}-{m['backend']} for fp32" + "".join(f" or {m['hw']}-{m['backend']}-{p}" for p in extra)
        )
    return DeviceSpec(name, m["hw"], m["backend"], precision, m["tag"])


def parse_device(name: str) -> tuple[str, str, str | None]:
    """``"cpu-torch@lab1"`` -> ``("cpu", "torch", "lab1")`` (the precision: :func:`device_spec`)."""
    spec = device_spec(name)
    return spec.hardware, spec.backend, spec.tag


def torch_device(name: str) -> str:
    """The torch device a device slug runs on: ``"cuda"`` for ``cuda-*``, else ``"cpu"``."""
    return "cuda" if parse_device(name)[0] == "cuda" else "cpu"


def validate_device(name: str) -> str:
    """Return ``name`` when it is a valid device slug, else raise UserError."""
    parse_device(name)
    return name


def resolve_root(root: str | Path | None = None, results: str | Path | None = None) -> Path:
    """The latency root: ``root`` if given, else ``latency/`` in the results folder ``results`` (the one
    the CLI chose; default ``./results``)."""
    if root is not None:
        return Path(root)
    return results_dir(results) / "latency"


# ---------------------------------------------------------------------- CSV and JSON


def _coerce(field: str, value: str, where: str):
    """A CSV cell as its typed value (ints, floats, text); UserError naming ``where`` if not."""
    try:
        if field in INT_FIELDS:
            return int(value)
        if field in FLOAT_FIELDS:
            number = float(value)
            if not math.isfinite(number) or number < 0:
                raise ValueError("must be a finite non-negative number")
            return number
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {field}: {value!r} is not valid ({exc})") from None
    if not isinstance(value, str):
        raise UserError(f"{where}: {field}: expected text, got {value!r}")
    return value


def check_rows(rows: Iterable[dict], fields: tuple[str, ...], where: str) -> list[dict]:
    """Rows with every field present and typed; UserError naming ``where``, the row and the field."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{where}: row {i}: expected a mapping with fields {', '.join(fields)}")
        row = {**{f: v for f, v in FIELD_DEFAULTS.items() if f in fields}, **row}
        missing = [f for f in fields if f not in row]
        if missing:
            raise UserError(f"{where}: row {i}: missing field(s) {', '.join(missing)}")
        out.append({f: _coerce(f, row[f], f"{where}: row {i}") for f in fields})
    return out


def read_csv(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """Typed rows of a latency CSV (empty list if the file does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in fields if f not in (reader.fieldnames or []) and f not in FIELD_DEFAULTS]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(fields)}")
        return check_rows(list(reader), fields, str(path))


def write_csv(path: Path, rows: list[dict], fields: tuple[str, ...]) -> Path:
    """Write ``rows`` (only ``fields``, in that order) to ``path`` atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({f: (round(row[f], 6) if isinstance(row[f], float) else row[f]) for f in fields})
    return atomic_write_text(path, buf.getvalue())


def read_json(path: Path, what: str) -> dict:
    """A JSON mapping from ``path``; UserError naming the file if unreadable or not a mapping."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what} ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object in the {what}, got {type(data).__name__}")
    return data


def write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge_rows(old: list[dict], new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """``old`` with every row whose ``key`` fields match a row of ``new`` replaced by it (new order kept)."""
    keys = {tuple(r[k] for k in key) for r in new}
    return [r for r in old if tuple(r[k] for k in key) not in keys] + list(new)


# ---------------------------------------------------------------------- the device folder


class DeviceStore:
    """The files of one device under a latency root. Creating it touches no file."""

    def __init__(self, device: str, root: str | Path | None = None) -> None:
        self.device = validate_device(device)
        self.root = resolve_root(root)
        self.folder = self.root / device

    def path(self, name: str) -> Path:
        return self.folder / name

    def exists(self) -> bool:
        return self.folder.is_dir()

    def fingerprint(self) -> dict | None:
        path = self.path("fingerprint.json")
        return read_json(path, "device fingerprint") if path.is_file() else None

    def spaces(self) -> dict:
        """``{space name: space-file mapping}`` of the spaces profiled on this device."""
        path = self.path("spaces.json")
        return read_json(path, "device spaces") if path.is_file() else {}

    def blocks(self) -> list[dict]:
        return read_csv(self.path("blocks.csv"), BLOCK_FIELDS)

    def networks(self) -> list[dict]:
        return read_csv(self.path("networks.csv"), NETWORK_FIELDS)

    def report(self) -> dict | None:
        path = self.path("report.json")
        return read_json(path, "latency report") if path.is_file() else None

    def probes(self) -> dict:
        """``{space: {"probes": [{"config" (JSON text), "median_ms", ...}], "measured_at"}}`` ({} if none)."""
        path = self.path(PROBES_FILE)
        if not path.is_file():
            return {}
        doc = read_json(path, "probe baseline")
        if doc.get("format") != PROBES_FORMAT or not isinstance(doc.get("spaces"), dict):
            raise UserError(f"{path}: format {doc.get('format')!r}, expected {PROBES_FORMAT!r}; profile the device again")
        return doc["spaces"]

    def write_probes(self, rows: list[dict], replace: bool = False) -> None:
        """Store probe rows (``space`` plus :data:`PROBE_FIELDS`) as each of their spaces' baseline, atomically."""
        spaces = {} if replace else self.probes()
        by_space: dict[str, list[dict]] = {}
        for r in rows:
            by_space.setdefault(r["space"], []).append({k: r[k] for k in PROBE_FIELDS})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name, probes in by_space.items():
            spaces[name] = {"probes": probes, "measured_at": stamp}
        write_json(self.path(PROBES_FILE), {"format": PROBES_FORMAT, "device": self.device, "spaces": spaces})

    def fingerprint_differences(self, fingerprint: dict) -> list[tuple[str, object, object]]:
        """``(field, stored, given)`` for each :data:`SAME_DEVICE_FIELDS` field where the stored fingerprint
        and ``fingerprint`` disagree; ``[]`` when they agree or nothing is stored."""
        old = self.fingerprint()
        if old is None:
            return []
        return [(f, old.get(f), fingerprint.get(f)) for f in SAME_DEVICE_FIELDS if old.get(f) != fingerprint.get(f)]

    def check_same_device(self, fingerprint: dict, replace: bool = False) -> None:
        """UserError when stored measurements come from a different machine or set-up (unless ``replace``)."""
        if replace:
            return
        diff = self.fingerprint_differences(fingerprint)
        if diff:
            detail = ", ".join(f"{f} {old!r} -> {new!r}" for f, old, new in diff)
            raise UserError(
                f"{self.folder}: measurements there were taken on another machine or set-up ({detail}); "
                f"use another device name such as {self.device.split('@')[0]}@<tag>, or --replace to drop the old "
                "measurements"
            )

    def add_measurements(self, fingerprint: dict, spaces: dict, blocks: list[dict], networks: list[dict],
                         replace: bool = False, probes: list[dict] | None = None) -> None:
        """Merge new measurements in: rows with the same key are replaced; ``replace`` drops everything first.

        ``probes``: probe rows timed in the same run (a space's new rows replace its old baseline).
        A stale predictor stays until the next fit, which ``report.json`` makes visible.
        """
        self.check_same_device(fingerprint, replace)
        self.folder.mkdir(parents=True, exist_ok=True)
        old_blocks, old_networks, old_spaces = ([], [], {}) if replace else (self.blocks(), self.networks(), self.spaces())
        if replace:
            for name in ("predictor.joblib", "report.json", PROBES_FILE, "validation.json"):
                self.path(name).unlink(missing_ok=True)
        write_json(self.path("fingerprint.json"), fingerprint)
        write_json(self.path("spaces.json"), {**old_spaces, **spaces})
        if blocks or old_blocks:
            write_csv(self.path("blocks.csv"), merge_rows(old_blocks, blocks, BLOCK_KEY), BLOCK_FIELDS)
        if networks or old_networks:
            write_csv(self.path("networks.csv"), merge_rows(old_networks, networks, NETWORK_KEY), NETWORK_FIELDS)
        if probes:
            self.write_probes(probes)


def list_devices(root: str | Path | None = None) -> list[str]:
    """Names of the device folders under the root that hold measurements, sorted."""
    base = resolve_root(root)
    if not base.is_dir():
        return []
    names = []
    for p in sorted(base.iterdir()):
        if p.is_dir() and DEVICE_PATTERN.match(p.name) and (p / "fingerprint.json").is_file():
            names.append(p.name)
    return names


# ---------------------------------------------------------------------- the portable file


def profile_document(device: str, fingerprint: dict, spaces: dict, blocks: list[dict], networks: list[dict],
                     probes: list[dict] | None = None) -> dict:
    """The JSON-ready portable profile of one measurement run (``probes``: optional probe rows)."""
    return {
        "probes": [{f: r[f] for f in ("space",) + PROBE_FIELDS} for r in probes or []],
        "format": PROFILE_FORMAT,
        "device": device,
        "fingerprint": fingerprint,
        "spaces": spaces,
        "blocks": [{f: r[f] for f in BLOCK_FIELDS} for r in blocks],
        "networks": [{f: r[f] for f in NETWORK_FIELDS} for r in networks],
    }


def read_profile_file(path: str | Path) -> dict:
    """Read and check a portable profile file; UserError naming the file and field when malformed.

    Returns the document with typed rows (``device``, ``fingerprint``, ``spaces``,
    ``blocks``, ``networks``).
    """
    path = Path(path)
    doc = read_json(path, "latency profile file")
    if doc.get("format") != PROFILE_FORMAT:
        raise UserError(f"{path}: format {doc.get('format')!r}, expected {PROFILE_FORMAT!r} "
                        "(a file written by `samnas latency profile --out FILE`)")
    for field, kind in (("device", str), ("fingerprint", dict), ("spaces", dict), ("blocks", list), ("networks", list)):
        if not isinstance(doc.get(field), kind):
            raise UserError(f"{path}: {field}: missing or not a JSON {'object' if kind is dict else kind.__name__}")
    try:
        validate_device(doc["device"])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    doc["blocks"] = check_rows(doc["blocks"], BLOCK_FIELDS, f"{path}: blocks")
    doc["networks"] = check_rows(doc["networks"], NETWORK_FIELDS, f"{path}: networks")
    if not isinstance(doc.get("probes", []), list):  # files written before probes existed have none
        raise UserError(f"{path}: probes: not a JSON array")
    doc["probes"] = check_rows(doc.get("probes", []), ("space",) + PROBE_FIELDS, f"{path}: probes")
    if not doc["blocks"] and not doc["networks"]:
        raise UserError(f"{path}: holds no measurements (blocks and networks are both empty)")
    for i, row in enumerate(doc["networks"]):
        if row["space"] not in doc["spaces"]:
            raise UserError(f"{path}: networks: row {i}: space {row['space']!r} not described under 'spaces'")
        try:
            json.loads(row["config"])
        except json.JSONDecodeError:
            raise UserError(f"{path}: networks: row {i}: config is not JSON") from None
    return doc


def import_profile_file(path: str | Path, device: str | None = None, root: str | Path | None = None,
                        replace: bool = False) -> dict:
    """Store a portable profile file's measurements under ``<root>/<device>/``; returns the checked document.

    ``device`` overrides the name in the file (for example to add an ``@tag``).
    """
    doc = read_profile_file(path)
    name = validate_device(device) if device else doc["device"]
    store = DeviceStore(name, root)
    store.add_measurements(doc["fingerprint"], doc["spaces"], doc["blocks"], doc["networks"], replace=replace,
                           probes=doc["probes"])
    doc["device"] = name
    return doc
