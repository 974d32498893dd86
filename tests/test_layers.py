"""The package layout keeps data flowing one way: no module imports from a layer above its own.

Layers, lowest first (a module belongs to the longest prefix listed). Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deploy", "infra", "scenes", "supernet", "search_spaces", "nas", "cli")
LAYERS = [
    ("deploy",),                                  # the torch-free runner of an export: imports no other layer
    ("infra",),                                   # errors, atomic files, results root, argument types
    ("scenes",),                                  # image folders, COCO, synthetic scenes, training sources
    ("supernet.modeling",),                       # the plain SAM model and its builders
    ("supernet.elastic.modules", "supernet.elastic.sam2_modules", "supernet.elastic.build"),  # the supernet: elastic
    # encoder modules (SAM, SAM 2), build_sam and build_sam2_supernet
    ("supernet", "supernet.checkpoint", "supernet.reference"),  # checkpoint loading, packaged weights
    ("supernet.elastic",),                        # elastic activation, ranking, extraction (over the supernet)
    ("supernet.commands", "supernet.model_source"),  # rank command; the model a command runs on
    ("search_spaces",),                           # spaces: validate, sample, encode, count
    # shared nas tools: timing and fingerprints, the Optuna studies (storage, trial record, the one driver),
    # and the ONNX conversion of SAM's and SAM 2's encoders, which latency timing runs as well as export writes
    ("nas", "nas.measure", "nas.studies", "nas.export.onnx_export", "nas.export.sam2_onnx"),
    ("nas.training", "nas.latency", "nas.quality"),  # training, latency predictors, quality evaluators
    ("nas.search",),                              # the architecture search, its samplers, fronts, the measured front
    ("nas.export", "nas.everything"),             # export and segment-everything
    ("nas.commands",),                            # command modules over all of nas
    ("cli",),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Project modules that ``path`` imports, relative imports resolved, ``from X import Y`` as X."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found.update([target] if node.module else [f"{target}.{a.name}" for a in node.names])
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def project_files() -> list[Path]:
    return [ROOT / "cli.py", *sorted(f for p in PACKAGES[:-1] for f in (ROOT / p).rglob("*.py"))]


def upward_imports() -> list[str]:
    bad = []
    for path in project_files():
        importer = module_name(path)
        for target in sorted(imported_modules(path)):
            if layer_of(target) > layer_of(importer):
                bad.append(f"{importer} (layer {layer_of(importer)}) imports {target} (layer {layer_of(target)})")
    return bad


def test_no_module_imports_from_a_layer_above_it():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check can fail: a model file that imports the search driver is reported."""
    fake = tmp_path / "supernet" / "modeling"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from nas.search.run import run_search\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert imported_modules(fake / "bad.py") == {"nas.search.run"}
    assert layer_of("nas.search.run") > layer_of(module_name(fake / "bad.py"))


@pytest.mark.parametrize("module", ["infra.errors", "scenes.annotations", "supernet.modeling.sam",
                                    "supernet.elastic.extract", "supernet.elastic.modules", "nas.training.train",
                                    "nas.search.run"])
def test_every_layer_name_is_a_real_module(module):
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists()


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found


def test_deploy_imports_no_project_module_and_never_torch():
    """``deploy`` runs where only numpy, pillow, yaml and a runtime are installed."""
    files = sorted((ROOT / "deploy").rglob("*.py"))
    assert files
    for path in files:
        assert all(m.startswith("deploy") for m in imported_modules(path)), path
        assert not third_party_imports(path) & {"torch", "torchvision", "infra", "scenes", "supernet",
                                                "search_spaces", "nas", "cli", "scipy", "pycocotools"}, path
