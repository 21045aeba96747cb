"""Importing PNG and JPEG files: every colour type and bit depth ends up as display grey levels in [0, 1]."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from imaging.read import detect_format, read_image, sha256_hex
from tests.imaging.builders import cxr_files, gradient, pil_bytes, png_with_header


def test_sha256_hex_matches_the_fips_180_2_test_vector() -> None:
    # FIPS 180-2, Appendix B.1: SHA-256("abc").
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_png_8_bit_grey_is_read_exactly() -> None:
    stored = gradient()
    decoded = read_image(pil_bytes(Image.fromarray(stored), "PNG"))

    assert decoded.source_format == "png"
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.bits_stored == 8
    assert decoded.was_colour is False
    assert decoded.pixels.dtype == np.float32
    np.testing.assert_array_equal(decoded.pixels, stored.astype(np.float32) / 255)
    assert decoded.notes == ()


def test_png_16_bit_grey_keeps_its_precision() -> None:
    stored = gradient(maximum=65535, dtype=np.uint16)
    decoded = read_image(pil_bytes(Image.fromarray(stored), "PNG"))

    assert decoded.bits_stored == 16
    np.testing.assert_allclose(decoded.pixels, stored / 65535, atol=1e-6)
    # Two neighbouring 16-bit levels stay distinct, which 8 bits could not do.
    assert len(np.unique(decoded.pixels)) > 256


def test_png_2_bit_grey_spans_the_full_range() -> None:
    # One row of four 2-bit samples 0, 1, 2, 3 (0b00011011), filter byte 0.
    data = png_with_header(4, 1, bit_depth=2, idat=zlib.compress(bytes([0, 0b00011011])))
    decoded = read_image(data)

    assert decoded.bits_stored == 2
    np.testing.assert_allclose(decoded.pixels, [[0, 1 / 3, 2 / 3, 1]], atol=1e-6)


def test_png_palette_with_grey_entries_is_not_colour() -> None:
    indices = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 80, 80, 80, 160, 160, 160, 255, 255, 255])
    decoded = read_image(pil_bytes(image, "PNG"))

    assert decoded.was_colour is False
    np.testing.assert_allclose(decoded.pixels, [[0, 80 / 255], [160 / 255, 1]], atol=1e-6)


def test_png_palette_with_colours_is_flagged() -> None:
    image = Image.fromarray(np.tile(np.array([[0, 1]], dtype=np.uint8), (8, 4)), mode="P")
    image.putpalette([255, 0, 0, 0, 0, 255])
    decoded = read_image(pil_bytes(image, "PNG"))

    assert decoded.was_colour is True
    # ITU-R BT.601 luma: red 0.299, blue 0.114.
    np.testing.assert_allclose(decoded.pixels[0, :2], [0.299, 0.114], atol=1e-6)


def test_png_rgb_with_colour_is_flagged_and_converted_with_bt601_luma() -> None:
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[:5] = (255, 0, 0)
    rgb[5:] = (0, 255, 0)
    decoded = read_image(pil_bytes(Image.fromarray(rgb), "PNG"))

    assert decoded.was_colour is True
    assert "converted from RGB to grayscale" in decoded.notes
    np.testing.assert_allclose(decoded.pixels[0, 0], 0.299, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels[9, 0], 0.587, atol=1e-6)


def test_png_rgb_with_grey_content_is_not_flagged() -> None:
    grey = gradient()
    decoded = read_image(pil_bytes(Image.fromarray(np.stack([grey] * 3, axis=-1)), "PNG"))

    assert decoded.was_colour is False
    np.testing.assert_allclose(decoded.pixels, grey / 255, atol=1e-6)


def test_png_rgba_transparent_pixels_become_black() -> None:
    rgba = np.full((4, 4, 4), 200, dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    decoded = read_image(pil_bytes(Image.fromarray(rgba), "PNG"))

    assert decoded.pixels[0, 0] == 0
    np.testing.assert_allclose(decoded.pixels[1, 1], 200 / 255, atol=1e-6)
    assert "transparent pixels composited onto black" in decoded.notes


def test_png_grey_with_alpha_is_read() -> None:
    la = np.zeros((3, 5, 2), dtype=np.uint8)
    la[..., 0] = 90
    la[..., 1] = 255
    decoded = read_image(pil_bytes(Image.fromarray(la, mode="LA"), "PNG"))

    assert decoded.was_colour is False
    np.testing.assert_allclose(decoded.pixels, np.full((3, 5), 90 / 255), atol=1e-6)


def test_jpeg_grey_is_read_within_compression_error() -> None:
    stored = gradient()
    decoded = read_image(pil_bytes(Image.fromarray(stored), "JPEG", quality=95))

    assert decoded.source_format == "jpeg"
    assert decoded.bits_stored == 8
    assert decoded.was_colour is False
    np.testing.assert_allclose(decoded.pixels, stored / 255, atol=4 / 255)


def test_jpeg_colour_is_flagged() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[:, :16] = (220, 30, 30)
    rgb[:, 16:] = (30, 30, 220)
    decoded = read_image(pil_bytes(Image.fromarray(rgb), "JPEG", quality=90))

    assert decoded.was_colour is True


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_then_dropped(fmt: str) -> None:
    stored = np.zeros((48, 64), dtype=np.uint8)
    stored[:8, :8] = 255  # a marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = read_image(pil_bytes(Image.fromarray(stored), fmt, exif=exif, quality=95))

    assert (decoded.width, decoded.height) == (48, 64)
    # Rotating clockwise carries the top-left corner to the top-right.
    assert decoded.pixels[:6, -6:].mean() > 0.9
    assert decoded.pixels[-6:, :6].mean() < 0.1
    assert any("EXIF orientation 6" in note for note in decoded.notes)


def test_format_is_detected_from_magic_numbers() -> None:
    png = pil_bytes(Image.new("L", (2, 2)), "PNG")
    jpeg = pil_bytes(Image.new("L", (2, 2)), "JPEG")

    assert detect_format(png) == "png"
    assert detect_format(jpeg) == "jpeg"
    assert detect_format(bytes(128) + b"DICM" + bytes(16)) == "dicom"


def test_real_pngs_from_the_shared_sample_set_decode_exactly() -> None:
    paths = cxr_files("real", "*/*.png")
    assert len(paths) == 30
    for path in paths:
        data = path.read_bytes()
        decoded = read_image(data)
        expected = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
        assert (decoded.height, decoded.width) == expected.shape, path.name
        np.testing.assert_array_equal(decoded.pixels, expected, err_msg=path.name)
        assert decoded.was_colour is False


def test_synthetic_jpegs_from_the_shared_sample_set_are_grey_content_in_rgb() -> None:
    paths = cxr_files("synthetic", "*/*.jpg")
    assert len(paths) == 7
    for path in paths:
        decoded = read_image(path.read_bytes())
        assert (decoded.width, decoded.height) == (512, 512)
        assert decoded.was_colour is False, path.name
        # Pillow's own "L" conversion uses the same BT.601 weights, rounded to integers.
        expected = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
        np.testing.assert_allclose(decoded.pixels, expected, atol=1 / 255)
