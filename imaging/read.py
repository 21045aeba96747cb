"""Decode an uploaded PNG, JPEG or DICOM file into display-ready grayscale pixels, or refuse it with a reason.

The format is sniffed from the bytes, never from a file name. Every decoded image comes back in one
convention (2-D float32 in [0, 1], higher = brighter) so that real and synthetic images can be re-encoded
identically; nothing from the file's metadata survives except the remarks in ``DecodedImage.notes``.

Policies worth knowing:

* DICOM grey levels: Modality LUT / rescale, then the VOI LUT Sequence or the first Window Center/Width
  (pydicom's ``apply_modality_lut`` / ``apply_voi_lut``), then MONOCHROME1 (or Presentation LUT Shape
  INVERSE) is inverted. Without a VOI transform, 8-bit unsigned data with an identity modality transform is
  shown as stored (value / 255, the same as an 8-bit PNG), anything else is min-max scaled.
* Multi-frame DICOM (Number of Frames > 1) is refused with code ``multi_frame``: silently picking one frame of
  a cine or tomosynthesis series could put a non-representative image into a blinded study, so the coordinator
  must export the frame they mean.
* PNG/JPEG: the EXIF orientation is applied, transparency is composited onto black, colour is converted with
  ITU-R BT.601 luma weights (as Pillow's "L" mode). ``was_colour`` is only set when the colour is real, not
  for RGB files whose channels are equal up to JPEG chroma noise.
* Size limits are checked on the declared dimensions from the header before any pixel is decoded.

One job, and so one module despite its length: decoding every accepted format into the one pixel convention.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pydicom
from PIL import Image, ImageOps
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MPEGTransferSyntaxes,
)

from imaging.errors import ImageImportError
from imaging.errors import ImportErrorCode as Code
from imaging.png import PNG_SIGNATURE, read_png_chunks

SourceFormat = Literal["png", "jpeg", "dicom"]

DEFAULT_MAX_PIXELS = 100_000_000

# A pixel counts as coloured when its channels differ by more than this (on a 0..255 scale): JPEG chroma
# subsampling leaves up to ~13 levels of spread on grey content (measured on the RoentGen samples).
_COLOUR_SPREAD = 16 / 255
# ... and the image counts as colour when more than this fraction of its pixels is coloured.
_COLOUR_FRACTION = 0.001

_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_ORIENTATIONS = {
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}

_DICOM_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_SUPPORTED_PHOTOMETRIC = {
    "MONOCHROME1",
    "MONOCHROME2",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "YBR_PARTIAL_420",
    "PALETTE COLOR",
}
_EXPLICIT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
    b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
    b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


@dataclass(frozen=True)
class DecodedImage:
    """An imported image in display orientation, with no metadata but remarks for the import report.

    ``pixels`` is 2-D float32 in [0, 1], higher = brighter, every grey-level transform of the source applied.
    ``bits_stored`` is the precision of the source samples (DICOM Bits Stored, PNG bit depth, JPEG precision).
    ``notes`` are human-readable remarks on what was done; they never contain patient data.
    ``pixels`` is read-only, so one decoded image can be shared safely; copy it to modify it.
    """

    pixels: np.ndarray
    source_format: SourceFormat
    width: int
    height: int
    bits_stored: int
    was_colour: bool
    notes: tuple[str, ...]

    def __post_init__(self) -> None:
        self.pixels.flags.writeable = False


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def read_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None) -> DecodedImage:
    """Decode a PNG, JPEG or DICOM file (given as bytes) into a :class:`DecodedImage`.

    Raises :class:`~imaging.errors.ImageImportError` with a code and a plain-language message for anything
    that is not a decodable single-frame image: see the module docstring and ``ImportErrorCode``.
    ``max_pixels`` bounds the declared width x height, checked before decoding; ``max_bytes`` bounds the file.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"read_image expects the file's bytes, got {type(data).__name__}.")
    data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageImportError(
            Code.TOO_LARGE_FILE,
            f"The file is {len(data):,} bytes, more than the limit of {max_bytes:,} bytes.",
        )
    if not data:
        raise ImageImportError(Code.EMPTY_FILE, "The file is empty (0 bytes).")

    source_format = detect_format(data)
    try:
        if source_format == "dicom":
            return _read_dicom(data, max_pixels)
        return _read_raster(data, source_format, max_pixels)
    except ImageImportError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RuntimeError) as exc:
        # Untrusted headers can hold values of the wrong type or range; say so rather than crash.
        raise ImageImportError(
            Code.CORRUPT,
            f"The {source_format.upper()} file has values that cannot be interpreted ({type(exc).__name__}: {exc}).",
        ) from exc


def detect_format(data: bytes) -> SourceFormat:
    """Name the image format from the file's leading bytes (its magic number), or refuse the file."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[128:132] == b"DICM" or data.startswith(b"DICM") or _looks_like_bare_dicom(data):
        return "dicom"
    raise _unrecognised(data)


def _looks_like_bare_dicom(data: bytes) -> bool:
    """A DICOM data set written without preamble and "DICM": it starts with a group 0002 or 0008 element."""
    if len(data) < 8:
        return False
    group, element = struct.unpack_from("<HH", data)
    if group not in (0x0002, 0x0008) or element > 0x1000:
        return False
    if data[4:6] in _EXPLICIT_VRS:
        return True
    (implicit_length,) = struct.unpack_from("<I", data, 4)
    return implicit_length < len(data)


_OTHER_FORMATS: tuple[tuple[Callable[[bytes], bool], Code, str], ...] = (
    (lambda d: d.startswith(b"%PDF"), Code.NOT_AN_IMAGE, "a PDF document"),
    (lambda d: d[:4] in (b"PK\x03\x04", b"PK\x05\x06"), Code.NOT_AN_IMAGE, "a ZIP archive"),
    (lambda d: d.startswith(b"\x1f\x8b"), Code.NOT_AN_IMAGE, "a gzip archive"),
    (lambda d: d.startswith(b"7z\xbc\xaf\x27\x1c"), Code.NOT_AN_IMAGE, "a 7-Zip archive"),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), Code.UNSUPPORTED_FORMAT, "a GIF image"),
    (lambda d: d[:4] in (b"II*\x00", b"MM\x00*"), Code.UNSUPPORTED_FORMAT, "a TIFF image"),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", Code.UNSUPPORTED_FORMAT, "a WebP image"),
    (lambda d: d[4:8] == b"ftyp", Code.UNSUPPORTED_FORMAT, "an HEIF/AVIF image or MP4 video"),
    (
        lambda d: d.startswith(b"\x00\x00\x00\x0cjP  ") or d.startswith(b"\xff\x4f\xff\x51"),
        Code.UNSUPPORTED_FORMAT,
        "a JPEG 2000 image outside DICOM",
    ),
    (
        lambda d: d[:2] == b"BM" and len(d) >= 18 and d[14] in (12, 40, 52, 56, 64, 108, 124),
        Code.UNSUPPORTED_FORMAT,
        "a BMP image",
    ),
)


def _unrecognised(data: bytes) -> ImageImportError:
    for matches, code, what in _OTHER_FORMATS:
        if matches(data):
            return ImageImportError(code, f"The file is {what}, not a PNG, JPEG or DICOM image.")
    if _is_text(data[:4096]):
        return ImageImportError(Code.NOT_AN_IMAGE, "The file is text, not a PNG, JPEG or DICOM image.")
    return ImageImportError(
        Code.NOT_AN_IMAGE,
        "The file is not a PNG, JPEG or DICOM image: its first bytes match no known image format.",
    )


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    text = text.removeprefix("\ufeff")  # byte order mark
    return bool(text) and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text)


def _check_dimensions(what: str, width: int, height: int, max_pixels: int) -> None:
    if width == 0 or height == 0:
        raise ImageImportError(Code.EMPTY_IMAGE, f"The {what} declares a {width} x {height} image: it has no pixels.")
    if width * height > max_pixels:
        raise ImageImportError(
            Code.DECOMPRESSION_BOMB,
            f"The {what} declares {width:,} x {height:,} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,}; it was refused before decoding (a possible decompression bomb).",
        )


# --- PNG and JPEG -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RasterHeader:
    width: int
    height: int
    bits: int


def _png_header(data: bytes) -> _RasterHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        if len(data) < 33:
            raise ImageImportError(
                Code.TRUNCATED,
                f"The PNG file is truncated: it ends after {len(data):,} bytes, inside its header.",
            )
        raise ImageImportError(Code.CORRUPT, "The PNG file is damaged: its first chunk is not the IHDR header.")
    width, height, bit_depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    # Palette samples are indices into 8-bit palette entries.
    return _RasterHeader(width, height, 8 if colour_type == 3 else bit_depth)


def _jpeg_header(data: bytes) -> _RasterHeader:
    """Find the frame header (SOFn) by walking the marker segments, without decoding anything."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ImageImportError(
                Code.CORRUPT, f"The JPEG file is damaged: no marker where one is expected at byte {offset:,}."
            )
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if offset + 9 > len(data):
                break
            precision, height, width = struct.unpack_from(">BHH", data, offset + 4)
            return _RasterHeader(width, height, precision)
        if marker == 0xDA:  # start of scan before any frame header
            raise ImageImportError(Code.CORRUPT, "The JPEG file is damaged: it has no frame header (SOF).")
        offset += 2 + length
    raise ImageImportError(
        Code.TRUNCATED,
        f"The JPEG file is truncated: it ends after {len(data):,} bytes, before its frame header.",
    )


def _read_raster(data: bytes, source_format: Literal["png", "jpeg"], max_pixels: int) -> DecodedImage:
    label = source_format.upper()
    header = _png_header(data) if source_format == "png" else _jpeg_header(data)
    _check_dimensions(f"{label} header", header.width, header.height, max_pixels)

    with warnings.catch_warnings():
        # Our own limit was checked above; Pillow's lower default must not second-guess a caller's max_pixels.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[source_format.upper()])
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageImportError(
                Code.DECOMPRESSION_BOMB, f"The {label} image is too large to decode safely ({exc})."
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as exc:
            raise _raster_decode_error(label, data, exc) from exc

    notes: list[str] = []
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    if orientation in _EXIF_ORIENTATIONS:
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied ({_EXIF_ORIENTATIONS[orientation]})")

    bits = header.bits
    if image.mode in ("RGB", "RGBA", "LA") and bits == 16:
        notes.append(f"16-bit {image.mode} samples were reduced to 8 bits by the decoder")
        bits = 8
    pixels, was_colour, conversion_notes = _raster_to_gray(image)
    notes.extend(conversion_notes)
    if bits == 16 and pixels.size and float(pixels.max()) < 1 / 16:
        notes.append(
            "the 16-bit values use less than 1/16 of the range 0-65535, so the image looks very dark; "
            "it is shown as stored"
        )
    return DecodedImage(
        pixels=pixels,
        source_format=source_format,
        width=pixels.shape[1],
        height=pixels.shape[0],
        bits_stored=bits,
        was_colour=was_colour,
        notes=tuple(notes),
    )


def _raster_decode_error(label: str, data: bytes, exc: Exception) -> ImageImportError:
    reason = str(exc) or type(exc).__name__
    if "truncat" in reason.lower() or isinstance(exc, EOFError) or _stream_incomplete(label, data):
        return ImageImportError(
            Code.TRUNCATED,
            f"The {label} file is truncated: its image data ends early (the file is {len(data):,} bytes).",
        )
    return ImageImportError(Code.CORRUPT, f"The {label} file is damaged and cannot be decoded ({reason}).")


def _stream_incomplete(label: str, data: bytes) -> bool:
    """Whether a PNG lacks IEND (or a chunk overruns the data), or a JPEG its end-of-image marker."""
    if label == "JPEG":
        return b"\xff\xd9" not in data[-64:]
    try:
        chunks = read_png_chunks(data)
    except ValueError:
        return True
    return not chunks or chunks[-1].type != "IEND"


def _raster_to_gray(image: Image.Image) -> tuple[np.ndarray, bool, list[str]]:
    """Pillow image of any mode -> float32 grey in [0, 1], whether it had real colour, and remarks."""
    notes: list[str] = []
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
        notes.append("palette colours expanded")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        notes.append(f"converted from {image.mode} to RGB")
        image = image.convert("RGB")
    elif image.mode in ("RGBa", "La"):
        image = image.convert(image.mode.upper())

    if image.mode == "1":
        return np.asarray(image, dtype=np.float32), False, notes
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float32) / 65535.0
        return np.clip(values, 0.0, 1.0), False, notes
    if image.mode == "F":
        raise ImageImportError(Code.CORRUPT, "Floating-point raster images are not supported.")

    array = np.asarray(image).astype(np.float32) / 255.0
    if array.ndim == 2:
        return array, False, notes

    alpha = None
    if image.mode in ("LA", "RGBA"):
        array, alpha = array[..., :-1], array[..., -1]
    if array.shape[-1] == 1:
        gray, was_colour = array[..., 0], False
    else:
        gray, was_colour = _colour_to_gray(array)
        notes.append(
            "converted from RGB to grayscale"
            if was_colour
            else "stored as RGB with grey content; reduced to one grey channel"
        )
    if alpha is not None and float(alpha.min()) < 1.0:
        gray = gray * alpha
        notes.append("transparent pixels composited onto black")
    return np.ascontiguousarray(gray, dtype=np.float32), was_colour, notes


def _colour_to_gray(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """ITU-R BT.601 luma of an (H, W, 3) float array in [0, 1], and whether it had real colour content."""
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    was_colour = bool(np.mean(spread > _COLOUR_SPREAD) > _COLOUR_FRACTION)
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(gray, 0.0, 1.0).astype(np.float32), was_colour


# --- DICOM --------------------------------------------------------------------------------------------------


def _read_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    if data.startswith(b"DICM"):  # the "DICM" prefix without its 128-byte preamble
        data = bytes(128) + data
    ds = _parse_dicom(data)
    _check_dicom_complete(ds, data)

    if "PixelData" not in ds:
        if any(keyword in ds for keyword in ("FloatPixelData", "DoubleFloatPixelData")):
            raise ImageImportError(
                Code.UNSUPPORTED_DICOM,
                "The DICOM file holds floating-point pixel data, which is not supported.",
            )
        if "Rows" in ds and "Columns" in ds:
            raise ImageImportError(
                Code.TRUNCATED,
                f"The DICOM file is truncated or incomplete: it describes a {ds.Columns} x {ds.Rows} image "
                f"but ends after {len(data):,} bytes without its pixel data.",
            )
        raise ImageImportError(
            Code.EMPTY_IMAGE,
            f"The DICOM file has no pixel data (SOP class: {_sop_class_name(ds)}); it is not an image.",
        )
    if not ds.PixelData:
        raise ImageImportError(Code.EMPTY_IMAGE, "The DICOM pixel data element is empty.")
    transfer_syntax = _transfer_syntax(ds)
    _check_decoder(transfer_syntax)
    photometric, rows, columns = _check_pixel_description(ds, max_pixels)
    if not transfer_syntax.is_encapsulated:
        _check_native_length(ds)

    with warnings.catch_warnings():
        # pydicom warns when it corrects header/codestream mismatches; the result is what we want either way.
        warnings.simplefilter("ignore")
        try:
            stored = ds.pixel_array
        except ImageImportError:
            raise
        except Exception as exc:  # decoders raise many types (ValueError, RuntimeError, OSError, ...)
            raise ImageImportError(
                Code.CORRUPT,
                f"The DICOM {transfer_syntax.name} pixel data could not be decoded: it is damaged or uses a "
                f"feature the installed decoders lack ({exc}).",
            ) from exc

    notes = [f"DICOM {ds.get('Modality') or 'image'}, {photometric}, transfer syntax {transfer_syntax.name}"]
    if any(0x6000 <= element.tag.group <= 0x60FF for element in ds):
        # Overlays can carry annotations or text; they are not burned into the served image.
        notes.append("overlay planes in the file were not drawn")
    bits_stored = int(ds.get("BitsStored") or ds.BitsAllocated)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        pixels = _monochrome_display(stored, ds, photometric, notes)
        was_colour = False
    else:
        pixels, was_colour = _colour_display(stored, ds, photometric, bits_stored, notes)
    if pixels.shape != (rows, columns):
        raise ImageImportError(
            Code.CORRUPT,
            f"The DICOM pixel data decodes to {pixels.shape[1]} x {pixels.shape[0]} pixels, "
            f"but the header declares {columns} x {rows}.",
        )
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        source_format="dicom",
        width=columns,
        height=rows,
        bits_stored=bits_stored,
        was_colour=was_colour,
        notes=tuple(notes),
    )


def _parse_dicom(data: bytes) -> Dataset:
    _check_meta_complete(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception as exc:  # pydicom raises many types on damaged input
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, EOFError | struct.error) or any(hint in reason for hint in _END_OF_DATA_HINTS):
                raise _dicom_truncated(data, "in the middle of an element") from exc
            raise ImageImportError(Code.CORRUPT, f"The DICOM file is damaged and cannot be parsed ({reason}).") from exc
    if any("End of file reached before delimiter" in str(w.message) for w in caught):
        raise ImageImportError(
            Code.TRUNCATED,
            f"The DICOM file is truncated: it ends after {len(data):,} bytes, inside an element of undefined "
            "length (for compressed images, inside the pixel data).",
        )
    if len(ds) == 0:
        raise ImageImportError(
            Code.TRUNCATED if len(data) < 1024 else Code.NOT_AN_IMAGE,
            f"The DICOM file has no data set after its header (the file is {len(data):,} bytes).",
        )
    return ds


def _dicom_truncated(data: bytes, where: str) -> ImageImportError:
    return ImageImportError(Code.TRUNCATED, f"The DICOM file is truncated: it ends after {len(data):,} bytes, {where}.")


# Phrases of pydicom's parse errors that mean the data stopped where more was declared.
_END_OF_DATA_HINTS = ("No tag to read", "End of file", "Expected total bytes", "unexpected end", "EOF")


def _check_meta_complete(data: bytes) -> None:
    """With a preamble, the group length (0002,0000) says where the file meta header ends."""
    if data[128:132] != b"DICM":
        return
    if len(data) < 144:
        raise _dicom_truncated(data, "inside its file meta header")
    if data[132:138] == b"\x02\x00\x00\x00UL":
        (group_length,) = struct.unpack_from("<I", data, 140)
        if 144 + group_length > len(data):
            raise _dicom_truncated(data, "inside its file meta header")


def _check_dicom_complete(ds: Dataset, data: bytes) -> None:
    """Refuse a file cut short: pydicom silently returns what it could read, so compare declared lengths."""
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return  # positions refer to the inflated stream; a cut deflate stream fails to parse instead
    end_of_last = 0
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        value_tell = getattr(element, "value_tell", None)
        length = getattr(element, "length", None)
        if value_tell is None or length is None or length == 0xFFFFFFFF:
            continue
        end = value_tell + length
        if end > len(data):
            keyword = keyword_for_tag(tag) or str(tag)
            if keyword == "PixelData":
                raise ImageImportError(
                    Code.TRUNCATED,
                    f"The DICOM file is truncated: pixel data ends after {len(data) - value_tell:,} "
                    f"of {length:,} bytes.",
                )
            raise _dicom_truncated(data, f"inside the {keyword} element")
        end_of_last = max(end_of_last, end)
    trailing = len(data) - end_of_last
    if end_of_last and 0 < trailing < 8 and "PixelData" not in ds:
        raise _dicom_truncated(data, "inside an element header")


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return UID(str(uid)).name if uid else "not stated"


def _transfer_syntax(ds: Dataset) -> UID:
    uid = ds.file_meta.get("TransferSyntaxUID")
    if uid:
        return UID(str(uid))
    # A bare data set (no file meta): take the encoding pydicom detected, which only native syntaxes allow.
    implicit, little_endian = ds.original_encoding
    uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
    if ds["PixelData"].is_undefined_length:
        raise ImageImportError(
            Code.UNSUPPORTED_DICOM,
            "The DICOM file has compressed pixel data but no file meta header naming its transfer syntax.",
        )
    ds.file_meta.TransferSyntaxUID = uid
    return uid


def _check_decoder(transfer_syntax: UID) -> None:
    if transfer_syntax in MPEGTransferSyntaxes or "HEVC" in transfer_syntax.name:
        raise ImageImportError(
            Code.UNSUPPORTED_TRANSFER_SYNTAX,
            f"The DICOM file is encoded as video ({transfer_syntax.name}); only still images are accepted.",
        )
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise ImageImportError(
            Code.UNSUPPORTED_TRANSFER_SYNTAX,
            f"The DICOM transfer syntax {transfer_syntax.name} ({transfer_syntax}) cannot be decoded here.",
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise ImageImportError(
            Code.UNSUPPORTED_TRANSFER_SYNTAX,
            f"The DICOM transfer syntax {transfer_syntax.name} needs a decoder that is not installed ({missing}).",
        )


def _check_pixel_description(ds: Dataset, max_pixels: int) -> tuple[str, int, int]:
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if k not in ds]
    if missing:
        raise ImageImportError(
            Code.UNSUPPORTED_DICOM,
            f"The DICOM file has pixel data but lacks {', '.join(missing)}, so it cannot be interpreted.",
        )
    rows, columns = int(ds.Rows), int(ds.Columns)
    _check_dimensions("DICOM header", columns, rows, max_pixels)
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ImageImportError(
            Code.MULTI_FRAME,
            f"The DICOM file holds {frames} frames; only single-frame images can be imported. "
            "Export the frame to be read as a single-frame image.",
        )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise ImageImportError(
            Code.UNSUPPORTED_DICOM, f"The DICOM photometric interpretation {photometric!r} is not supported."
        )
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != (1 if photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR") else 3):
        raise ImageImportError(
            Code.UNSUPPORTED_DICOM,
            f"The DICOM file declares {samples} samples per pixel, which does not fit {photometric}.",
        )
    if int(ds.BitsAllocated) not in (1, 8, 16, 32):
        raise ImageImportError(
            Code.UNSUPPORTED_DICOM, f"The DICOM Bits Allocated value {ds.BitsAllocated} is not supported."
        )
    return photometric, rows, columns


def _check_native_length(ds: Dataset) -> None:
    bits_allocated = int(ds.BitsAllocated)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if str(ds.PhotometricInterpretation).strip().upper() == "YBR_FULL_422":
        samples = 2  # chroma is stored at half horizontal resolution: Y Y Cb Cr per two pixels
    pixel_count = int(ds.Rows) * int(ds.Columns) * samples
    expected = (pixel_count + 7) // 8 if bits_allocated == 1 else pixel_count * (bits_allocated // 8)
    actual = len(ds.PixelData)
    if actual < expected:
        raise ImageImportError(
            Code.TRUNCATED,
            f"The DICOM file is truncated: pixel data ends after {actual:,} of {expected:,} bytes.",
        )


def _monochrome_display(stored: np.ndarray, ds: Dataset, photometric: str, notes: list[str]) -> np.ndarray:
    """Stored values -> display values in [0, 1]: modality LUT, VOI LUT or first window, then inversion."""
    values = apply_modality_lut(stored, ds)
    modality_identity = "ModalityLUTSequence" not in ds and _rescale(ds) == (1.0, 0.0)
    if "ModalityLUTSequence" in ds:
        notes.append("Modality LUT applied")
    elif not modality_identity:
        slope, intercept = _rescale(ds)
        notes.append(f"rescale applied: slope {slope:g}, intercept {intercept:g}")

    display = _apply_voi(values, ds, notes)
    if display is None:
        display = _without_voi(values, ds, modality_identity, notes)

    if photometric == "MONOCHROME1":
        display = 1.0 - display
        notes.append("MONOCHROME1 inverted")
    elif str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE":
        display = 1.0 - display
        notes.append("Presentation LUT Shape INVERSE applied")
    return display


def _rescale(ds: Dataset) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (
        float(slope) if slope not in (None, "") else 1.0,
        float(intercept) if intercept not in (None, "") else 0.0,
    )


def _apply_voi(values: np.ndarray, ds: Dataset, notes: list[str]) -> np.ndarray | None:
    """The first VOI LUT (preferred) or window, scaled to [0, 1]; None if the file defines none usable."""
    lut_items = ds.get("VOILUTSequence") or []
    if lut_items:
        lut_data = np.asarray(lut_items[0].LUTData, dtype=np.float64)
        low, high = float(lut_data.min()), float(lut_data.max())
        output = apply_voi_lut(values, ds, index=0, prefer_lut=True)
        notes.append(f"VOI LUT applied (first of {len(lut_items)}, {lut_data.size} entries)")
        return _scale(output, low, high)

    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except ValueError:  # pydicom parses DS values on access
        center = width = None
    if center is None or width is None or width < 1:
        notes.append("the window centre/width in the file is not usable; ignored")
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").upper()
    with np.errstate(over="ignore"):
        output = apply_voi_lut(values.astype(np.float64), ds, index=0, prefer_lut=False)
        # The window maps onto an output range that pydicom derives from Bits Stored and the rescale;
        # windowing two extreme values reads that range off pydicom itself.
        low, high = apply_voi_lut(np.array([-1e30, 1e30]), ds, index=0, prefer_lut=False)
    function_note = "" if function == "LINEAR" else f", function {function}"
    notes.append(f"VOI LUT applied: window centre {center:g}, width {width:g}{function_note}")
    return _scale(output, float(low), float(high))


def _first(value: object) -> float | None:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _without_voi(values: np.ndarray, ds: Dataset, modality_identity: bool, notes: list[str]) -> np.ndarray:
    bits_stored = int(ds.get("BitsStored") or ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    nominal_max = float(2**bits_stored - 1)
    if modality_identity and not signed and bits_stored <= 8:
        notes.append("no VOI LUT or window in the file; 8-bit values shown as stored")
        return _scale(values, 0.0, nominal_max)
    low, high = float(values.min()), float(values.max())
    if high > low:
        notes.append(f"no VOI LUT or window in the file; min-max scaled from {low:g}..{high:g}")
        return _scale(values, low, high)
    notes.append("constant image; shown at its level within the stored bit depth")
    return _scale(values, 0.0, nominal_max)


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _colour_display(
    stored: np.ndarray, ds: Dataset, photometric: str, bits_stored: int, notes: list[str]
) -> tuple[np.ndarray, bool]:
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        rgb_float = rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max)
        notes.append("palette colours expanded")
    else:
        # pydicom has already converted YBR_* to RGB.
        rgb_float = stored.astype(np.float32) / float(2**bits_stored - 1)
    gray, was_colour = _colour_to_gray(np.clip(rgb_float, 0.0, 1.0))
    notes.append(
        "converted from RGB to grayscale"
        if was_colour
        else "stored as RGB with grey content; reduced to one grey channel"
    )
    return gray, was_colour
