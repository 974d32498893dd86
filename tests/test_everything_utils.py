"""Segment-everything utilities (nas/everything/masks.py) against the official ``segment_anything.utils.amg``
on random inputs, NMS against an independent greedy NMS and a brute-force definition, and MaskData.

OpenCV is not installed here; the official ``remove_small_regions`` imports it, so :func:`cv2_stand_in`
gives it ``connectedComponentsWithStats`` (scipy labelling, itself checked against a flood fill).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from conftest import _reference_nms, cv2_stand_in, oracle
from nas.everything import masks as M


@pytest.fixture(scope="module")
def amg():
    oracle()
    from segment_anything.utils import amg as official_amg

    return official_amg


def _flood_components(mask: np.ndarray) -> list[set]:
    """8-connected components of ``mask`` by breadth-first search (the definition)."""
    seen, comps = np.zeros_like(mask), []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        comp, todo = set(), deque([(y0, x0)])
        seen[y0, x0] = True
        while todo:
            y, x = todo.popleft()
            comp.add((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < h and 0 <= u < w and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        todo.append((v, u))
        comps.append(comp)
    return comps


def _blobs(g: torch.Generator, n: int, h: int, w: int, density: float = 0.5) -> np.ndarray:
    """``(n, h, w)`` bool masks with blobs, holes and specks (upsampled noise plus salt)."""
    coarse = torch.rand(n, 1, h // 4 + 1, w // 4 + 1, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    salt = torch.rand(n, h, w, generator=g) < 0.01
    return ((smooth > density) ^ salt).numpy()


# ---- grids, crops, batches ---------------------------------------------------------------------

def test_point_grids_and_crop_boxes_match_official(amg):
    for n in (1, 2, 5, 16, 32):
        assert np.array_equal(amg.build_point_grid(n), M.point_grid(n))
    for n, layers, scale in ((32, 0, 1), (16, 2, 2), (12, 3, 2), (9, 1, 1)):
        ours = M.layer_point_grids(n, layers, scale)
        theirs = amg.build_all_layer_point_grids(n, layers, scale)
        assert len(ours) == len(theirs) == layers + 1
        assert all(np.array_equal(a, b) for a, b in zip(theirs, ours))
    for hw in ((256, 256), (300, 457), (457, 300), (64, 1000)):
        for layers in (0, 1, 2, 3):
            for ratio in (512 / 1500, 0.0, 0.5):
                assert amg.generate_crop_boxes(hw, layers, ratio) == M.crop_boxes(hw, layers, ratio)


def test_batch_iterator_matches_official(amg):
    a, b = np.arange(10), list(range(100, 110))
    t = torch.arange(10)
    for size in (1, 3, 4, 10, 64):
        ours = list(M.batch_iterator(size, a, b, t))
        theirs = list(amg.batch_iterator(size, a, b, t))
        assert len(ours) == len(theirs)
        for x, y in zip(theirs, ours):
            assert np.array_equal(x[0], y[0]) and x[1] == y[1] and torch.equal(x[2], y[2])
    assert list(M.batch_iterator(4, np.zeros((0, 2)))) == []
    with pytest.raises(ValueError, match="same length"):
        list(M.batch_iterator(2, a, b[:3]))
    with pytest.raises(ValueError, match="at least 1"):
        list(M.batch_iterator(0, a))


# ---- boxes, stability, crop frames -------------------------------------------------------------

def test_boxes_and_stability_match_official(amg):
    g = torch.Generator().manual_seed(0)
    for shape in ((12, 30, 40), (2, 3, 17, 23), (30, 40)):
        masks = torch.rand(shape, generator=g) > 0.97
        masks.view(-1, *shape[-2:])[0] = False  # an empty mask: [0, 0, 0, 0]
        if len(shape) > 2:
            masks.view(-1, *shape[-2:])[1, 5, 7] = True  # a one-pixel mask
        assert torch.equal(amg.batched_mask_to_box(masks), M.masks_to_boxes(masks))
        logits = torch.randn(shape, generator=g) * 3
        for thr, off in ((0.0, 1.0), (0.5, 0.25), (-1.0, 2.0)):
            ours = M.stability_scores(logits, thr, off)
            assert ours.dtype == torch.float32
            assert torch.equal(amg.calculate_stability_score(logits, thr, off), ours)
    assert M.masks_to_boxes(torch.zeros((0, 8, 9), dtype=torch.bool)).shape == (0, 4)
    box = torch.tensor([3, 4, 10, 20])
    assert torch.equal(amg.box_xyxy_to_xywh(box), M.box_xyxy_to_xywh(box))
    boxes = torch.randint(0, 50, (7, 4), generator=g)
    assert torch.equal(torch.stack([amg.box_xyxy_to_xywh(b) for b in boxes]), M.box_xyxy_to_xywh(boxes))
    assert M.box_xyxy_to_xywh([3, 4, 10, 20]) == [3, 4, 7, 16]
    assert np.array_equal(M.box_xyxy_to_xywh(np.array([3, 4, 10, 20])), [3, 4, 7, 16])


def test_crop_frame_helpers_match_official(amg):
    g = torch.Generator().manual_seed(1)
    boxes = torch.randint(0, 60, (200, 4), generator=g)
    boxes[:, 2:] += boxes[:, :2]
    for crop, full in (([10, 10, 60, 60], [0, 0, 100, 100]), ([0, 0, 100, 80], [0, 0, 100, 80]),
                       ([40, 0, 100, 50], [0, 0, 100, 100])):
        assert torch.equal(amg.is_box_near_crop_edge(boxes, crop, full), M.near_crop_edge(boxes, crop, full))
        assert torch.equal(amg.uncrop_boxes_xyxy(boxes, crop), M.uncrop_boxes_xyxy(boxes, crop))
        assert torch.equal(amg.uncrop_boxes_xyxy(boxes[None], crop), M.uncrop_boxes_xyxy(boxes[None], crop))
        pts = torch.rand(9, 2, generator=g, dtype=torch.float64) * 50
        assert torch.equal(amg.uncrop_points(pts, crop), M.uncrop_points(pts, crop))
        assert torch.equal(amg.uncrop_points(pts[None], crop), M.uncrop_points(pts[None], crop))
        x0, y0, x1, y1 = crop
        masks = torch.rand(5, y1 - y0, x1 - x0, generator=g) > 0.5
        ours = M.uncrop_masks(masks, crop, full[3], full[2])
        assert ours.shape == (5, full[3], full[2])
        assert torch.equal(amg.uncrop_masks(masks, crop, full[3], full[2]), ours)
    assert M.uncrop_boxes_xyxy(torch.tensor([[1.5, 2.0, 3.0, 4.0]]), [10, 20, 30, 40]).tolist() == \
        [[11.5, 22.0, 13.0, 24.0]]


# ---- RLE --------------------------------------------------------------------------------------

def test_rle_functions_match_official(amg):
    g = torch.Generator().manual_seed(2)
    masks = torch.as_tensor(_blobs(g, 8, 37, 29))
    masks[0] = False
    masks[1] = True
    masks[2, 0, 0] = True  # a run starting at the first pixel
    masks[3, -1, -1] = True  # ... and one ending at the last
    ours = M.mask_to_rle_pytorch(masks)
    assert ours == amg.mask_to_rle_pytorch(masks)
    assert all(isinstance(c, int) for r in ours for c in r["counts"])
    for rle, mask in zip(ours, masks.numpy()):
        back = M.rle_to_mask(rle)
        assert back.shape == mask.shape and np.array_equal(back, mask)
        assert np.array_equal(amg.rle_to_mask(rle), back)
        assert M.area_from_rle(rle) == amg.area_from_rle(rle) == int(mask.sum())
        coco = M.coco_encode_rle(rle)
        assert coco == amg.coco_encode_rle(rle) and isinstance(coco["counts"], str)
    assert [M.coco_encode_rle(r) for r in ours] == M.encode_rles(masks)
    assert np.array_equal(M.decode_rles(M.encode_rles(masks)), masks.numpy())
    assert M.rle_areas(M.encode_rles(masks)) == masks.flatten(1).sum(1).tolist()
    assert M.mask_to_rle_pytorch(torch.zeros((0, 4, 5), dtype=torch.bool)) == []


# ---- NMS --------------------------------------------------------------------------------------

def _random_boxes(g: torch.Generator, n: int, span: int = 60) -> torch.Tensor:
    boxes = torch.randint(0, span, (n, 4), generator=g).float()
    boxes[:, 2:] = boxes[:, :2] + torch.randint(0, span // 2, (n, 2), generator=g).float()
    return boxes


def _check_greedy_nms_definition(boxes, scores, idxs, thr, keep) -> None:
    """Brute force: kept boxes come by descending score; each kept box overlaps (IoU > thr, same
    category) no earlier kept box; each dropped box overlaps some kept box ranked before it."""
    n = len(boxes)
    rank = {i: r for r, i in enumerate(torch.argsort(scores, descending=True, stable=True).tolist())}

    def iou(i, j):
        x0, y0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
        x1, y1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
        inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
        a = float((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]))
        b = float((boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]))
        union = a + b - inter
        return inter / union if union > 0 else float("nan")

    def clash(i, j):
        return int(idxs[i]) == int(idxs[j]) and iou(i, j) > thr

    kept = keep.tolist()
    assert len(set(kept)) == len(kept)
    assert [rank[i] for i in kept] == sorted(rank[i] for i in kept)
    for a_pos, a in enumerate(kept):
        assert not any(clash(a, b) for b in kept[:a_pos])
    for d in set(range(n)) - set(kept):
        assert any(clash(d, k) and rank[k] < rank[d] for k in kept)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_reference_and_definition(thr):
    g = torch.Generator().manual_seed(3)
    boxes = _random_boxes(g, 150)
    boxes[:5, 2] = boxes[:5, 0]  # zero-area boxes: IoU 0/0 suppresses nothing
    scores = torch.rand(150, generator=g)
    scores[10:20] = 0.5  # ties keep input order
    keep = M.nms(boxes, scores, thr)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, _reference_nms(boxes, scores, thr))
    _check_greedy_nms_definition(boxes, scores, torch.zeros(150), thr, keep)
    assert torch.equal(M.nms(boxes.long(), scores, thr), keep)  # integer boxes, as the generator passes
    assert M.nms(torch.zeros((0, 4)), torch.zeros(0), thr).shape == (0,)


def test_batched_nms_matches_torchvision_and_definition():
    oracle()
    import torchvision

    g = torch.Generator().manual_seed(4)
    boxes = _random_boxes(g, 200)
    scores = torch.rand(200, generator=g)
    idxs = torch.randint(0, 4, (200,), generator=g)
    for thr in (0.2, 0.5, 0.7):
        keep = M.batched_nms(boxes, scores, idxs, thr)
        assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, thr))
        _check_greedy_nms_definition(boxes, scores, idxs, thr, keep)
        per_cat = torch.cat([torch.nonzero(idxs == c).flatten()[M.nms(boxes[idxs == c], scores[idxs == c], thr)]
                             for c in range(4)])
        assert torch.equal(keep, per_cat[torch.argsort(scores[per_cat], descending=True)])
    assert torch.equal(M.batched_nms(boxes, scores, torch.zeros(200), 0.5), M.nms(boxes, scores, 0.5))


# ---- small regions ----------------------------------------------------------------------------

def test_cv2_stand_in_labels_8_connected_components():
    g = torch.Generator().manual_seed(5)
    for mask in _blobs(g, 4, 24, 19, density=0.55):
        n, labels, stats, _ = cv2_stand_in().connectedComponentsWithStats(mask.astype(np.uint8), 8)
        found = sorted(sorted(zip(*np.nonzero(labels == i))) for i in range(1, n))
        expected = sorted(sorted(c) for c in _flood_components(mask))
        assert found == expected
        assert stats[0, 4] == int((~mask).sum()) and stats[1:, 4].sum() == int(mask.sum())


def test_remove_small_regions_matches_official(amg, fake_cv2):
    g = torch.Generator().manual_seed(6)
    changed_any = {"holes": False, "islands": False}
    for mask in _blobs(g, 12, 40, 33):
        for mode in ("holes", "islands"):
            for area in (1, 5, 30, 400, 10_000):
                expected, exp_changed = amg.remove_small_regions(mask, area, mode)
                got, changed = M.remove_small_regions(mask, area, mode)
                assert changed == exp_changed and np.array_equal(got, expected), (mode, area)
                changed_any[mode] |= changed
    assert all(changed_any.values())
    with pytest.raises(ValueError, match="holes"):
        M.remove_small_regions(np.zeros((3, 3), bool), 4, "both")


def test_remove_small_regions_8_connected():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # 1-px hole
    mask[15, 15] = mask[16, 16] = True  # diagonal pair: one 8-connected island of 2 px
    filled, changed = M.remove_small_regions(mask, 3, "holes")
    assert changed and filled[5, 5]
    cleaned, changed = M.remove_small_regions(filled, 3, "islands")
    assert changed and not cleaned[15, 15] and cleaned[2:12, 2:12].all()
    kept, changed = M.remove_small_regions(cleaned, 2, "islands")
    assert not changed and np.array_equal(kept, cleaned)
    tiny = np.zeros((10, 10), dtype=bool)
    tiny[1, 1] = tiny[5:7, 5] = True
    only, _ = M.remove_small_regions(tiny, 50, "islands")  # all small: the largest stays
    assert only.sum() == 2 and only[5, 5]


# ---- MaskData ---------------------------------------------------------------------------------

def test_mask_data_filter_cat_numpy():
    a = M.MaskData(iou=torch.tensor([0.1, 0.9, 0.5]), boxes=np.arange(12).reshape(3, 4), rles=["a", "b", "c"])
    assert len(a) == 3 and "iou" in a and set(a.keys()) == {"iou", "boxes", "rles"}
    by_mask = a.filter(torch.tensor([True, False, True]))
    assert by_mask["rles"] == ["a", "c"] and torch.equal(by_mask["iou"], torch.tensor([0.1, 0.5]))
    assert np.array_equal(by_mask["boxes"], [[0, 1, 2, 3], [8, 9, 10, 11]])
    by_index = a.filter(torch.tensor([2, 0]))
    assert by_index["rles"] == ["c", "a"] and np.array_equal(by_index["boxes"][0], [8, 9, 10, 11])
    assert a["rles"] == ["a", "b", "c"]  # filter returns a new container
    both = M.MaskData.cat([a, M.MaskData(), by_index])
    assert len(both) == 5 and both["rles"] == ["a", "b", "c", "c", "a"] and both["boxes"].shape == (5, 4)
    assert len(M.MaskData.cat([])) == 0
    as_np = a.to_numpy()
    assert isinstance(as_np["iou"], np.ndarray) and isinstance(a["iou"], torch.Tensor)
    del both["rles"]
    assert "rles" not in both
    with pytest.raises(ValueError, match="length 2"):
        a["points"] = torch.zeros(2, 2)
    with pytest.raises(TypeError, match="tensor, array or list"):
        a["x"] = 3
    with pytest.raises(ValueError, match="columns"):
        M.MaskData.cat([a, M.MaskData(iou=torch.zeros(1))])
