"""Synthetic images written as DICOM Secondary Capture: round trip, required attributes, honest labelling.

The attribute lists come from DICOM PS3.3: Table A.8-3 (modules of the Multi-frame Grayscale Byte SC Image
IOD), A.8.3.4 (its Image Pixel constraints), C.7.1.1, C.7.2.1, C.7.3.1, C.8.6.1, C.7.6.1, C.7.6.3, C.7.6.6,
C.8.6.3 and C.12.1 (the modules' Type 1 and Type 2 attributes).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from imaging.dicom_write import MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE, write_secondary_capture
from imaging.normalise import normalise_for_serving
from imaging.phantom import chest_phantom
from imaging.png import to_uint8
from imaging.read import read_image

TYPE_1 = {
    "SOP Common": ["SOPClassUID", "SOPInstanceUID"],
    "General Study": ["StudyInstanceUID"],
    "General Series": ["Modality", "SeriesInstanceUID"],
    "SC Equipment": ["ConversionType"],
    "Image Pixel": [
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelData",
    ],
    "Multi-frame": ["NumberOfFrames"],
    "SC Multi-frame Image": ["BurnedInAnnotation", "PresentationLUTShape", "RescaleIntercept", "RescaleSlope"],
}
TYPE_2 = {
    "Patient": ["PatientName", "PatientID", "PatientBirthDate", "PatientSex"],
    "General Study": ["StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"],
    "General Series": ["SeriesNumber"],
    "General Equipment": ["Manufacturer"],
    "General Image": ["InstanceNumber", "PatientOrientation"],
}


def synthetic_file(pixels: np.ndarray | None = None, **options: object) -> bytes:
    arguments: dict[str, object] = {
        "description": "Synthetic CXR demo",
        "derivation_description": "Stable Diffusion 2.1 + LoRA cxr-v3, seed 1234, guidance 4, 75 steps",
        "manufacturer_model": "sd21-lora-cxr-v3",
    }
    arguments.update(options)
    return write_secondary_capture(chest_phantom(1, size=64) if pixels is None else pixels, **arguments)


def parse(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_pixels_survive_the_round_trip() -> None:
    pixels = chest_phantom(7, size=128)
    ds = parse(synthetic_file(pixels))

    np.testing.assert_array_equal(ds.pixel_array, to_uint8(pixels))
    decoded = read_image(synthetic_file(pixels))
    np.testing.assert_array_equal(decoded.pixels, to_uint8(pixels) / np.float32(255))
    assert normalise_for_serving(decoded.pixels) == normalise_for_serving(to_uint8(pixels) / np.float32(255))


def test_uint8_pixels_are_stored_as_given_including_odd_sizes() -> None:
    stored = np.arange(15, dtype=np.uint8).reshape(3, 5)
    ds = parse(synthetic_file(stored))

    assert (ds.Rows, ds.Columns) == (3, 5)
    np.testing.assert_array_equal(ds.pixel_array, stored)


def test_file_is_part_10_with_explicit_vr_little_endian() -> None:
    data = synthetic_file()
    ds = parse(data)

    assert data[128:132] == b"DICM"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize(("module", "keywords"), TYPE_1.items())
def test_type_1_attributes_are_present_with_values(module: str, keywords: list[str]) -> None:
    ds = parse(synthetic_file())
    for keyword in keywords:
        assert keyword in ds, f"{module}: {keyword}"
        assert ds[keyword].value not in (None, "", b""), f"{module}: {keyword}"


@pytest.mark.parametrize(("module", "keywords"), TYPE_2.items())
def test_type_2_attributes_are_present(module: str, keywords: list[str]) -> None:
    ds = parse(synthetic_file())
    for keyword in keywords:
        assert keyword in ds, f"{module}: {keyword}"


def test_content_constraints_of_the_grayscale_byte_sc_iod() -> None:
    ds = parse(synthetic_file())

    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.2"
    assert ds.Modality == "OT"
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert "PlanarConfiguration" not in ds
    assert ds.NumberOfFrames == 1
    assert (ds.PresentationLUTShape, float(ds.RescaleIntercept), float(ds.RescaleSlope)) == ("IDENTITY", 0, 1)
    assert ds.RescaleType == "US"
    assert not any(element.tag.group & 0xFF00 == 0x6000 for element in ds)  # no Overlay Plane module


def test_synthetic_images_say_so_everywhere_a_person_would_look() -> None:
    ds = parse(synthetic_file(image_comments="cleaned of burned-in text"))

    assert ds.ConversionType == "SYN"
    assert ds.BurnedInAnnotation == "NO"
    assert ds.PatientName == "SYNTHETIC^IMAGE"
    assert ds.PatientID == "SYNTHETIC"
    assert ds.ImageComments == "SYNTHETIC IMAGE. cleaned of burned-in text"
    assert ds.DerivationDescription.startswith("Synthetic image.")
    assert "seed 1234" in ds.DerivationDescription
    assert "sd21-lora-cxr-v3" in (ds.ManufacturerModelName, ds.SecondaryCaptureDeviceManufacturerModelName)
    assert ds.StudyDescription == ds.SeriesDescription == "Synthetic CXR demo"
    assert ds.PatientIdentityRemoved == "YES"
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]


def test_derivation_that_already_says_synthetic_is_kept_verbatim() -> None:
    text = "Synthetic image from model roentgen-v2, seed 9"
    assert parse(synthetic_file(derivation_description=text)).DerivationDescription == text


def test_non_synthetic_derived_image_invents_no_identity() -> None:
    ds = parse(synthetic_file(synthetic=False, derivation_description="Burned-in text inpainted"))

    assert ds.ConversionType == "WSD"
    assert ds.PatientName == ""
    assert ds.PatientID == ""
    assert "SYNTHETIC" not in str(ds.get("ImageComments", ""))
    assert ds.DerivationDescription == "Burned-in text inpainted"


def test_every_file_gets_fresh_uids_unless_a_series_is_shared() -> None:
    first, second = parse(synthetic_file()), parse(synthetic_file())
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert first[keyword].value != second[keyword].value

    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    third = parse(synthetic_file(study_instance_uid=study, series_instance_uid=series, instance_number=2))
    assert (third.StudyInstanceUID, third.SeriesInstanceUID, third.InstanceNumber) == (study, series, 2)
    assert third.SOPInstanceUID != first.SOPInstanceUID
    for uid in (third.SOPInstanceUID, study, series):
        assert len(uid) <= 64 and all(part.isdigit() for part in uid.split("."))


def test_non_ascii_text_is_stored_as_utf8() -> None:
    ds = parse(synthetic_file(description="Thorax – synthetisch, Lunge ä"))

    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.StudyDescription == "Thorax – synthetisch, Lunge ä"


def test_ascii_only_files_declare_no_character_set() -> None:
    assert "SpecificCharacterSet" not in parse(synthetic_file())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"description": "x" * 65}, "StudyDescription is limited to 64"),
        ({"series_description": "a\\b"}, "backslash"),
        ({"derivation_description": "y" * 1025}, "DerivationDescription is limited to 1024"),
        ({"study_instance_uid": "1.2.abc"}, "not a valid DICOM UID"),
    ],
)
def test_invalid_text_and_uids_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_file(**options)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4, 3), dtype=np.float32),
        np.full((4, 4), 2.0, dtype=np.float32),
        np.zeros((4, 4), dtype=np.int32),
        np.zeros((0, 4), dtype=np.uint8),
    ],
    ids=["colour", "out-of-range", "int32", "empty"],
)
def test_invalid_pixels_are_refused(pixels: np.ndarray) -> None:
    with pytest.raises(ValueError):
        synthetic_file(pixels)
