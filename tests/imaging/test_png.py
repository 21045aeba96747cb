"""The minimal PNG writer and chunk reader behind the served images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imaging.png import (
    PNG_SIGNATURE,
    STORED_BLOCK_MAX,
    encode_png_gray8,
    read_png_chunks,
    served_png_length,
    to_uint8,
    up_filtered_scanlines,
)
from tests.imaging.builders import chunk_types, gradient, pil_bytes


def contents(height: int, width: int) -> dict[str, np.ndarray]:
    """Images a compressor treats very differently: empty, incompressible, smooth and saturated."""
    rng = np.random.default_rng(height * 7919 + width)
    return {
        "zeros": np.zeros((height, width), dtype=np.uint8),
        "white": np.full((height, width), 255, dtype=np.uint8),
        "noise": rng.integers(0, 256, (height, width), dtype=np.uint8),
        "gradient": gradient(height, width),
        "sparse": (rng.random((height, width)) < 0.01).astype(np.uint8) * 255,
    }


def idat_stream(png: bytes) -> bytes:
    """The IDAT data (the zlib stream) of a PNG with a single IDAT chunk, parsed independently of imaging.png."""
    offset = 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        if png[offset + 4 : offset + 8] == b"IDAT":
            return png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raise AssertionError("no IDAT chunk")


def stored_block_lengths(stream: bytes) -> list[int]:
    """LEN of each deflate block of a zlib stream made only of stored blocks (RFC 1951, 3.2.4)."""
    assert stream[:2] == b"\x78\x01" and (stream[0] * 256 + stream[1]) % 31 == 0
    lengths, offset = [], 2
    while True:
        header = stream[offset]
        assert header & 0b110 == 0, "not a stored block"
        length, complement = struct.unpack("<HH", stream[offset + 1 : offset + 5])
        assert length ^ complement == 0xFFFF
        lengths.append(length)
        offset += 5 + length
        if header & 1:  # BFINAL
            break
    assert offset + 4 == len(stream)  # only the Adler-32 remains
    return lengths


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


def test_served_png_length_of_a_tiny_image_by_hand() -> None:
    # 3 x 2 pixels: raw data 2 rows x (1 filter byte + 3 pixels) = 8 bytes, one stored block.
    # signature 8 + IHDR (4 length + 4 type + 13 data + 4 CRC = 25)
    # + IDAT (4 + 4 + [2 zlib header + 5 block header + 8 data + 4 Adler-32 = 19] + 4 = 31)
    # + IEND (4 + 4 + 0 + 4 = 12) = 8 + 25 + 31 + 12 = 76.
    assert served_png_length(3, 2) == 76
    # 1 x 1: raw 2 bytes -> IDAT data 2 + 5 + 2 + 4 = 13 -> 8 + 25 + 25 + 12 = 70.
    assert served_png_length(1, 1) == 70
    # 1024 x 1024: raw 1024 x 1025 = 1,049,600 bytes = 16 full blocks of 65,535 + one of 1,040 -> 17 blocks;
    # IDAT data 2 + 17 x 5 + 1,049,600 + 4 = 1,049,691 -> 8 + 25 + 1,049,703 + 12 = 1,049,748.
    assert served_png_length(1024, 1024) == 1_049_748


def test_served_png_length_starts_a_block_every_65535_bytes() -> None:
    # One row of 65,534 pixels is exactly one full block of raw data; one pixel more needs a second block.
    assert served_png_length(65_535, 1) - served_png_length(65_534, 1) == 1 + 5
    assert served_png_length(65_534, 1) == 57 + 2 + 5 + STORED_BLOCK_MAX + 4


@pytest.mark.parametrize(("width", "height"), [(0, 4), (4, -1), (2.0, 2), (True, 3)])
def test_served_png_length_refuses_non_positive_or_non_integer_sizes(width: object, height: object) -> None:
    with pytest.raises(ValueError):
        served_png_length(width, height)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("height", "width"),
    [(1, 1), (2, 3), (64, 64), (255, 257), (1, 65_534), (1, 65_535), (512, 512), (777, 777), (1023, 1023)],
)
def test_fixed_length_png_has_the_length_of_the_format_arithmetic_whatever_the_content(height: int, width: int) -> None:
    lengths = set()
    for name, pixels in contents(height, width).items():
        png = encode_png_gray8(pixels, fixed_length=True)
        lengths.add(len(png))
        assert len(png) == served_png_length(width, height), name
        blocks = stored_block_lengths(idat_stream(png))
        assert all(length == STORED_BLOCK_MAX for length in blocks[:-1]) and 0 < blocks[-1] <= STORED_BLOCK_MAX
        assert sum(blocks) == height * (width + 1)
    assert len(lengths) == 1


@pytest.mark.parametrize(("height", "width"), [(1, 1), (37, 53), (512, 512), (1023, 1023), (3, 70_000)])
def test_fixed_length_png_decodes_to_the_same_pixels_as_the_compressed_one(height: int, width: int) -> None:
    for name, pixels in contents(height, width).items():
        fixed = encode_png_gray8(pixels, fixed_length=True)
        compressed = encode_png_gray8(pixels)
        assert chunk_types(fixed) == ["IHDR", "IDAT", "IEND"]
        assert fixed[:33] == compressed[:33]  # signature and IHDR: same size, bit depth and colour type
        with Image.open(io.BytesIO(fixed)) as first, Image.open(io.BytesIO(compressed)) as second:
            assert first.mode == second.mode == "L"
            assert first.info == {}
            np.testing.assert_array_equal(np.asarray(first), pixels, err_msg=name)
            np.testing.assert_array_equal(np.asarray(first), np.asarray(second), err_msg=name)
        assert all(chunk.crc_ok for chunk in read_png_chunks(fixed))


def test_fixed_length_png_holds_the_unfiltered_rows_with_their_adler32() -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (300, 301), dtype=np.uint8)
    stream = idat_stream(encode_png_gray8(pixels, fixed_length=True))
    raw = np.hstack([np.zeros((300, 1), dtype=np.uint8), pixels]).tobytes()  # filter type 0 before each row

    assert zlib.decompress(stream) == raw  # zlib checks the Adler-32 itself
    assert stream[-4:] == struct.pack(">I", zlib.adler32(raw))
    # zlib's own level-0 stream holds the same data (its block sizes follow CPython's output buffer instead).
    assert zlib.decompress(zlib.compress(raw, 0)) == zlib.decompress(stream)


def test_the_default_encoding_stays_compressed() -> None:
    pixels = gradient(256, 256)
    png = encode_png_gray8(pixels)

    assert idat_stream(png) == zlib.compress(up_filtered_scanlines(pixels), 6)
    assert len(png) < len(encode_png_gray8(pixels, fixed_length=True)) / 10
    assert png.startswith(PNG_SIGNATURE)
