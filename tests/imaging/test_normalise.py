"""The serving policy: every input, whatever its format, size or metadata, becomes the same kind of PNG."""

from __future__ import annotations

import csv
import hashlib
import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin

from imaging.normalise import (
    DEFAULT_DISPLAY_SIZE,
    FEATURE_NAMES,
    HARMONISE_PERCENTILES,
    describe_served,
    fitted_size,
    harmonise_intensities,
    normalise_for_serving,
    pad_to_square,
    render_canvas,
    render_served_image,
    served_image_size,
)
from imaging.phantom import chest_phantom
from imaging.png import encode_png_gray8, served_png_length, to_uint8, up_filtered_scanlines
from imaging.read import read_image, sha256_hex
from tests.imaging.builders import (
    CXR,
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


def test_pad_to_square_centres_the_image_on_black_and_never_flips_it() -> None:
    image = np.full((3, 6), 0.5, dtype=np.float32)
    image[:, 0] = 1.0  # a bright left edge, e.g. a laterality marker

    square = pad_to_square(image)

    # 6 x 3 padded to 6 x 6: (6 - 3) // 2 = 1 black row above, 2 below; columns untouched.
    assert square.shape == (6, 6) and square.dtype == np.float32
    assert (square[[0, 4, 5]] == 0).all()
    np.testing.assert_array_equal(square[1:4], image)
    assert pad_to_square(np.ones((5, 2), np.uint16))[:, 1:3].all()  # portrait: centred in columns 1..2
    assert not pad_to_square(np.ones((5, 2), np.uint16))[:, [0, 3, 4]].any()


def test_pad_to_square_copies_a_square_image_and_refuses_non_images() -> None:
    square = np.eye(3, dtype=np.float32)
    padded = pad_to_square(square)
    np.testing.assert_array_equal(padded, square)
    assert padded is not square
    with pytest.raises(ValueError):
        pad_to_square(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError):
        pad_to_square(np.zeros((0, 4)))


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
    assert stats.size_bytes == served_png_length(1024, 1024)
    assert stats.bits_per_pixel == pytest.approx(8 * len(png) / 1024**2)
    # Two flat halves compress to almost nothing, unlike the (uncompressed) file.
    assert stats.compressed_bits_per_pixel < 0.05 < 8 <= stats.bits_per_pixel
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


def test_compressed_bits_per_pixel_is_what_the_compressed_served_file_measured() -> None:
    smooth = render_canvas(chest_phantom(4, size=256), size=512)
    noisy = render_canvas(np.random.default_rng(2).random((512, 512)).astype(np.float32), size=512)
    for canvas in (smooth, noisy):
        stats = describe_served(encode_png_gray8(canvas, fixed_length=True))
        idat = zlib.compress(up_filtered_scanlines(canvas), 6)
        assert stats.compressed_bits_per_pixel == 8 * len(idat) / 512**2
        # The old served file: the same IDAT plus 57 bytes of signature, IHDR, IDAT and IEND framing.
        assert len(encode_png_gray8(canvas)) == len(idat) + 57
        assert stats.size_bytes == served_png_length(512, 512)
    # Texture and noise raise it, as they raised the compressed file's size.
    flat = describe_served(normalise_for_serving(gradient(512, 512).astype(np.float32) / 255, size=512))
    phantom = describe_served(encode_png_gray8(smooth, fixed_length=True))
    noise = describe_served(encode_png_gray8(noisy, fixed_length=True))
    assert flat.compressed_bits_per_pixel < phantom.compressed_bits_per_pixel < noise.compressed_bits_per_pixel
    assert flat.size_bytes == phantom.size_bytes == noise.size_bytes


# --- Fixed-length served files -----------------------------------------------------------------------------


def manifest() -> list[tuple[str, bool]]:
    """(file, is_synthetic) for every file of the shared CXR set, the class as MANIFEST.csv states it."""
    path = cxr_file("MANIFEST.csv")
    with path.open(newline="") as handle:
        return [(row["file"], row["category"].startswith("synthetic")) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def varied_pixels() -> dict[str, np.ndarray]:
    """Contents whose compressed files differ by a factor of hundreds, of several shapes."""
    rng = np.random.default_rng(8)
    pixels = {
        "zeros": np.zeros((600, 500), dtype=np.float32),
        "noise": rng.random((700, 700)).astype(np.float32),
        "gradient": gradient(512, 384).astype(np.float32) / 255,
        "phantom": chest_phantom(6, size=512),
    }
    for folder in ("real", "dicom", "synthetic"):
        paths = sorted(path for path in (CXR / folder).rglob("*") if path.suffix in {".png", ".jpg", ".dcm"})
        if not paths:
            pytest.skip(f"shared data not available: {CXR / folder}")
        pixels[f"{folder}_{paths[0].stem}"] = read_image(paths[0].read_bytes()).pixels
    return pixels


@pytest.mark.parametrize("size", [512, 1024, 601, 1023])
def test_every_served_file_of_a_display_size_has_the_same_length(
    varied_pixels: dict[str, np.ndarray], size: int
) -> None:
    lengths = {}
    for name, pixels in varied_pixels.items():
        for harmonise in (False, True):
            png = normalise_for_serving(pixels, size=size, harmonise=harmonise)
            lengths[name, harmonise] = len(png)
            assert chunk_types(png) == ["IHDR", "IDAT", "IEND"], name
    assert set(lengths.values()) == {served_png_length(size, size)}, lengths


def test_the_fixed_length_file_shows_exactly_the_pixels_of_the_compressed_one(
    varied_pixels: dict[str, np.ndarray],
) -> None:
    for name, pixels in varied_pixels.items():
        canvas = render_canvas(pixels, size=1024)
        served = normalise_for_serving(pixels, size=1024)
        # Pillow is an independent decoder of both encodings.
        with Image.open(io.BytesIO(served)) as fixed, Image.open(io.BytesIO(encode_png_gray8(canvas))) as compressed:
            np.testing.assert_array_equal(np.asarray(fixed), np.asarray(compressed), err_msg=name)
            np.testing.assert_array_equal(np.asarray(fixed), canvas, err_msg=name)
        assert render_served_image(pixels, size=1024).png == served


def size_auc(real: list[int], synthetic: list[int]) -> float:
    """P(a synthetic file is larger than a real one), ties counting half: the Mann-Whitney AUC."""
    pairs = [float(s > r) + 0.5 * (s == r) for r in real for s in synthetic]
    return sum(pairs) / len(pairs)


def test_served_file_size_no_longer_separates_real_from_synthetic_images() -> None:
    served: dict[bool, list[int]] = {False: [], True: []}
    compressed: dict[bool, list[int]] = {False: [], True: []}
    for name, synthetic in manifest():
        canvas = render_canvas(read_image(cxr_file(name).read_bytes()).pixels)
        served[synthetic].append(len(encode_png_gray8(canvas, fixed_length=True)))
        compressed[synthetic].append(len(encode_png_gray8(canvas)))
    assert len(served[False]) >= 30 and len(served[True]) >= 5

    assert size_auc(served[False], served[True]) == 0.5
    assert set(served[False]) | set(served[True]) == {served_png_length(1024, 1024)}
    # The compressed files would differ (and did give the class away), so the test can tell.
    assert size_auc(compressed[False], compressed[True]) != 0.5


# --- Intensity harmonisation ---------------------------------------------------------------------------------

# sha256 of render_canvas(...).tobytes() recorded with the code before harmonisation and fixed-length encoding
# existed (commit 20a91a4; Pillow 13.0.0, numpy 2.4.6). harmonise=False must keep them. If a Pillow upgrade
# changes its Lanczos resampling, re-record them from that commit.
CANVAS_DIGESTS_BEFORE_HARMONISATION = {
    "phantom": "b9aeffc39951520cb253a32f6ba703fec63ec7ef8ebbb3a2bea2bc19b261f37e",
    "mhh": "288f81d47e17a47b2a7d7ed9dcf3fa8c02ca7c76951ae1d52a9faa25d57e9700",
    "roentgen": "0d706bcb0bf79f626fb0775dec5f99c554aa2a766fd5d4b8d6643830df0bc263",
    "wikimedia": "5e50379a7b00eab2863deca2de1ab97dc9a497b3664964e6d01b583711e96bbc",
}


def test_without_harmonise_the_canvas_is_what_it_was_before_harmonisation_existed() -> None:
    def pixels(*parts: str) -> np.ndarray:
        return read_image(cxr_file(*parts).read_bytes()).pixels

    canvases = {
        "phantom": render_canvas(chest_phantom(5, size=256), size=512, harmonise=False),
        "mhh": render_canvas(pixels("real", "mhh_hannover", "mhh_00870a9c.png"), size=1024),
        "roentgen": render_canvas(pixels("synthetic", "roentgen_v2", "roentgenv2_demo0002.jpg"), size=1024),
        "wikimedia": render_canvas(
            pixels("real", "wikimedia", "wikimedia_Chest_Xray_PA_3-8-2010.png"),
            size=777,
            crop_square=True,
            working_resolution=512,
            harmonise=False,
        ),
    }
    digests = {name: hashlib.sha256(canvas.tobytes()).hexdigest() for name, canvas in canvases.items()}
    assert digests == CANVAS_DIGESTS_BEFORE_HARMONISATION


def fitted_region(canvas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The part of a served canvas the fitted image occupies (inside the padding), as 0..1 levels."""
    size = canvas.shape[0]
    width, height = fitted_size(shape[1], shape[0], size)
    top, left = (size - height) // 2, (size - width) // 2
    return canvas[top : top + height, left : left + width] / 255.0


def textured(low: float, high: float, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Values spread over low..high: a gradient with noise on it, like anatomy with quantum noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, shape[1])[None, :] * np.linspace(0.5, 1, shape[0])[:, None]
    values = np.clip(0.7 * ramp + 0.3 * rng.random(shape), 0, 1)
    return (low + (high - low) * values).astype(np.float32)


@pytest.mark.parametrize(("low", "high"), [(0.2, 0.6), (0.0, 0.9)])
@pytest.mark.parametrize("size", [400, 1024])  # served at its own size (no resampling) and upscaled
def test_harmonise_maps_the_content_percentiles_to_black_and_white(low: float, high: float, size: int) -> None:
    pixels = textured(low, high, (400, 320))
    before = fitted_region(render_canvas(pixels, size=size), pixels.shape)
    after = fitted_region(render_canvas(pixels, size=size, harmonise=True), pixels.shape)

    assert np.percentile(before, 99) - np.percentile(before, 1) < high - low
    p1, p99 = np.percentile(after, HARMONISE_PERCENTILES)
    assert p1 == pytest.approx(0, abs=1 / 255)
    assert p99 == pytest.approx(1, abs=1 / 255)
    # Linear: the order of the levels is kept.
    assert np.corrcoef(before.ravel(), after.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("size", [96, 512])
def test_harmonise_removes_black_level_and_contrast_differences_of_the_same_texture(size: int) -> None:
    # Resampling is linear, so a*x + b served with harmonise looks like x: a raised black level (real
    # detector) and a range down to pure black (generator) give the same image, ringing below 0 included.
    texture = np.random.default_rng(9).random((96, 96)).astype(np.float32)
    detector = (0.3 + 0.6 * texture).astype(np.float32)
    generator = (0.6 * texture).astype(np.float32)
    first = render_canvas(detector, size=size, harmonise=True).astype(int)
    second = render_canvas(generator, size=size, harmonise=True).astype(int)

    assert np.abs(first - second).max() <= 1
    assert abs(first.mean() - second.mean()) < 0.05
    assert abs(render_canvas(detector, size=size).mean() - render_canvas(generator, size=size).mean()) > 60


@pytest.mark.parametrize("border_level", [0.0, 0.05])
def test_a_black_border_does_not_change_the_stretch_of_the_content(border_level: float) -> None:
    content = textured(0.2, 0.6, (300, 240), seed=3)
    framed = np.full((400, 400), border_level, dtype=np.float32)
    framed[50:350, 80:320] = content

    np.testing.assert_array_equal(harmonise_intensities(framed)[50:350, 80:320], harmonise_intensities(content))
    # Served at its own size, so no resampling: the content is exactly the stretched content, the border black.
    canvas = render_canvas(framed, size=400, harmonise=True)
    np.testing.assert_array_equal(canvas[50:350, 80:320], to_uint8(harmonise_intensities(content)))
    canvas[50:350, 80:320] = 0
    assert not canvas.any()


@pytest.mark.parametrize("border_level", [0.0, 0.05])
@pytest.mark.parametrize("working_resolution", [None, 300])
def test_a_black_border_is_left_out_of_the_stretch_after_resampling_too(
    border_level: float, working_resolution: int | None
) -> None:
    framed = np.full((450, 400), border_level, dtype=np.float32)
    framed[50:400, 60:340] = textured(0.2, 0.6, (350, 280), seed=4)
    canvas = render_canvas(framed, size=1024, working_resolution=working_resolution, harmonise=True)
    # The content's box on the canvas (a few pixels inside, clear of Lanczos ringing at its edges).
    scale = 1024 / 450
    top, bottom = round(50 * scale) + 4, round(400 * scale) - 4
    left = (1024 - round(400 * scale)) // 2 + round(60 * scale) + 4
    right = (1024 - round(400 * scale)) // 2 + round(340 * scale) - 4
    p1, p99 = np.percentile(canvas[top:bottom, left:right] / 255, HARMONISE_PERCENTILES)

    # Had the border (40 % of the image) counted, its zeros would be the 1st percentile and 0.2 would stay grey.
    assert p1 < 2 / 255
    assert p99 > 253 / 255


def test_harmonise_keeps_the_padding_black() -> None:
    pixels = textured(0.3, 0.5, (100, 200))
    canvas = render_canvas(pixels, size=256, harmonise=True)

    assert not canvas[:64].any() and not canvas[192:].any()
    assert canvas[64:192].max() == 255
    portrait = render_canvas(np.full((200, 100), 0.8, dtype=np.float32), size=256, harmonise=True)
    assert not portrait[:, :64].any() and not portrait[:, 192:].any()


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((64, 48), 0.4, dtype=np.float32),
        np.zeros((64, 64), dtype=np.float32),
        np.pad(np.full((60, 60), 0.7, dtype=np.float32), 2),  # a flat image in a black frame
    ],
    ids=["flat", "black", "flat-framed"],
)
@pytest.mark.parametrize("size", [64, 128, 50])
def test_harmonise_leaves_images_without_a_percentile_range_unchanged(pixels: np.ndarray, size: int) -> None:
    # Also when resampled: the ringing at the frame's edge is not taken for a range of the content.
    np.testing.assert_array_equal(
        render_canvas(pixels, size=size, harmonise=True), render_canvas(pixels, size=size, harmonise=False)
    )


def test_harmonise_applies_after_crop_and_working_resolution() -> None:
    wide = textured(0.25, 0.55, (600, 1000), seed=5)
    canvas = render_canvas(wide, size=256, crop_square=True, working_resolution=300, harmonise=True)
    p1, p99 = np.percentile(canvas / 255, HARMONISE_PERCENTILES)

    assert p1 == pytest.approx(0, abs=1 / 255) and p99 == pytest.approx(1, abs=1 / 255)
    with Image.open(
        io.BytesIO(normalise_for_serving(wide, size=256, crop_square=True, working_resolution=300, harmonise=True))
    ) as image:
        np.testing.assert_array_equal(np.asarray(image), canvas)
