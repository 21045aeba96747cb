"""The serving policy: every input, whatever its format, size or metadata, becomes the same kind of PNG."""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin

from imaging.normalise import (
    DEFAULT_DISPLAY_SIZE,
    FEATURE_NAMES,
    describe_served,
    fitted_size,
    normalise_for_serving,
    render_canvas,
    render_served_image,
    served_image_size,
)
from imaging.phantom import chest_phantom
from imaging.read import read_image, sha256_hex
from tests.imaging.builders import (
    INSTITUTION,
    PATIENT_ID,
    PATIENT_NAME,
    STUDY_DATE,
    chunk_types,
    cxr_file,
    dicom_bytes,
    dicom_dataset,
    gradient,
    idat_payload,
    pil_bytes,
)

DICOM_NAMES = [
    "rsna_pneumonia_CR_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
    "nema_wg04_RG1_J2KI_CR_chest.dcm",
    "nih_google_DX_00000002_000.dcm",
]


def png_full_of_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"Patient {PATIENT_NAME}, file chest_doe_jane.png")
    info.add_itxt("Author", INSTITUTION)
    info.add_text("Software", "generator-x seed 42", zip=True)
    image = Image.fromarray(gradient(300, 200))
    return pil_bytes(image, "PNG", pnginfo=info, dpi=(150, 150), icc_profile=b"\x00" * 128)


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x013B] = PATIENT_NAME  # Artist
    exif[0x0132] = "2019:01:01 10:00:00"  # DateTime
    return pil_bytes(Image.fromarray(gradient(333, 517)), "JPEG", exif=exif, quality=92)


def planted_dicom() -> bytes:
    ds = dicom_dataset(gradient(400, 300, maximum=4095, dtype=np.uint16), bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    return dicom_bytes(ds)


def served_inputs() -> dict[str, bytes]:
    """Real and synthetic inputs of every format and several sizes and aspect ratios."""
    inputs = {
        "real_png_1024": cxr_file("real", "nih_cxr14", "nih_00000001_000.png").read_bytes(),
        "real_png_640x524": cxr_file("real", "mhh_hannover", "mhh_00870a9c.png").read_bytes(),
        "real_png_gamma_srgb_phys": cxr_file("real", "wikimedia", "wikimedia_Chest_Xray_PA_3-8-2010.png").read_bytes(),
        "synthetic_jpeg_512": cxr_file("synthetic", "roentgen_v2", "roentgenv2_demo0002.jpg").read_bytes(),
        "png_with_metadata": png_full_of_metadata(),
        "jpeg_with_exif": jpeg_with_exif(),
        "png_16_bit": pil_bytes(Image.fromarray(gradient(90, 70, maximum=65535, dtype=np.uint16)), "PNG"),
        "dicom_planted": planted_dicom(),
    }
    for name in DICOM_NAMES:
        inputs[name] = cxr_file("dicom", name).read_bytes()
    return inputs


def ihdr_fields(png: bytes) -> tuple[int, ...]:
    assert png[12:16] == b"IHDR"
    return struct.unpack(">IIBBBBB", png[16:29])


@pytest.fixture(scope="module")
def served() -> dict[str, bytes]:
    return {name: normalise_for_serving(read_image(data).pixels) for name, data in served_inputs().items()}


def test_every_served_image_has_the_same_format_and_only_the_critical_chunks(served: dict[str, bytes]) -> None:
    for name, png in served.items():
        assert chunk_types(png) == ["IHDR", "IDAT", "IEND"], name
        # width, height, bit depth 8, colour type 0 (grey), compression 0, filter 0, no interlace
        assert ihdr_fields(png) == (1024, 1024, 8, 0, 0, 0, 0), name
        with Image.open(io.BytesIO(png)) as image:
            assert image.mode == "L"
            assert image.size == served_image_size()
            assert image.info == {}, name
            assert len(image.getexif()) == 0


def test_served_phantom_matches_the_served_files(served: dict[str, bytes]) -> None:
    png = normalise_for_serving(chest_phantom(3, size=512, style="b"))

    assert chunk_types(png) == ["IHDR", "IDAT", "IEND"]
    assert ihdr_fields(png) == ihdr_fields(served["real_png_1024"])


def test_no_header_value_or_file_name_reaches_the_served_bytes(served: dict[str, bytes]) -> None:
    planted = [PATIENT_NAME, "Doe^Jane", PATIENT_ID, INSTITUTION, STUDY_DATE, "chest_doe_jane", "generator-x"]
    for name in DICOM_NAMES:
        ds = pydicom.dcmread(cxr_file("dicom", name), stop_before_pixels=True)
        planted += [
            str(ds.get(keyword))
            for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID", "InstitutionName")
            if ds.get(keyword)
        ]
    planted += [name.removesuffix(".dcm") for name in DICOM_NAMES] + ["nih_00000001_000", "roentgenv2_demo0002"]

    for name, png in served.items():
        stream = idat_payload(png)
        for value in planted:
            assert value.encode() not in png, (name, value)
            assert value.encode() not in stream, (name, value)


def test_served_bytes_are_deterministic() -> None:
    data = cxr_file("synthetic", "roentgen_v2", "roentgenv2_demo0003.jpg").read_bytes()
    first = normalise_for_serving(read_image(data).pixels)
    second = normalise_for_serving(read_image(data).pixels)
    phantom = chest_phantom(11)

    assert first == second
    assert normalise_for_serving(phantom) == normalise_for_serving(phantom.copy())
    assert normalise_for_serving(phantom) != normalise_for_serving(chest_phantom(12))


def test_served_png_decodes_to_the_rendered_canvas() -> None:
    pixels = chest_phantom(5, size=256)
    canvas = render_canvas(pixels, size=512)
    with Image.open(io.BytesIO(normalise_for_serving(pixels, size=512))) as image:
        np.testing.assert_array_equal(np.asarray(image), canvas)


def test_landscape_image_is_centred_with_black_bars_above_and_below() -> None:
    canvas = render_canvas(np.ones((100, 200), dtype=np.float32))

    # 200 x 100 scaled to 1024 x 512, placed at rows (1024 - 512) / 2 = 256 .. 767.
    assert (canvas[256:768] == 255).all()
    assert (canvas[:256] == 0).all()
    assert (canvas[768:] == 0).all()


def test_portrait_image_is_centred_with_black_bars_left_and_right() -> None:
    canvas = render_canvas(np.ones((200, 100), dtype=np.float32), size=256)

    assert (canvas[:, 64:192] == 255).all()
    assert (canvas[:, :64] == 0).all()
    assert (canvas[:, 192:] == 0).all()


def test_small_images_are_upscaled_to_the_display_size() -> None:
    assert fitted_size(100, 37) == (1024, 379)  # 37 * 1024 / 100 = 378.9
    canvas = render_canvas(np.ones((37, 100), dtype=np.float32))
    rows = np.flatnonzero(canvas.any(axis=1))

    assert (rows[0], rows[-1] + 1) == ((1024 - 379) // 2, (1024 - 379) // 2 + 379)


def test_downscaling_averages_instead_of_aliasing() -> None:
    # Alternating black and white columns: point sampling at half size would give all-black or all-white.
    stripes = np.tile(np.array([0.0, 1.0], dtype=np.float32), (2048, 1024))
    canvas = render_canvas(stripes)

    inner = canvas[16:-16, 16:-16].astype(int)
    assert abs(inner.mean() - 127.5) < 1
    assert inner.max() - inner.min() <= 2


def test_quantisation_rounds_to_the_nearest_level() -> None:
    levels = np.array([[0.0, 0.5 / 255, 0.49 / 255, 1.0, 254.51 / 255]], dtype=np.float32)
    canvas = render_canvas(np.repeat(levels, 5, axis=0), size=5)

    np.testing.assert_array_equal(canvas[2], [0, 0, 0, 255, 255])


@pytest.mark.parametrize(
    ("pixels", "error"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), ValueError),
        (np.zeros((0, 4), dtype=np.float32), ValueError),
        (np.full((4, 4), np.nan, dtype=np.float32), ValueError),
        (np.full((4, 4), 1.5, dtype=np.float32), ValueError),
        (np.zeros((4, 4), dtype=np.uint8), TypeError),
    ],
    ids=["colour", "empty", "nan", "out-of-range", "integer"],
)
def test_invalid_pixels_are_refused(pixels: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        normalise_for_serving(pixels)


def test_served_image_size_is_a_square_of_the_display_size() -> None:
    assert DEFAULT_DISPLAY_SIZE == 1024
    assert served_image_size() == (1024, 1024)
    assert served_image_size(512) == (512, 512)
    with pytest.raises(ValueError):
        served_image_size(0)


def test_render_served_image_reports_digest_and_size() -> None:
    served = render_served_image(chest_phantom(2, size=128), size=256)

    assert served.sha256 == sha256_hex(served.png)
    assert (served.width, served.height) == (256, 256)
    assert served.png == normalise_for_serving(chest_phantom(2, size=128), size=256)


def test_describe_served_measures_a_known_image() -> None:
    png = normalise_for_serving(np.ones((100, 200), dtype=np.float32))
    stats = describe_served(png)

    assert (stats.width, stats.height, stats.bit_depth, stats.colour_type) == (1024, 1024, 8, 0)
    assert stats.size_bytes == len(png)
    assert stats.chunk_types == ("IHDR", "IDAT", "IEND")
    assert stats.black_border_fraction == pytest.approx(0.5)
    assert (stats.content_width, stats.content_height) == (1024, 512)
    assert stats.mean == pytest.approx(0.5)
    assert stats.std == pytest.approx(0.5)
    assert (stats.p1, stats.p99) == (0.0, 1.0)
    assert stats.sharpness == 0.0
    assert stats.bits_per_pixel == pytest.approx(8 * len(png) / 1024**2)
    assert tuple(stats.features()) == FEATURE_NAMES


def test_describe_served_sees_upscaled_images_as_smoother() -> None:
    native = chest_phantom(4, size=1024)
    upscaled = chest_phantom(4, size=256)

    sharp = describe_served(normalise_for_serving(native)).sharpness
    smooth = describe_served(normalise_for_serving(upscaled)).sharpness
    assert smooth < sharp / 2


def test_describe_served_reports_ancillary_chunks_of_foreign_pngs() -> None:
    stats = describe_served(png_full_of_metadata())

    assert stats.chunk_types[0] == "IHDR"
    assert {"iCCP", "pHYs", "tEXt", "iTXt", "zTXt"} <= set(stats.chunk_types)


def test_crop_square_keeps_the_centred_square_and_leaves_no_border():
    from imaging.normalise import describe_served, normalise_for_serving

    wide = np.full((300, 500), 0.6, dtype=np.float32)
    wide[:, :100] = 0.1  # the left 100 columns are cut by the centred 300 x 300 crop
    png = normalise_for_serving(wide, size=256, crop_square=True)
    stats = describe_served(png)
    assert stats.black_border_fraction == 0
    assert abs(stats.mean - 0.6) < 0.01


def test_working_resolution_makes_high_resolution_images_as_smooth_as_upscaled_ones():
    """A 1024-px textured image reduced to 512 px before display loses the fine detail a 512-px source never had."""
    from PIL import Image

    from imaging.normalise import describe_served, normalise_for_serving

    rng = np.random.default_rng(0)
    small = (0.25 + 0.5 * rng.random((512, 512))).astype(np.float32)
    # The same scene at twice the resolution, with detail finer than 512 px can hold.
    doubled = np.asarray(Image.fromarray(small).resize((1024, 1024), Image.Resampling.LANCZOS))
    native = np.clip(doubled + rng.normal(0, 0.08, (1024, 1024)), 0, 1).astype(np.float32)
    sharp = describe_served(normalise_for_serving(native, size=1024)).sharpness
    matched = describe_served(normalise_for_serving(native, size=1024, working_resolution=512)).sharpness
    upscaled = describe_served(normalise_for_serving(small, size=1024)).sharpness
    assert matched < 0.6 * sharp
    # Much closer to the upscaled 512-px source than the native image was (not identical: Lanczos twice smooths).
    assert abs(matched - upscaled) < 0.5 * abs(sharp - upscaled)
    # Images already at or below the working resolution are unchanged by it.
    assert normalise_for_serving(small, size=1024, working_resolution=512) == normalise_for_serving(small, size=1024)
