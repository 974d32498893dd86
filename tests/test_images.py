"""scenes.images: listing folders, reading any image mode, skipping unreadable files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from infra.errors import UserError
from scenes.images import IMAGE_SUFFIXES, ImageReader, generated_images, list_images, load_image


def _save(path, array, mode=None, **kw):
    """Write ``array`` as an image file (format from the suffix); returns ``path``."""
    Image.fromarray(array, mode).save(path, **kw)
    return path


def test_list_images_names_the_folder_in_each_error(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(UserError, match=f"^{missing}: image folder does not exist$"):
        list_images(missing)
    note = tmp_path / "notes.txt"
    note.write_text("not an image")
    with pytest.raises(UserError, match=f"^{note}: expected a folder of images, got a file$"):
        list_images(note)
    with pytest.raises(UserError) as err:
        list_images(tmp_path)  # only a .txt inside
    assert str(err.value).startswith(f"{tmp_path}: no images found")
    assert all(suffix in str(err.value) for suffix in IMAGE_SUFFIXES)
    assert "\n" not in str(err.value)


def test_list_images_sorted_case_insensitive_and_flat(tmp_path):
    pixel = np.zeros((2, 2, 3), np.uint8)
    for name in ("b.JPG", "a.png", "c.WebP", "d.tiff"):
        (tmp_path / name).write_bytes(b"")  # contents are not read when listing
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "inner.png", pixel)
    (tmp_path / "readme.md").write_text("x")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image is not one
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.WebP", "d.tiff"]
    assert set(IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def test_load_image_converts_every_mode_to_rgb_uint8(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgba = np.dstack([np.full((3, 4), v, np.uint8) for v in (10, 20, 30, 0)])
    palette = Image.fromarray(gray).convert("P")
    palette.save(tmp_path / "palette.png")
    cases = {
        "gray.png": (_save(tmp_path / "gray.png", gray, "L"), np.dstack([gray] * 3)),
        "rgba.png": (_save(tmp_path / "rgba.png", rgba, "RGBA"), rgba[..., :3]),  # alpha dropped, colour kept
        "palette.png": (tmp_path / "palette.png", np.array(palette.convert("RGB"))),
        "gray.bmp": (_save(tmp_path / "gray.bmp", gray, "L"), np.dstack([gray] * 3)),
    }
    for name, (path, expected) in cases.items():
        image = load_image(path)
        assert image.dtype == np.uint8 and image.shape == (3, 4, 3), name
        assert np.array_equal(image, expected), name


def test_sixteen_bit_and_float_grayscale_are_scaled_not_clipped(tmp_path):
    deep = (np.arange(6, dtype=np.uint16).reshape(2, 3) * 13107)  # 0 .. 65535
    path = _save(tmp_path / "deep.png", deep)
    assert Image.open(path).mode.startswith("I")
    assert np.array_equal(load_image(path)[..., 0], np.array([[0, 51, 102], [153, 204, 255]]))
    unit = np.array([[0.0, 0.5], [0.25, 1.0]], np.float32)
    image = load_image(_save(tmp_path / "unit.tif", unit, "F"))
    assert np.array_equal(image[..., 1], np.array([[0, 128], [64, 255]]))


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    image = load_image(_save(tmp_path / "turned.png", array, exif=exif))
    assert image.shape == (3, 2, 3)
    assert np.array_equal(image, np.rot90(array, k=-1))


def test_unreadable_files_raise_one_line_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # incompressible
    whole = _save(tmp_path / "whole.png", noise).read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole[: len(whole) // 2])
    for path in (corrupt, truncated):
        with pytest.raises(UserError, match=f"^{path}: unreadable image") as err:
            load_image(path)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="gone.png: image file not found"):
        load_image(tmp_path / "gone.png")


def test_reader_skips_and_counts_unreadable_images(tmp_path):
    for i in range(3):
        _save(tmp_path / f"ok{i}.png", np.full((4, 5, 3), i, np.uint8))
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    (tmp_path / "empty.webp").write_bytes(b"")
    paths = list_images(tmp_path)
    assert len(paths) == 5

    reader = ImageReader()
    read = list(reader.read(paths))
    assert [p.name for p, _ in read] == ["ok0.png", "ok1.png", "ok2.png"]
    assert [int(image[0, 0, 0]) for _, image in read] == [0, 1, 2]
    assert [p.rsplit("/", 1)[-1] for p, _ in reader.skipped] == ["bad.jpg", "empty.webp"]
    assert all("unreadable image" in reason for _, reason in reader.skipped)

    reported = []
    names = [p.name for p, _ in ImageReader(on_skip=lambda path, why: reported.append((path, why))).read(paths)]
    assert names == ["ok0.png", "ok1.png", "ok2.png"]
    assert reported == reader.skipped


def test_generated_images_are_seeded_scenes():
    first = generated_images(3, size=48, seed=7)
    assert len(first) == 3 and all(i.shape == (48, 48, 3) and i.dtype == np.uint8 for i in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, generated_images(3, size=48, seed=7)))
    assert not np.array_equal(first[0], generated_images(1, size=48, seed=8)[0])
    assert not np.array_equal(first[0], first[1])
    assert all(i.std() > 10 for i in first)  # structured content, not a flat frame


def test_real_photos(shared_data):
    paths = list_images(shared_data / "images")  # the folder also holds a LICENSE file
    assert [p.name for p in paths] == ["dog.jpg", "groceries.jpg", "truck.jpg"]
    reader = ImageReader()
    for path, image in reader.read(paths):
        width, height = Image.open(path).size
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert image.std() > 20
    assert reader.skipped == []
