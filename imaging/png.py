"""A minimal, deterministic 8-bit grayscale PNG writer and a chunk reader, so served images carry no metadata.

Pillow's PNG writer adds chunks depending on the image's ``info`` (gamma, dpi, ICC profile, text), so served
images are encoded here instead: exactly one IHDR, one IDAT and one IEND, with a fixed filter and zlib level.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# "Up" (type 2) on every row: one vectorised subtraction, and on radiographs the files are within about
# 10 per cent of libpng's adaptive filtering (benchmarks/imaging_bench.py). Fixed, so bytes are reproducible.
PNG_FILTER_UP = 2
ZLIB_LEVEL = 6

_CHUNK_HEADER = struct.Struct(">I4s")


@dataclass(frozen=True)
class PngChunk:
    """One chunk of a PNG stream: its four-letter type, its data length and whether its CRC is right."""

    type: str
    length: int
    crc_ok: bool


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Quantise display values in [0, 1] to 0..255 with round-half-to-even (``np.rint``).

    Values a hair outside [0, 1] (resampling overshoot) are clipped; NaN or infinity is a programming error.
    """
    values = np.asarray(pixels)
    if not np.issubdtype(values.dtype, np.floating):
        raise TypeError(f"to_uint8 expects floating-point pixels in [0, 1], got dtype {values.dtype}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("to_uint8 got NaN or infinite pixel values.")
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_png_gray8(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale, non-interlaced PNG with only IHDR, IDAT and IEND.

    Identical arrays give identical bytes (for a given zlib build).
    """
    gray = np.asarray(pixels)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise TypeError(f"encode_png_gray8 expects a 2-D uint8 array, got {gray.ndim}-D {gray.dtype}.")
    height, width = gray.shape
    if height == 0 or width == 0:
        raise ValueError(f"Cannot encode an empty {width}x{height} image as PNG.")

    scanlines = np.empty((height, width + 1), dtype=np.uint8)
    scanlines[:, 0] = PNG_FILTER_UP
    scanlines[0, 1:] = gray[0]
    # uint8 arithmetic wraps modulo 256, which is exactly the PNG Up filter.
    np.subtract(gray[1:], gray[:-1], out=scanlines[1:, 1:])

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(scanlines.tobytes(), ZLIB_LEVEL)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return _CHUNK_HEADER.pack(len(data), kind) + data + struct.pack(">I", crc)


def read_png_chunks(data: bytes) -> list[PngChunk]:
    """List the chunks of a PNG stream in order, stopping at IEND or at the end of the data.

    Raises ValueError if ``data`` does not start with the PNG signature or a chunk runs past the end.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("Not a PNG stream: the 8-byte PNG signature is missing.")
    chunks: list[PngChunk] = []
    offset = len(PNG_SIGNATURE)
    while offset < len(data):
        if offset + _CHUNK_HEADER.size > len(data):
            raise ValueError(f"PNG chunk header at byte {offset:,} is cut off by the end of the data.")
        length, kind = _CHUNK_HEADER.unpack_from(data, offset)
        end = offset + _CHUNK_HEADER.size + length + 4
        if end > len(data):
            raise ValueError(
                f"PNG chunk {kind.decode('latin-1')!r} at byte {offset:,} declares {length:,} bytes "
                f"but the data ends {end - len(data):,} bytes early."
            )
        body = data[offset + 4 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, end - 4)
        chunks.append(PngChunk(kind.decode("latin-1"), length, crc == zlib.crc32(body) & 0xFFFFFFFF))
        offset = end
        if kind == b"IEND":
            break
    return chunks
