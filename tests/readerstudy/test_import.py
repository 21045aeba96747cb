"""Case import through the service: every format, every bad-file kind, duplicates, and no half-written cases."""

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from imaging.png import read_png_chunks
from readerstudy.imports import IncomingFile, cases_import
from readerstudy.models import Case
from tests.conftest import CXR_DIR, jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db


def dicom_bytes(*, rows=64, columns=48, photometric="MONOCHROME2", truncate=False, transfer_syntax=None) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-12345"
    ds.InstitutionName = "St Example Hospital"
    ds.StudyDate = "20200102"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = (np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns) * 7) % 4096
    ds.PixelData = pixels.tobytes()
    if transfer_syntax is not None:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([pixels.tobytes()])
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    return data[: len(data) - 1000] if truncate else data


def media_files() -> set[str]:
    root = Path(default_storage.location)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_every_supported_format_imports(study):
    files = [
        IncomingFile("gray.png", png_bytes(501)),
        IncomingFile("photo.jpg", jpeg_bytes(2)),
        IncomingFile("scan.dcm", dicom_bytes()),
        IncomingFile("inverted.dcm", dicom_bytes(photometric="MONOCHROME1", rows=40)),
    ]
    for path in [
        CXR_DIR / "dicom" / "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        CXR_DIR / "dicom" / "nema_wg04_RG1_J2KI_CR_chest.dcm",
        CXR_DIR / "synthetic" / "roentgen_v2" / "roentgenv2_demo0002.jpg",
    ]:
        files.append(IncomingFile(path.name, path.read_bytes()))
    report = cases_import(study=study, files=files, truth="real")
    assert [row.status for row in report.rows] == ["imported"] * len(files), report.to_dict()
    formats = Case.objects.filter(pk__in=[r.case_id for r in report.rows]).values_list("original_format", flat=True)
    assert set(formats) == {"png", "jpeg", "dicom"}


@pytest.mark.parametrize(
    ("name", "data", "code_words"),
    [
        ("notes.txt", b"Patient notes, not an image\n" * 20, "not"),
        ("archive.zip", b"PK\x03\x04" + os.urandom(200), "not"),
        ("truncated.png", png_bytes(3)[:300], "truncated"),
        ("truncated.dcm", dicom_bytes(truncate=True), "truncated"),
        ("empty.png", b"", "empty"),
    ],
)
def test_bad_files_get_a_clear_error_and_the_rest_of_the_batch_imports(study, name, data, code_words):
    before_cases = Case.objects.count()
    report = cases_import(
        study=study, files=[IncomingFile(name, data), IncomingFile("good.png", png_bytes(77))], truth="real"
    )
    bad, good = report.rows
    assert bad.status == "error" and bad.message
    assert code_words in bad.message.lower()
    assert good.status == "imported"
    assert Case.objects.count() == before_cases + 1


def test_decompression_bomb_is_refused_before_decoding(study):
    # A PNG whose header declares 60,000 x 60,000 pixels: refused from the header.
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")
    report = cases_import(study=study, files=[IncomingFile("bomb.png", bytes(data))], truth="real")
    assert report.rows[0].status == "error"
    assert "pixels" in report.rows[0].message.lower()


@pytest.mark.parametrize(
    ("transfer_syntax", "words"),
    [
        ("1.2.840.10008.1.2.4.100", "video"),  # MPEG2 Main Profile / Main Level
        ("1.2.840.10008.1.2.4.94", "transfer syntax"),  # JPIP referenced: pixels live on a server
    ],
)
def test_unsupported_transfer_syntax_is_refused(study, transfer_syntax, words):
    data = dicom_bytes(transfer_syntax=transfer_syntax)
    report = cases_import(study=study, files=[IncomingFile("odd.dcm", data)], truth="real")
    assert report.rows[0].status == "error"
    assert words in report.rows[0].message.lower()


def test_zero_sized_image_is_refused(study):
    report = cases_import(study=study, files=[IncomingFile("zero.dcm", dicom_bytes(rows=0))], truth="real")
    assert report.rows[0].status == "error"


def test_colour_images_are_converted_and_flagged(study):
    report = cases_import(study=study, files=[IncomingFile("colour.png", png_bytes(5, mode="RGB"))], truth="real")
    row = report.rows[0]
    assert row.status == "imported" and row.flagged
    assert Case.objects.get(pk=row.case_id).was_colour
    assert "colour" in report.summary()


def test_duplicates_within_a_study_are_refused_but_allowed_across_studies(make_study, coordinator):
    first = make_study(real=0, synthetic=0, name="A")
    second = make_study(real=0, synthetic=0, name="B")
    data = png_bytes(11)
    assert cases_import(study=first, files=[IncomingFile("a.png", data)], truth="real").rows[0].status == "imported"
    again = cases_import(study=first, files=[IncomingFile("copy.png", data)], truth="synthetic").rows[0]
    assert again.status == "duplicate"
    assert cases_import(study=second, files=[IncomingFile("a.png", data)], truth="real").rows[0].status == "imported"


def test_original_is_kept_privately_with_its_hash_and_served_copy_has_no_metadata(study):
    data = dicom_bytes()
    row = cases_import(study=study, files=[IncomingFile("Doe_Jane_MRN-12345.dcm", data)], truth="real").rows[0]
    case = Case.objects.get(pk=row.case_id)
    import hashlib

    assert case.original_sha256 == hashlib.sha256(data).hexdigest()
    assert case.original.read() == data
    assert "Doe" not in case.original.name and "MRN" not in case.original.name
    served = case.image.read()
    assert [chunk.type for chunk in read_png_chunks(served)] == ["IHDR", "IDAT", "IEND"]
    for secret in (b"Doe", b"MRN-12345", b"Example Hospital", b"20200102"):
        assert secret not in served
    assert "Doe" not in case.image.name


def test_a_failure_while_saving_leaves_no_row_and_no_file(study, monkeypatch):
    files_before = media_files()
    cases_before = Case.objects.count()

    def broken_save(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Case, "save", broken_save)
    with pytest.raises(RuntimeError):
        cases_import(study=study, files=[IncomingFile("x.png", png_bytes(123))], truth="real")
    assert Case.objects.count() == cases_before
    assert media_files() == files_before


def test_unknown_truth_is_refused(study):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        cases_import(study=study, files=[IncomingFile("x.png", png_bytes(502))], truth="fake")


def test_serving_options_apply_to_every_case_and_are_fixed_once_cases_exist(make_study):
    from django.core.exceptions import ValidationError

    from imaging.normalise import describe_served
    from readerstudy.services import study_update

    study = make_study(real=0, synthetic=0, crop_to_square=True, working_resolution=256)
    row = cases_import(study=study, files=[IncomingFile("wide.png", png_bytes(601, size=(400, 200)))], truth="real")
    stats = describe_served(Case.objects.get(pk=row.rows[0].case_id).image.read())
    assert stats.black_border_fraction == 0  # cropped to the centred square, no bars
    with pytest.raises(ValidationError) as caught:
        study_update(study=study, crop_to_square=False)
    assert "crop_to_square" in caught.value.message_dict
    study_update(study=study, name="Renamed", crop_to_square=True)  # unchanged serving settings are fine
