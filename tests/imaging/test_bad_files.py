"""Every kind of bad upload is refused with the right code and a message that names the problem."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import HEVCMP51, MPEG2MPML, UID, JPEG2000MCLossless

from imaging.errors import ImageImportError, ImportErrorCode
from imaging.read import read_image
from tests.imaging.builders import (
    INSTITUTION,
    PATIENT_ID,
    PATIENT_NAME,
    cxr_file,
    dicom_bytes,
    dicom_dataset,
    encapsulated_dicom,
    gradient,
    pil_bytes,
    png_with_header,
)


def refusal(data: bytes, **limits: int) -> ImageImportError:
    with pytest.raises(ImageImportError) as caught:
        read_image(data, **limits)
    return caught.value


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.png", pil_bytes(Image.new("L", (4, 4)), "PNG"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code", "phrase"),
    [
        (b"", "empty_file", "empty"),
        (b"PatientName,Finding\nDoe,normal\n", "not_an_image", "text"),
        ("Röntgen Thorax p.a.\n".encode(), "not_an_image", "text"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "not_an_image", "PDF"),
        (zip_archive(), "not_an_image", "ZIP"),
        (np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not_an_image", "no known"),
        (pil_bytes(Image.new("L", (4, 4)), "GIF"), "unsupported_format", "GIF"),
        (pil_bytes(Image.new("L", (4, 4)), "TIFF"), "unsupported_format", "TIFF"),
        (pil_bytes(Image.new("L", (4, 4)), "BMP"), "unsupported_format", "BMP"),
    ],
    ids=["empty", "csv", "utf8-text", "pdf", "zip", "random", "gif", "tiff", "bmp"],
)
def test_files_that_are_not_png_jpeg_or_dicom_are_refused(data: bytes, code: str, phrase: str) -> None:
    error = refusal(data)

    assert error.code == code
    assert phrase in error.message
    assert str(error) == error.message


def test_error_code_is_a_stable_string_slug() -> None:
    error = refusal(b"")

    assert error.code is ImportErrorCode.EMPTY_FILE
    assert error.code == "empty_file"
    assert repr(error) == "ImageImportError(code='empty_file', message='The file is empty (0 bytes).')"


def test_file_over_the_byte_limit_is_refused_before_decoding() -> None:
    data = pil_bytes(Image.new("L", (64, 64)), "PNG")
    error = refusal(data, max_bytes=len(data) - 1)

    assert error.code == "too_large_file"
    assert f"{len(data):,} bytes" in error.message
    assert read_image(data, max_bytes=len(data)).width == 64


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_png_and_jpeg_are_refused(fmt: str) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(noise), fmt)
    error = refusal(data[: len(data) // 2])

    assert error.code == "truncated"
    assert f"The {fmt} file is truncated" in error.message


def test_jpeg_cut_before_its_frame_header_is_truncated() -> None:
    error = refusal(pil_bytes(Image.new("L", (8, 8)), "JPEG")[:30])

    assert error.code == "truncated"
    assert "before its frame header" in error.message


def test_png_with_a_damaged_chunk_is_corrupt() -> None:
    data = bytearray(pil_bytes(Image.fromarray(gradient()), "PNG"))
    data[40] ^= 0xFF  # inside the IDAT data: the CRC no longer matches
    error = refusal(bytes(data))

    assert error.code == "corrupt"
    assert "damaged" in error.message


def test_truncated_uncompressed_dicom_says_how_much_pixel_data_arrived() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)  # 64 x 48 x 2 = 6,144 bytes of pixel data
    data = dicom_bytes(dicom_dataset(stored, bits_stored=12))
    error = refusal(data[:-1000])

    assert error.code == "truncated"
    assert error.message == "The DICOM file is truncated: pixel data ends after 5,144 of 6,144 bytes."


def test_dicom_whose_pixel_data_element_is_shorter_than_the_image_is_truncated() -> None:
    ds = dicom_dataset(gradient(maximum=4095, dtype=np.uint16), bits_stored=12)
    ds.PixelData = ds.PixelData[:2048]
    error = refusal(dicom_bytes(ds))

    assert error.code == "truncated"
    assert "pixel data ends after 2,048 of 6,144 bytes" in error.message


def test_truncated_compressed_dicom_is_refused() -> None:
    path = cxr_file("dicom", "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
    data = path.read_bytes()
    error = refusal(data[: len(data) // 2])

    assert error.code == "truncated"
    assert "inside the pixel data" in error.message


def test_dicom_cut_anywhere_is_refused_and_never_crashes() -> None:
    data = dicom_bytes(dicom_dataset(gradient(maximum=4095, dtype=np.uint16), bits_stored=12))
    codes = set()
    for cut in range(1, len(data), 37):
        codes.add(refusal(data[:cut]).code)
    # Below 132 bytes the "DICM" marker is not there yet, so the bytes are just not an image; a cut exactly
    # between two header elements before the image description leaves a valid file without pixel data.
    assert codes <= {"truncated", "not_an_image", "empty_image"}
    assert "truncated" in codes


def test_png_declaring_huge_dimensions_is_refused_from_its_header() -> None:
    # 50,000 x 50,000 would be 2.5 GB of pixels; the file itself is under 100 bytes.
    data = png_with_header(50_000, 50_000)
    started = time.perf_counter()
    error = refusal(data)

    assert time.perf_counter() - started < 0.5
    assert error.code == "decompression_bomb"
    assert "50,000 x 50,000 = 2,500,000,000 pixels" in error.message
    assert "before decoding" in error.message


def test_max_pixels_applies_to_ordinary_images() -> None:
    data = pil_bytes(Image.fromarray(gradient()), "PNG")  # 64 x 48 = 3,072 pixels

    assert refusal(data, max_pixels=3000).code == "decompression_bomb"
    assert read_image(data, max_pixels=3072).width == 64


def test_pillow_decompression_bomb_error_is_reported_as_a_bomb() -> None:
    # Allowed by our limit but over twice Pillow's MAX_IMAGE_PIXELS (about 179 million).
    error = refusal(png_with_header(20_000, 10_000), max_pixels=10**9)

    assert error.code == "decompression_bomb"


def test_jpeg_declaring_huge_dimensions_is_refused_from_its_header() -> None:
    data = bytearray(pil_bytes(Image.new("L", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2
    error = refusal(bytes(data))

    assert error.code == "decompression_bomb"
    assert "JPEG header" in error.message


def test_dicom_declaring_huge_dimensions_is_refused_before_its_pixel_data_is_read() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint16))
    ds.Rows, ds.Columns = 60_000, 60_000
    error = refusal(dicom_bytes(ds))

    assert error.code == "decompression_bomb"
    assert "DICOM header declares 60,000 x 60,000" in error.message


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0)])
def test_png_with_zero_width_or_height_is_empty(width: int, height: int) -> None:
    error = refusal(png_with_header(width, height))

    assert error.code == "empty_image"
    assert "no pixels" in error.message


def test_jpeg_with_zero_height_is_empty() -> None:
    data = bytearray(pil_bytes(Image.new("L", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = b"\x00\x00"

    assert refusal(bytes(data)).code == "empty_image"


def test_dicom_with_zero_rows_is_empty() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8))
    ds.Rows = 0

    assert refusal(dicom_bytes(ds)).code == "empty_image"


def test_dicom_without_pixel_data_is_refused() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8))
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    error = refusal(dicom_bytes(ds))

    assert error.code == "empty_image"
    assert "no pixel data" in error.message
    assert "Basic Text SR" in error.message


def test_dicom_with_an_empty_pixel_data_element_is_empty() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8))
    ds.PixelData = b""

    assert refusal(dicom_bytes(ds)).code == "empty_image"


def test_constant_image_is_not_an_error() -> None:
    flat = np.full((16, 16), 1234, dtype=np.uint16)
    decoded = read_image(dicom_bytes(dicom_dataset(flat, bits_stored=12)))

    np.testing.assert_allclose(decoded.pixels, 1234 / 4095, atol=1e-6)
    assert read_image(pil_bytes(Image.new("L", (8, 8), 77), "PNG")).pixels.std() == 0


@pytest.mark.parametrize(("uid", "phrase"), [(MPEG2MPML, "video"), (HEVCMP51, "video")])
def test_video_transfer_syntaxes_are_refused(uid: str, phrase: str) -> None:
    error = refusal(encapsulated_dicom([b"\x00\x00\x01\xb3" + bytes(60)], uid))

    assert error.code == "unsupported_transfer_syntax"
    assert phrase in error.message


def test_compressed_transfer_syntax_without_any_decoder_is_refused() -> None:
    # JPEG 2000 Part 2 multi-component: a standard syntax for which no pydicom plugin exists.
    error = refusal(encapsulated_dicom([b"\xff\x4f\xff\x51" + bytes(40)], JPEG2000MCLossless))

    assert error.code == "unsupported_transfer_syntax"
    assert "1.2.840.10008.1.2.4.92" in error.message
    assert "cannot be decoded" in error.message


def with_ds_value_replaced(data: bytes, tag: bytes, old: bytes, new: bytes) -> bytes:
    """Overwrite a DS value in place (same length), which pydicom would refuse to write."""
    element = tag + b"DS" + len(old).to_bytes(2, "little") + old
    assert data.count(element) == 1
    return data.replace(element, element[: -len(old)] + new)


def test_unreadable_window_is_ignored_with_a_note() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    data = dicom_bytes(dicom_dataset(stored, bits_stored=12, WindowCenter="1000", WindowWidth="500"))
    decoded = read_image(with_ds_value_replaced(data, b"\x28\x00\x50\x10", b"1000", b"wide"))

    assert "the window centre/width in the file is not usable; ignored" in decoded.notes
    np.testing.assert_allclose(decoded.pixels, stored / 4095, atol=1e-6)  # min-max of a 0..4095 ramp


def test_header_values_that_cannot_be_interpreted_are_reported_not_raised() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    data = dicom_bytes(dicom_dataset(stored, bits_stored=12, RescaleSlope="2", RescaleIntercept="0"))
    error = refusal(with_ds_value_replaced(data, b"\x28\x00\x53\x10", b"2 ", b"x "))

    assert error.code == "corrupt"
    assert "cannot be interpreted" in error.message


def test_damaged_compressed_pixel_data_is_corrupt() -> None:
    error = refusal(encapsulated_dicom([b"\xff\xd8\xff\xe0" + bytes(40) + b"\xff\xd9"], "1.2.840.10008.1.2.4.50"))

    assert error.code == "corrupt"
    assert "JPEG Baseline" in error.message


def test_multi_frame_dicom_is_refused() -> None:
    frames = np.zeros((3, 8, 8), dtype=np.uint8)
    ds = dicom_dataset(frames[0])
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    error = refusal(dicom_bytes(ds))

    assert error.code == "multi_frame"
    assert "3 frames" in error.message


def test_single_frame_with_number_of_frames_one_is_accepted() -> None:
    ds = dicom_dataset(gradient())
    ds.NumberOfFrames = 1

    assert read_image(dicom_bytes(ds)).width == 64


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"PhotometricInterpretation": "HSV"}, "photometric interpretation 'HSV'"),
        ({"SamplesPerPixel": 3}, "3 samples per pixel"),
        ({"BitsAllocated": 12}, "Bits Allocated value 12"),
    ],
)
def test_unsupported_pixel_descriptions_are_refused(change: dict[str, object], phrase: str) -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8))
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    error = refusal(dicom_bytes(ds))

    assert error.code == "unsupported_dicom"
    assert phrase in error.message


def test_float_pixel_data_is_refused() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8))
    del ds.PixelData
    del ds.Rows
    ds.FloatPixelData = np.zeros(16, dtype=np.float32).tobytes()

    assert refusal(dicom_bytes(ds)).code == "unsupported_dicom"


def test_error_messages_never_quote_patient_data() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    data = dicom_bytes(dicom_dataset(stored, bits_stored=12))
    multi = dicom_dataset(stored, bits_stored=12, NumberOfFrames=2)
    for bad in (data[:-100], data[:600], dicom_bytes(multi)):
        message = refusal(bad).message
        for value in (PATIENT_NAME, "Doe", PATIENT_ID, INSTITUTION):
            assert value not in message


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expects the file's bytes"):
        read_image("chest.png")  # type: ignore[arg-type]


def test_refused_dataset_is_left_as_it_was() -> None:
    ds = dicom_dataset(np.zeros((4, 4), dtype=np.uint8), NumberOfFrames=2)
    data = dicom_bytes(ds)
    before = bytes(data)
    refusal(data)

    assert data == before
    assert isinstance(ds, Dataset)
