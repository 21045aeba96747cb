"""Importing DICOM: grey-level transforms (rescale, VOI LUT, window), MONOCHROME1, compression, file layouts.

Expected window outputs are computed here from the DICOM linear window formula (PS3.3 C.11.2.1.2.1), not
with pydicom, so the tests check the reader against the standard rather than against itself.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from imaging.read import read_image
from tests.imaging.builders import (
    cxr_file,
    dicom_bytes,
    dicom_dataset,
    encapsulated_dicom,
    gradient,
    pil_bytes,
)


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window, on a 0..1 output scale."""
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def test_monochrome2_8_bit_without_window_is_shown_as_stored() -> None:
    stored = gradient()
    decoded = read_image(dicom_bytes(dicom_dataset(stored)))

    assert decoded.source_format == "dicom"
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.bits_stored == 8
    np.testing.assert_allclose(decoded.pixels, stored / 255, atol=1e-6)


def test_monochrome2_12_bit_without_window_is_min_max_scaled() -> None:
    stored = gradient(maximum=3000, dtype=np.uint16) + 500
    decoded = read_image(dicom_bytes(dicom_dataset(stored, bits_stored=12)))

    assert decoded.bits_stored == 12
    np.testing.assert_allclose(decoded.pixels, (stored - 500) / 3000, atol=1e-6)
    assert any("min-max" in note for note in decoded.notes)


def test_window_centre_and_width_are_applied() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=1000, WindowWidth=500)
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, linear_window(stored, 1000, 500), atol=1e-5)
    assert "VOI LUT applied: window centre 1000, width 500" in decoded.notes


def test_only_the_first_of_several_windows_is_used() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=[2048, 300], WindowWidth=[4096, 200])
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, linear_window(stored, 2048, 4096), atol=1e-5)


def test_voi_lut_sequence_is_preferred_to_the_window() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    lut = np.rint(np.sqrt(np.arange(4096) / 4095) * 65535).astype(np.uint16)
    item = Dataset()
    item.add(DataElement(0x00283002, "US", [4096, 0, 16]))  # LUT Descriptor: entries, first value, bits
    item.add(DataElement(0x00283006, "US", lut.tolist()))  # LUT Data
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=100, WindowWidth=10)
    ds.VOILUTSequence = [item]
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, lut[stored] / 65535, atol=1e-6)
    assert any(note.startswith("VOI LUT applied (first of 1") for note in decoded.notes)


def test_rescale_is_applied_before_the_window() -> None:
    stored = gradient(maximum=4000, dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=2000)
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, linear_window(stored * 2.0 - 1024, 0, 2000), atol=1e-5)
    assert "rescale applied: slope 2, intercept -1024" in decoded.notes


def test_signed_pixels_with_rescale_and_no_window_are_min_max_scaled() -> None:
    stored = (gradient(maximum=2000, dtype=np.uint16).astype(np.int16) - 1000).astype(np.int16)
    ds = dicom_dataset(stored, bits_stored=16, signed=True, RescaleSlope=1, RescaleIntercept=-1024)
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, (stored + 1000) / 2000, atol=1e-6)


def test_monochrome1_is_inverted_so_that_higher_means_brighter() -> None:
    stored = np.zeros((4, 4), dtype=np.uint8)
    stored[0, 0] = 255  # maximum attenuation code in MONOCHROME1 is displayed black
    decoded = read_image(dicom_bytes(dicom_dataset(stored, photometric="MONOCHROME1")))

    assert decoded.pixels[0, 0] == 0.0
    assert decoded.pixels[3, 3] == 1.0
    assert "MONOCHROME1 inverted" in decoded.notes


def test_monochrome1_with_window_inverts_after_windowing() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    ds = dicom_dataset(stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2000, WindowWidth=1000)
    decoded = read_image(dicom_bytes(ds))

    np.testing.assert_allclose(decoded.pixels, 1 - linear_window(stored, 2000, 1000), atol=1e-5)


def test_rle_lossless_decodes_to_the_same_pixels_as_uncompressed() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    uncompressed = read_image(dicom_bytes(ds))
    ds.compress(RLELossless)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    compressed = read_image(dicom_bytes(ds))

    np.testing.assert_array_equal(compressed.pixels, uncompressed.pixels)
    assert any("RLE Lossless" in note for note in compressed.notes)


def test_jpeg_2000_lossless_made_in_code_decodes_exactly() -> None:
    stored = gradient(maximum=4095, dtype=np.uint16)
    ds = dicom_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    uncompressed = read_image(dicom_bytes(ds))
    ds.compress(JPEG2000Lossless)
    compressed = read_image(dicom_bytes(ds))

    np.testing.assert_array_equal(compressed.pixels, uncompressed.pixels)


def test_jpeg_baseline_grey_in_dicom_matches_the_codestream() -> None:
    stored = gradient()
    jpeg = pil_bytes(Image.fromarray(stored), "JPEG", quality=90)
    decoded = read_image(encapsulated_dicom([jpeg], JPEGBaseline8Bit, Rows=48, Columns=64))

    expected = np.asarray(Image.open(io.BytesIO(jpeg)), dtype=np.float32) / 255
    np.testing.assert_allclose(decoded.pixels, expected, atol=1 / 255)


def test_jpeg_baseline_colour_in_dicom_is_converted_and_flagged() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:, :8] = (230, 20, 20)
    rgb[:, 8:] = (20, 20, 230)
    jpeg = pil_bytes(Image.fromarray(rgb), "JPEG", quality=95, subsampling=1)  # 4:2:2
    decoded = read_image(
        encapsulated_dicom(
            [jpeg], JPEGBaseline8Bit, photometric="YBR_FULL_422", SamplesPerPixel=3, PlanarConfiguration=0
        )
    )

    assert decoded.was_colour is True
    # BT.601 luma of (230, 20, 20) is 0.299*230 + 0.587*20 + 0.114*20 = 82.8 of 255.
    np.testing.assert_allclose(decoded.pixels[8, 2], 82.8 / 255, atol=6 / 255)


def test_rgb_dicom_with_grey_content_is_not_flagged() -> None:
    grey = gradient()
    decoded = read_image(dicom_bytes(dicom_dataset(np.stack([grey] * 3, axis=-1), photometric="RGB")))

    assert decoded.was_colour is False
    np.testing.assert_allclose(decoded.pixels, grey / 255, atol=1e-6)


def test_palette_colour_dicom_is_expanded() -> None:
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    ds = dicom_dataset(stored, photometric="PALETTE COLOR")
    for colour, entries in (("Red", [0, 65535, 0, 65535]), ("Green", [0, 0, 65535, 65535]), ("Blue", [0] * 4)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [4, 0, 16])
        ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(entries, dtype="<u2").tobytes())
    decoded = read_image(dicom_bytes(ds))

    assert decoded.was_colour is True
    np.testing.assert_allclose(decoded.pixels, [[0, 0.299], [0.587, 0.886]], atol=1e-4)


def test_file_without_preamble_reads_like_the_full_file() -> None:
    ds = dicom_dataset(gradient(), WindowCenter=128, WindowWidth=256)
    with_preamble = read_image(dicom_bytes(ds))
    without_preamble = read_image(dicom_bytes(ds, preamble=False))

    np.testing.assert_array_equal(without_preamble.pixels, with_preamble.pixels)


def test_bare_data_set_without_file_meta_is_read() -> None:
    stored = gradient()
    ds = dicom_dataset(stored)
    del ds.file_meta
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True)
    assert buffer.getvalue()[:2] == b"\x08\x00"  # starts directly with a group 0008 element

    np.testing.assert_allclose(read_image(buffer.getvalue()).pixels, stored / 255, atol=1e-6)


def test_shared_rsna_jpeg_baseline_cr() -> None:
    path = cxr_file("dicom", "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
    decoded = read_image(path.read_bytes())
    reference = pydicom.dcmread(path).pixel_array

    assert (decoded.width, decoded.height) == (1024, 1024)
    # 8-bit, no window in the file: shown as stored.
    np.testing.assert_allclose(decoded.pixels, reference / 255, atol=1e-6)
    assert any("JPEG Baseline" in note for note in decoded.notes)


def test_shared_nema_jpeg_2000_monochrome1_15_bit_cr() -> None:
    path = cxr_file("dicom", "nema_wg04_RG1_J2KI_CR_chest.dcm")
    decoded = read_image(path.read_bytes())
    ds = pydicom.dcmread(path)

    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert decoded.bits_stored == 15
    assert (decoded.width, decoded.height) == (1841, 1955)
    expected = 1 - linear_window(ds.pixel_array.astype(np.float64), 15000, 30000)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)
    # After inversion the spine (centre column) is brighter than the lung fields beside it.
    middle = decoded.pixels[600:1200]
    assert middle[:, 880:960].mean() > middle[:, 400:600].mean() + 0.05


def test_shared_uncompressed_dx() -> None:
    path = cxr_file("dicom", "nih_google_DX_00000002_000.dcm")
    decoded = read_image(path.read_bytes())

    np.testing.assert_allclose(decoded.pixels, pydicom.dcmread(path).pixel_array / 255, atol=1e-6)
    assert decoded.notes[0].startswith("DICOM DX, MONOCHROME2")


@pytest.mark.parametrize(
    "name",
    [
        "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        "nema_wg04_RG1_J2KI_CR_chest.dcm",
        "nih_google_DX_00000002_000.dcm",
    ],
)
def test_notes_never_carry_header_values(name: str) -> None:
    path = cxr_file("dicom", name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    notes = " ".join(read_image(path.read_bytes()).notes)

    for keyword in ("PatientName", "PatientID", "StudyDate", "InstitutionName", "StudyInstanceUID"):
        value = str(ds.get(keyword) or "")
        if value:
            assert value not in notes, keyword
