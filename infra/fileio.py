"""Atomic file writes: write a temporary file beside the target, then rename it into place."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask (mkstemp uses 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of it.

    The file gets the existing file's permissions, else the usual ones for a new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_write_bytes` (tensors and plain containers only)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


RESULTS_ENV = "SAMNAS_RESULTS"
DEFAULT_RESULTS = "results"


def results_root(chosen: str | Path | None = None, environ=None) -> Path:
    """Where samnas keeps studies, latency files, runs and exports (the one owner of this choice).

    ``chosen`` (``--results DIR``), else ``$SAMNAS_RESULTS`` in ``environ`` (default: this
    process's), else ``./results``. The CLI calls this once per command and passes the folder
    down; code below the CLI takes the folder as an argument and never reads the variable
    (:func:`results_dir` is its default). Nothing is created here: commands that write make
    their own folders.
    """
    environ = os.environ if environ is None else environ
    return Path(chosen or environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def results_dir(results: str | Path | None = None) -> Path:
    """``results`` as a Path, or ``./results`` for callers given none (library code: it reads no environment)."""
    return Path(DEFAULT_RESULTS if results is None else results)


def results_origin(results: str | Path | None = None) -> str:
    """Where the results folder ``results`` lies and how it is chosen, for "looked in ..." messages."""
    root = results_dir(results)
    if root == Path(DEFAULT_RESULTS):
        return f"{root.resolve()} (the default ./results; choose another with --results DIR or $SAMNAS_RESULTS)"
    return f"{root.resolve()} (from --results or $SAMNAS_RESULTS)"


def tracking_uri(uri: str | None = None, results: str | Path | None = None) -> str:
    """The MLflow tracking URI to use: ``uri``, else a local file store in ``<results>/mlruns``.

    mlflow-skinny refuses file stores unless ``MLFLOW_ALLOW_FILE_STORE=true``, which we set
    (call this before importing mlflow).
    """
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if uri:
        return uri
    path = (results_dir(results) / "mlruns").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def read_format_json(path: str | Path, expected_format: str | tuple[str, ...]) -> dict:
    """A JSON object whose ``format`` field must equal ``expected_format`` (or be one of a tuple of
    formats read); CheckpointError otherwise."""
    import json

    from infra.errors import CheckpointError

    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    expected = (expected_format,) if isinstance(expected_format, str) else tuple(expected_format)
    if not isinstance(meta, dict) or meta.get("format") not in expected:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        wanted = repr(expected[0]) if len(expected) == 1 else " or ".join(map(repr, expected))
        raise CheckpointError(f"{path}: format {found!r}, expected {wanted}")
    return meta


def canonical_json(value) -> str:
    """One-line JSON with sorted keys and no spaces: a stable key for caches and databases."""
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"))
