"""Importing the sample files that ship inside the pydicom package: every codec and layout we cannot encode.

The same MR and RGB images are stored in several transfer syntaxes; lossless encodings must give exactly
the display pixels of the uncompressed file. The files are read from the installed package, never fetched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from imaging.errors import ImageImportError
from imaging.read import read_image

SAMPLES = Path(pydicom.data.__file__).parent / "test_files"


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"pydicom sample {name} is not bundled with this pydicom version")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000"),
        ("MR_small_RLE.dcm", "RLE Lossless"),
        ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
        ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
    ],
)
def test_lossless_encodings_of_one_mr_image_display_identically(name: str, syntax: str) -> None:
    reference = read_image(sample("MR_small.dcm"))
    decoded = read_image(sample(name))

    assert syntax in decoded.notes[0]
    np.testing.assert_array_equal(decoded.pixels, reference.pixels)
    assert "VOI LUT applied: window centre 600, width 1600" in decoded.notes


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm"])
def test_jpeg_lossless_and_jpeg_2000_rgb_match_the_rle_file(name: str) -> None:
    reference = read_image(sample("SC_rgb_rle.dcm"))
    decoded = read_image(sample(name))

    assert decoded.was_colour is True
    np.testing.assert_array_equal(decoded.pixels, reference.pixels)


@pytest.mark.parametrize(
    ("name", "bits", "syntax"),
    [
        ("JPGExtended.dcm", 12, "JPEG Extended"),
        ("JPEGLSNearLossless_16.dcm", 16, "JPEG-LS Lossy"),
        ("693_J2KI.dcm", 14, "JPEG 2000"),
        ("image_dfl.dcm", 8, "Deflated"),
    ],
)
def test_other_codecs_decode(name: str, bits: int, syntax: str) -> None:
    decoded = read_image(sample(name))

    assert decoded.bits_stored == bits
    assert syntax in decoded.notes[0]
    assert decoded.pixels.min() >= 0 and decoded.pixels.max() <= 1 and decoded.pixels.std() > 0


@pytest.mark.parametrize("name", ["examples_palette.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_jpeg2k.dcm"])
def test_colour_dicoms_are_converted_and_flagged(name: str) -> None:
    decoded = read_image(sample(name))

    assert decoded.was_colour is True
    assert decoded.pixels.ndim == 2


def test_overlay_planes_are_not_drawn_and_the_report_says_so() -> None:
    decoded = read_image(sample("examples_overlay.dcm"))

    assert "overlay planes in the file were not drawn" in decoded.notes


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("MR_truncated.dcm", "truncated"),
        ("rtplan_truncated.dcm", "truncated"),
        ("examples_ybr_color.dcm", "multi_frame"),
        ("reportsi.dcm", "empty_image"),
        ("waveform_ecg.dcm", "empty_image"),
        # pydicom's own decoders cannot read this file either.
        ("JPEG-lossy.dcm", "corrupt"),
    ],
)
def test_unusable_samples_are_refused_with_the_right_code(name: str, code: str) -> None:
    with pytest.raises(ImageImportError) as caught:
        read_image(sample(name))
    assert caught.value.code == code
