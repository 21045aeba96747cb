"""The minimal PNG writer and chunk reader behind the served images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imaging.png import encode_png_gray8, read_png_chunks, to_uint8
from tests.imaging.builders import chunk_types, pil_bytes


def test_encoded_png_decodes_to_the_same_array() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (37, 53), dtype=np.uint8)
    png = encode_png_gray8(pixels)

    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), pixels)
    assert chunk_types(png) == ["IHDR", "IDAT", "IEND"]


def test_encoding_is_byte_for_byte_reproducible() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (64, 64), dtype=np.uint8)
    assert encode_png_gray8(pixels) == encode_png_gray8(pixels.copy())


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4), dtype=np.uint16), np.zeros((4, 4, 1), dtype=np.uint8), np.zeros((0, 3), np.uint8)]
)
def test_only_non_empty_2d_uint8_is_encoded(pixels: np.ndarray) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_png_gray8(pixels)


def test_to_uint8_rounds_and_clips() -> None:
    values = np.array([-0.01, 0.0, 0.2 / 255, 0.6 / 255, 0.5, 1.0, 1.01], dtype=np.float64)
    # 0.5 * 255 = 127.5 rounds half to even: 128.
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 0, 1, 128, 255, 255])
    with pytest.raises(TypeError):
        to_uint8(np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError):
        to_uint8(np.array([np.inf]))


def test_chunk_reader_lists_chunks_and_checks_crcs() -> None:
    png = bytearray(pil_bytes(Image.new("L", (4, 4)), "PNG", dpi=(72, 72)))
    chunks = read_png_chunks(bytes(png))
    assert [chunk.type for chunk in chunks] == chunk_types(bytes(png))
    assert all(chunk.crc_ok for chunk in chunks)

    png[20] ^= 0x01  # a byte inside IHDR's data
    assert not read_png_chunks(bytes(png))[0].crc_ok


def test_chunk_reader_refuses_non_png_and_overrunning_chunks() -> None:
    png = pil_bytes(Image.new("L", (4, 4)), "PNG")
    with pytest.raises(ValueError, match="signature"):
        read_png_chunks(b"GIF89a" + png)
    with pytest.raises(ValueError, match="cut off"):
        read_png_chunks(png[:40])  # inside the second chunk's 8-byte header
    with pytest.raises(ValueError, match=r"ends .* early"):
        read_png_chunks(png[:45])  # inside the IDAT data
