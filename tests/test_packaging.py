"""Packaging: installing samnas keeps the torch a user already has, and the pins live in constraints.txt.

pip resolves the project into a fresh environment that holds a different torch build (a stand-in
distribution, torch 2.5.0+cpu: metadata only, nothing downloaded), offline (--no-index), with the
rest of the dependencies seen from this interpreter's site-packages.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FAKE_TORCH = "2.5.0+cpu"


def _fake_torch(site: Path) -> None:
    """A torch distribution's metadata alone: what pip reads to decide whether torch is installed."""
    info = site / f"torch-{FAKE_TORCH}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {FAKE_TORCH}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A venv that sees this interpreter's packages, except that its own torch is the stand-in, and a
    copy of the project's metadata files (so that building metadata writes nothing into the tree)."""
    tmp = tmp_path_factory.mktemp("packaging")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    _fake_torch(site)
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    return python, project, tmp


def _dry_run(env, *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``pip install --dry-run --report`` of the project into the venv: the process and the names pip would install."""
    python, project, tmp = env
    report = tmp / "report.json"
    report.unlink(missing_ok=True)
    environ = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
    proc = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--report", str(report), "--no-index",
                           "--no-build-isolation", "--disable-pip-version-check", "--quiet", *extra, str(project)],
                          capture_output=True, text=True, env=environ, timeout=300)
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]] \
        if report.is_file() else []
    return proc, names


def test_the_venv_sees_the_stand_in_torch(env):
    python, _, _ = env
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out == FAKE_TORCH


def test_installing_samnas_keeps_an_installed_torch_2x(env):
    proc, names = _dry_run(env)
    assert proc.returncode == 0, proc.stderr
    assert "samnas" in names and "torch" not in names, names


def test_a_torch_the_ranges_refuse_would_be_replaced(env, tmp_path):
    """The control: when the installed torch does not fit, pip replaces it (or, offline, cannot), so the
    test above would see a torch that the ranges refused."""
    constraint = tmp_path / "c.txt"
    constraint.write_text("torch>=2.6\n")
    proc, names = _dry_run(env, "-c", str(constraint))
    assert proc.returncode != 0 or "torch" in names, names


def test_constraints_pin_every_dependency_within_its_range():
    """constraints.txt holds one exact version per dependency and extra, torch 2.13.0 included, each
    inside pyproject.toml's range."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = [Requirement(r) for r in project["dependencies"]]
    ranges += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
            pins[req.name.lower()] = next(iter(req.specifier)).version
    assert pins["torch"] == "2.13.0" and pins["openvino"] == "2026.4.0"
    for req in ranges:
        name = req.name.lower()
        assert name in pins, f"constraints.txt has no pin for {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"
        assert "==" not in str(req.specifier), f"pyproject.toml pins {req} exactly: ranges belong there"
