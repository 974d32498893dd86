"""COCO annotations, instances or panoptic, read into one pycocotools ``COCO`` index.

Training (``scenes.sources``), the quality evaluators and segment-everything tuning all read
ground truth through :func:`load_coco`, so a COCO *instances* file and a COCO *panoptic* file
are interchangeable wherever annotations are accepted.

- **Instances** (``instances_val2017.json``): polygons or RLEs, read as they are.
- **Panoptic** (``panoptic_val2017.json`` with its PNG folder ``panoptic_val2017/`` beside it,
  COCO's layout): every pixel belongs to one segment, encoded in the PNG as
  ``R + 256 G + 256^2 B``; each ``segments_info`` entry becomes one annotation (ids numbered
  1..N in file order, the PNG's id kept as ``segment_id``) with a COCO RLE
  ``segmentation``, its ``bbox``, ``area``, ``iscrowd`` and ``category_id``, plus ``isthing``
  (1 for a countable object, 0 for stuff such as sky or road) from the categories. With
  ``things_only=True`` the stuff segments are left out: prompted (box/point) mIoU is scored on
  things, segment-everything recall on things and stuff alike (class-agnostic).
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

from infra.errors import UserError

_IMAGE_FIELDS = ("id", "file_name", "height", "width")


def read_coco_json(path: str | Path) -> dict:
    """The JSON object of a COCO annotations file; UserError (naming the file) when unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: annotations file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a COCO annotations file (not readable JSON: {exc})") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        raise UserError(f"{path}: not a COCO annotations file (expected a JSON object with "
                        f"'images' and 'annotations' lists)")
    return data


def is_panoptic(data: dict) -> bool:
    """True when the annotations are COCO panoptic (one entry per image with ``segments_info``)."""
    anns = data.get("annotations") or []
    return bool(anns) and all(isinstance(a, dict) and "segments_info" in a for a in anns)


def panoptic_png_dir(path: str | Path) -> Path:
    """COCO's layout: ``annotations/panoptic_val2017.json`` -> ``annotations/panoptic_val2017/``."""
    path = Path(path)
    return path.with_suffix("")


def load_coco(path: str | Path, skip=None, things_only: bool = False):
    """Read a COCO instances or panoptic file into a pycocotools ``COCO`` index, quietly.

    Image entries lacking ``id``/``file_name``/``height``/``width`` and annotations lacking
    ``id``/``image_id`` are passed to ``skip(item, reason)`` and dropped. Raises UserError
    (one line, naming the file) when the file is missing, not JSON, not COCO, a panoptic file
    without its PNG folder, or a file none of whose annotations refer to one of its images.
    """
    from pycocotools.coco import COCO

    path = Path(path)
    data = read_coco_json(path)
    skip = skip or (lambda item, reason: None)
    images = []
    for i, img in enumerate(data["images"]):
        if isinstance(img, dict) and all(k in img for k in _IMAGE_FIELDS):
            images.append(img)
        else:
            skip(f"images[{i}]", f"an image entry needs {', '.join(_IMAGE_FIELDS)}")
    categories = [c for c in data.get("categories") or [] if isinstance(c, dict) and "id" in c]
    image_ids = {img["id"] for img in images}
    ann_ids = {a.get("image_id") for a in data["annotations"]
               if isinstance(a, dict) and isinstance(a.get("image_id"), (int, str))}
    if ann_ids and not ann_ids & image_ids:  # before any PNG is decoded
        raise UserError(f"{path}: none of its annotations' image_id values is the id of one of its images "
                        f"(mismatched image ids)")
    if is_panoptic(data):
        anns = _panoptic_annotations(path, data, images, categories, skip, things_only)
    else:
        anns = []
        for i, ann in enumerate(data["annotations"]):
            if isinstance(ann, dict) and "id" in ann and "image_id" in ann:
                anns.append(ann)
            else:
                skip(f"annotations[{i}]", "an annotation needs id and image_id")
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _panoptic_annotations(path: Path, data: dict, images: list[dict], categories: list[dict], skip,
                          things_only: bool) -> list[dict]:
    """One RLE annotation per panoptic segment (see the module docstring)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    png_dir = panoptic_png_dir(path)
    if not png_dir.is_dir():
        raise UserError(f"{path}: panoptic annotations need their PNG folder {png_dir.name}/ beside the file "
                        f"(not found: {png_dir})")
    isthing = {c["id"]: int(c.get("isthing", 1)) for c in categories}
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in images}
    out = []
    for entry in data["annotations"]:
        image_id, png_name = entry.get("image_id"), entry.get("file_name")
        if image_id not in sizes:
            skip(f"{path.name}: {png_name}", f"image_id {image_id!r} is not in images")
            continue
        try:
            with Image.open(png_dir / str(png_name)) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint32)
        except Exception as exc:  # missing or unreadable PNG: that image has no ground truth
            skip(f"{png_dir.name}/{png_name}", f"unreadable panoptic PNG ({type(exc).__name__}: {exc})")
            continue
        if rgb.shape[:2] != sizes[image_id]:
            skip(f"{png_dir.name}/{png_name}", f"PNG is {rgb.shape[1]}x{rgb.shape[0]} px but the image entry "
                                               f"says {sizes[image_id][1]}x{sizes[image_id][0]}")
            continue
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
        for seg in entry["segments_info"]:
            thing = isthing.get(seg.get("category_id"), 1)
            if things_only and not thing:
                continue
            mask = ids == seg["id"]
            if not mask.any():
                skip(f"segment {seg['id']} ({png_name})", "empty in the PNG")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            rows, cols = np.nonzero(mask)
            bbox = [float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
                    float(rows.max() - rows.min() + 1)]
            out.append({"id": len(out) + 1, "segment_id": seg["id"], "image_id": image_id, "category_id": seg.get("category_id", 0),
                        "iscrowd": int(seg.get("iscrowd", 0)), "isthing": thing, "bbox": bbox,
                        "area": int(mask.sum()), "segmentation": rle})
    return out


def image_ids(path: str | Path, file_names: list[str], every: bool = False) -> tuple:
    """``(COCO index, {file name: image id})`` of a COCO file, for images known by ``file_names``.

    File names are matched without their folders. UserError (naming the file, saying "mismatched
    image ids") when none of ``file_names`` is in the file, or with ``every`` when any is missing.
    """
    path = Path(path)
    coco = load_coco(path)
    ids = {Path(im["file_name"]).name: im["id"] for im in coco.dataset["images"]}
    names = [Path(n).name for n in file_names]
    missing = [n for n in names if n not in ids]
    if every and missing:
        raise UserError(f"{path}: {len(missing)} of the {len(names)} images are not in its 'images' "
                        f"(first: {missing[0]}); mismatched image ids")
    if names and len(missing) == len(names):
        raise UserError(f"{path}: none of the images' file names ({names[0]}, ...) appear in "
                        f"its 'images' (mismatched image ids)")
    return coco, ids
