"""A minimal, deterministic 8-bit grayscale PNG writer and a chunk reader, so served images carry no metadata.

Pillow's PNG writer adds chunks depending on the image's ``info`` (gamma, dpi, ICC profile, text), so served
images are encoded here instead: exactly one IHDR, one IDAT and one IEND, with a fixed filter and zlib level.

Served images use ``fixed_length=True``: the IDAT holds the scanlines uncompressed, in zlib *stored* blocks,
because a compressed file's size follows the image's noise and texture and so gives its class away (a reader
measured AUC 0.81 from Content-Length alone); every served file of a display size therefore has the same length,
:func:`served_png_length`, and HTTP compression of image/png responses must stay off for the same reason.
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
# Filter type 0 for the uncompressed (fixed-length) encoding: filtering only helps compression.
PNG_FILTER_NONE = 0
ZLIB_LEVEL = 6

# A deflate stored block holds at most 65,535 bytes (RFC 1951, 3.2.4: LEN is 16 bits).
STORED_BLOCK_MAX = 65_535
# zlib header (RFC 1950): CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (FLEVEL 0 "fastest", FCHECK so that
# CMF * 256 + FLG is a multiple of 31). Python's zlib.compress(data, 0) writes the same two bytes.
_ZLIB_STORED_HEADER = b"\x78\x01"

_CHUNK_HEADER = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_STORED_BLOCK_HEADER = struct.Struct("<BHH")


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


def up_filtered_scanlines(gray: np.ndarray) -> bytes:
    """The PNG image data of a 2-D uint8 array before compression: each row prefixed by filter type 2 ("Up")
    and replaced by its difference from the row above (the first row unchanged), as ``encode_png_gray8``
    compresses it."""
    height, width = gray.shape
    scanlines = np.empty((height, width + 1), dtype=np.uint8)
    scanlines[:, 0] = PNG_FILTER_UP
    scanlines[0, 1:] = gray[0]
    # uint8 arithmetic wraps modulo 256, which is exactly the PNG Up filter.
    np.subtract(gray[1:], gray[:-1], out=scanlines[1:, 1:])
    return scanlines.tobytes()


def encode_png_gray8(pixels: np.ndarray, *, fixed_length: bool = False) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale, non-interlaced PNG with only IHDR, IDAT and IEND.

    Identical arrays give identical bytes (for a given zlib build). By default the scanlines are Up-filtered and
    compressed with zlib level 6. With ``fixed_length`` they are unfiltered (type 0) and written as zlib stored
    blocks of at most 65,535 bytes, so the file is ``served_png_length(width, height)`` bytes whatever the
    pixels (and identical for every zlib build); for served images, whose size must not betray their content.
    """
    gray = np.asarray(pixels)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise TypeError(f"encode_png_gray8 expects a 2-D uint8 array, got {gray.ndim}-D {gray.dtype}.")
    height, width = gray.shape
    if height == 0 or width == 0:
        raise ValueError(f"Cannot encode an empty {width}x{height} image as PNG.")

    header = _IHDR.pack(width, height, 8, 0, 0, 0, 0)
    if fixed_length:
        scanlines = np.empty((height, width + 1), dtype=np.uint8)
        scanlines[:, 0] = PNG_FILTER_NONE
        scanlines[:, 1:] = gray
        idat = _zlib_stored(scanlines.tobytes())
    else:
        idat = zlib.compress(up_filtered_scanlines(gray), ZLIB_LEVEL)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def served_png_length(width: int, height: int) -> int:
    """The byte length of ``encode_png_gray8(pixels, fixed_length=True)`` for a ``width`` x ``height`` image,
    from the PNG (ISO/IEC 15948) and zlib/deflate (RFC 1950/1951) layouts rather than from the encoder."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"The image {name} must be a positive integer, got {value!r}.")
    raw = height * (width + 1)  # one filter-type byte before each row of `width` one-byte pixels
    blocks = -(-raw // STORED_BLOCK_MAX)  # ceil: stored blocks of at most 65,535 bytes, each with a 5-byte header
    idat = 2 + 5 * blocks + raw + 4  # zlib header, block headers, the data, Adler-32
    chunk_overhead = 12  # 4-byte length, 4-byte type, 4-byte CRC around every chunk's data
    return len(PNG_SIGNATURE) + (chunk_overhead + _IHDR.size) + (chunk_overhead + idat) + chunk_overhead


def _zlib_stored(data: bytes) -> bytes:
    """``data`` as a zlib stream of deflate stored blocks (BTYPE 00) of at most 65,535 bytes, the last with
    BFINAL set. Written here rather than by zlib.compress(data, 0), whose block sizes follow the growth of
    CPython's output buffer (e.g. 65,531 then 32,773 bytes), so its length is not a function of the format alone
    and can change between Python builds."""
    view = memoryview(data)
    parts = [_ZLIB_STORED_HEADER]
    for start in range(0, len(data), STORED_BLOCK_MAX):
        block = view[start : start + STORED_BLOCK_MAX]
        final = start + STORED_BLOCK_MAX >= len(data)
        # Byte 1: BFINAL in bit 0, BTYPE 00 in bits 1-2, then padding to the byte boundary; LEN and its
        # one's complement NLEN, little-endian.
        parts.append(_STORED_BLOCK_HEADER.pack(int(final), len(block), len(block) ^ 0xFFFF))
        parts.append(block)
    parts.append(struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF))
    return b"".join(parts)


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
