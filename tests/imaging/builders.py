"""Small image files built in code for the imaging tests, so no binary fixtures live in the repository."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT / ".." / "shared" / "data")).resolve()
CXR = SHARED_DATA / "cxr"

# Identifying values planted in DICOM fixtures; none may reach a served image or an error message.
PATIENT_NAME = "Doe^Jane^Quincy"
PATIENT_ID = "PID-7734-XQ"
INSTITUTION = "St Elsewhere Radiology"
STUDY_DATE = "19870316"


def cxr_file(*parts: str) -> Path:
    """A file from the shared CXR sample set, skipping the test when the shared data is not mounted."""
    path = CXR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def cxr_files(folder: str, pattern: str) -> list[Path]:
    base = CXR / folder
    if not base.exists():
        pytest.skip(f"shared data not available: {base}")
    return sorted(base.glob(pattern))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares any size, with the given (possibly tiny) compressed image data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def pil_bytes(image: Image.Image, fmt: str, **save_options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_options)
    return buffer.getvalue()


def gradient(height: int = 48, width: int = 64, maximum: int = 255, dtype: type = np.uint8) -> np.ndarray:
    """A horizontal ramp from 0 to ``maximum`` plus a vertical tilt, so orientation errors show."""
    ramp = np.linspace(0, maximum, width)[None, :] * 0.8 + np.linspace(0, maximum, height)[:, None] * 0.2
    return np.rint(ramp).astype(dtype)


def chunk_types(png: bytes) -> list[str]:
    """Chunk types of a PNG, parsed independently of imaging.png."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        types.append(png[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return types


def idat_payload(png: bytes) -> bytes:
    """The decompressed image data stream of a PNG (all IDAT chunks joined)."""
    data, offset = b"", 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        if png[offset + 4 : offset + 8] == b"IDAT":
            data += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return zlib.decompress(data)


def dicom_dataset(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    **attributes: object,
) -> Dataset:
    """An uncompressed single-frame image data set with identifying header values planted in it."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.InstitutionName = INSTITUTION
    ds.StudyDate = STUDY_DATE
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = stored.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def dicom_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[128:]


def encapsulated_dicom(frames: list[bytes], transfer_syntax: str, **attributes: object) -> bytes:
    """A data set whose pixel data is the given compressed frames, for a given transfer syntax."""
    rows = int(attributes.pop("Rows", 16))
    columns = int(attributes.pop("Columns", 16))
    ds = dicom_dataset(np.zeros((rows, columns), dtype=np.uint8), **attributes)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return dicom_bytes(ds)
