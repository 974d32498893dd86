"""Shared test fixtures.

The official ``segment-anything==1.0`` package is SAM's oracle, and ``sam2==1.1.0`` (imported
with a hydra stand-in, :func:`sam2_oracle`) SAM 2's. Both import torchvision,
whose 0.28.0 wheel is a CUDA build whose C++ ops do not load on the CPU torch we pin.
Before anything imports torchvision we register the two ops it needs
(``torchvision::nms`` and ``torchvision::qnms``) with a plain-torch greedy NMS written
here, independently of the package's own NMS, so that comparisons stay independent.
This stand-in lives in tests/ only.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# One intra-op thread in the tests and the processes they start: the models are small, and on a 2-core machine
# that is doing anything else two spinning OpenMP threads slowed single tests 5x (a search test: 143 s -> 26 s).
# Tests about thread counts set their own. SAMNAS_TEST_THREADS overrides.
TEST_THREADS = int(os.environ.get("SAMNAS_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))
torch.set_num_threads(TEST_THREADS)


def _reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over XYXY boxes; returns kept indices in descending score order."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes.float()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        iou = inter / (area[i] + area - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def _install_torchvision_stand_in() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 (the lookup raises when nms is not registered yet)
        return True
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _reference_nms, "CompositeExplicitAutograd")
    lib.impl("qnms", _reference_nms, "CompositeExplicitAutograd")
    _install_torchvision_stand_in.lib = lib  # keep the registration alive
    try:
        import torchvision.extension
    except Exception:  # torchvision not installed: oracle tests skip
        return False
    torchvision.extension._has_ops = lambda: True
    return True


HAVE_TORCHVISION = _install_torchvision_stand_in()


def oracle():
    """Import and return the official ``segment_anything`` package, or skip the test."""
    if not HAVE_TORCHVISION:
        pytest.skip("official segment-anything oracle needs torchvision (pip install -e '.[dev]' -c constraints.txt)")
    return pytest.importorskip("segment_anything")


def _hydra_stand_in() -> dict[str, types.ModuleType]:
    """Modules that let ``import sam2`` run without hydra-core, which the oracle is installed without.

    ``sam2/__init__.py`` only registers its YAML configs with hydra; the tests build the official
    models from their classes, so a hydra whose config search path is already "initialised" is
    all the import needs. Empty when a real hydra is installed.
    """
    import importlib.util

    if "hydra" in sys.modules or importlib.util.find_spec("hydra") is not None:
        return {}

    class GlobalHydra:
        @classmethod
        def instance(cls):
            return cls()

        def is_initialized(self) -> bool:
            return True

    def initialize_config_module(*args, **kwargs):
        raise RuntimeError("hydra stand-in (tests/conftest.py): SAM 2 configs are not composed in tests")

    modules = {name: types.ModuleType(name) for name in ("hydra", "hydra.core", "hydra.core.global_hydra")}
    modules["hydra"].initialize_config_module = initialize_config_module
    modules["hydra"].core = modules["hydra.core"]
    modules["hydra.core"].global_hydra = modules["hydra.core.global_hydra"]
    modules["hydra.core.global_hydra"].GlobalHydra = GlobalHydra
    return modules


def sam2_oracle():
    """Import and return the official ``sam2`` package (SAM 2's code only, no weights), or skip the test.

    The hydra stand-in is in ``sys.modules`` only while ``sam2`` itself is imported, so no other
    library sees a hydra that is not there; the sam2 modules the tests use do not import hydra.
    """
    if "sam2" in sys.modules:
        return sys.modules["sam2"]
    if not HAVE_TORCHVISION:
        pytest.skip("official sam2 oracle needs torchvision (pip install -e '.[dev]' -c constraints.txt)")
    stand_in = _hydra_stand_in()
    sys.modules.update(stand_in)
    try:
        return pytest.importorskip("sam2", reason="official sam2 oracle not installed (see .ci/run: SAM2_BUILD_CUDA=0)")
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data, or skip when a fresh clone does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture()
def micro_checkpoint(tmp_path) -> Path:
    """SAM 1's ``micro`` model (seed 0, random weights) saved as a plain state dict, the official SAM layout."""
    from supernet.elastic.build import build_sam

    path = tmp_path / "micro.pth"
    torch.save(build_sam("micro", seed=0).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def micro_latency(tmp_path_factory) -> Path:
    """A latency root holding a small real cpu-torch predictor for sam_micro (block table, 12 subnets, 1 thread),
    profiled and fitted once per session. Read-only: a module that writes latency files copies it first."""
    from nas.latency import ProfileSettings, fit_device, profile_device

    root = tmp_path_factory.mktemp("micro_latency") / "latency"
    profile_device("sam_micro", "cpu-torch", ProfileSettings(samples=12, repeats=2, warmup=1, min_seconds=0, threads=1,
                                                             progress=False), root=root)
    fit_device("cpu-torch", root=root, folds=3)
    return root


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
sys.path.insert(0, str(ROOT))


def cv2_stand_in() -> types.ModuleType:
    """A module with OpenCV's ``connectedComponentsWithStats(image, connectivity)`` (tests only)."""
    import numpy as np
    from scipy import ndimage

    def connected_components_with_stats(image, connectivity=8):
        structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
        labels, n = ndimage.label(np.asarray(image) != 0, structure=structure)
        stats = np.zeros((n + 1, 5), dtype=np.int32)  # left, top, width, height, area; row 0 = background
        stats[:, 4] = np.bincount(labels.ravel(), minlength=n + 1)
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            stats[i, :4] = [sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start]
        centroids = np.zeros((n + 1, 2))
        return n + 1, labels.astype(np.int32), stats, centroids

    mod = types.ModuleType("cv2")
    mod.connectedComponentsWithStats = connected_components_with_stats
    return mod


@pytest.fixture
def fake_cv2(monkeypatch):
    """Install :func:`cv2_stand_in` as ``cv2`` unless a real OpenCV is importable."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "cv2", cv2_stand_in())
