"""The serving policy: how every study image, real or synthetic, becomes the one PNG a reader is shown.

One function, one set of choices, used for both classes so that nothing but the anatomy differs:

* resize so the longest side is ``size`` pixels, with Pillow's Lanczos filter (a = 3) on the float data.
  Pillow widens the kernel by the scale factor when shrinking, so downscaling averages over the source area
  (antialiasing) and upscaling interpolates; the same filter is used in both directions;
* optionally (``harmonise``, a study setting applied to every image alike) stretch the intensities: the 1st
  and 99th percentiles (``HARMONISE_PERCENTILES``) of the fitted image's content, i.e. without edge rows and
  columns entirely at the image's minimum (a black border, within half a grey level), become 0 and 1,
  linearly, clipped; unchanged if the 99th is not above the 1st. So neither a generator's pure-black pixels nor
  a real detector's black level or contrast separates the classes. Done on the fitted image, after any crop,
  working resolution and resize and before quantisation, so it costs one percentile pass over at most
  ``size`` x ``size`` pixels (the border is located on the image before resampling, where it is exact, and its
  edges are kept clear of the Lanczos kernel's reach);
* pad to a ``size`` x ``size`` canvas, image centred, padding black (0);
* quantise to 8 bits with rounding (``imaging.png.to_uint8``);
* encode as 8-bit grayscale PNG with no ancillary chunks (``imaging.png.encode_png_gray8``): only IHDR, IDAT
  and IEND, so no text, gamma, colour profile, physical size or time can reach the reader;
* uncompressed: the image data is written as zlib stored blocks (``fixed_length=True``), because the size of a
  compressed file follows noise and texture and would be a class giveaway (a reader separated real from
  synthetic images by Content-Length alone, AUC 0.81). Every served file of a display size is therefore
  ``imaging.png.served_png_length(size, size)`` bytes; HTTP compression of image/png responses must stay off
  for the same reason.

``describe_served`` measures the served files for the blinding audit, which checks that a trivial classifier
on these numbers cannot separate real from synthetic images.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from imaging.png import ZLIB_LEVEL, encode_png_gray8, read_png_chunks, to_uint8, up_filtered_scanlines
from imaging.read import sha256_hex

DEFAULT_DISPLAY_SIZE = 1024
RESAMPLING_FILTER = Image.Resampling.LANCZOS
# Radius of Pillow's Lanczos kernel (a = 3) in output pixels when shrinking, in input pixels when enlarging.
RESAMPLING_SUPPORT = 3

# Intensity harmonisation: these percentiles of an image's content become black (0) and white (1).
HARMONISE_LOW_PERCENTILE = 1.0
HARMONISE_HIGH_PERCENTILE = 99.0
HARMONISE_PERCENTILES = (HARMONISE_LOW_PERCENTILE, HARMONISE_HIGH_PERCENTILE)
# An edge row or column is black border when all its values are within half an 8-bit grey level of the image's
# minimum (what the served 8-bit image shows as one level), so that rounding does not hide a border.
BORDER_TOLERANCE = 0.5 / 255


@dataclass(frozen=True)
class ServedImage:
    """A served PNG with the facts the web layer needs: its bytes, digest and dimensions."""

    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class ServedImageStats:
    """File and intensity properties of a served PNG that could betray its class if they differed.

    Intensities are on a 0..1 scale. ``black_border_fraction`` is the share of the canvas in all-black rows
    and columns at the edges (the padding, plus any black border of the source); ``content_width`` and
    ``content_height`` are the size of what remains. ``sharpness`` is the mean absolute 4-neighbour Laplacian
    inside that content box, which separates upscaled (smooth) from native-resolution images.

    ``size_bytes`` and ``bits_per_pixel`` (8 x bytes / pixels) describe the file: served files are written
    uncompressed, so both are the same for every served image of a display size. ``compressed_bits_per_pixel``
    describes the content: 8 x the length of the Up-filtered scanlines compressed with zlib level 6, per pixel,
    i.e. what the served file size measured while served files were compressed (noise and texture), and what a
    reader can still compute from the pixels.
    """

    width: int
    height: int
    size_bytes: int
    bit_depth: int
    colour_type: int
    chunk_types: tuple[str, ...]
    mean: float
    std: float
    p1: float
    p99: float
    black_border_fraction: float
    content_width: int
    content_height: int
    sharpness: float
    bits_per_pixel: float
    compressed_bits_per_pixel: float

    def features(self) -> dict[str, float]:
        """The numeric properties as one flat mapping, in a fixed order, for a classifier."""
        return {name: float(value) for name, value in asdict(self).items() if name in FEATURE_NAMES}


FEATURE_NAMES: tuple[str, ...] = (
    "width",
    "height",
    "size_bytes",
    "mean",
    "std",
    "p1",
    "p99",
    "black_border_fraction",
    "content_width",
    "content_height",
    "sharpness",
    "bits_per_pixel",
    "compressed_bits_per_pixel",
)


def served_image_size(size: int = DEFAULT_DISPLAY_SIZE) -> tuple[int, int]:
    """(width, height) of every served image for a given display size: always a square canvas."""
    _check_size(size)
    return size, size


def fitted_size(width: int, height: int, size: int = DEFAULT_DISPLAY_SIZE) -> tuple[int, int]:
    """(width, height) of an image after scaling its longest side to ``size``, keeping the aspect ratio."""
    _check_size(size)
    if width <= 0 or height <= 0:
        raise ValueError(f"Cannot fit an empty {width} x {height} image.")
    longest = max(width, height)
    return max(1, round(width * size / longest)), max(1, round(height * size / longest))


def served_content_geometry(
    width: int,
    height: int,
    *,
    size: int = DEFAULT_DISPLAY_SIZE,
    crop_square: bool = False,
    working_resolution: int | None = None,
) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a `width` x `height` image inside its served canvas: the geometry of
    :func:`render_canvas` (crop to the centred square if asked, reduce to the working resolution, fit the longest
    side to `size`, centre), without rendering anything."""
    if crop_square:
        width = height = min(width, height)
    if working_resolution is not None and max(width, height) > working_resolution:
        width, height = fitted_size(width, height, working_resolution)
    width, height = fitted_size(width, height, size)
    return (size - width) // 2, (size - height) // 2, width, height


def normalise_for_serving(
    pixels: np.ndarray,
    *,
    size: int = DEFAULT_DISPLAY_SIZE,
    crop_square: bool = False,
    working_resolution: int | None = None,
    harmonise: bool = False,
) -> bytes:
    """Display pixels (2-D float in [0, 1]) -> the served PNG bytes; identical pixels give identical bytes.

    The PNG is uncompressed (``encode_png_gray8(..., fixed_length=True)``), so its length is
    ``served_png_length(size, size)`` whatever the image: a compressed file's size would betray its class.

    Three options remove giveaways between sources, applied identically to every image of a study:
    `crop_square` keeps the centred square of the image (no aspect ratio, no black bars),
    `working_resolution` first reduces images larger than it to that longest side (e.g. a generator's native
    512 px), so that native high-resolution images are not sharper than upscaled generated ones, and
    `harmonise` stretches the content's 1st..99th percentiles to black..white (:func:`harmonise_intensities`).
    """
    canvas = render_canvas(
        pixels, size=size, crop_square=crop_square, working_resolution=working_resolution, harmonise=harmonise
    )
    return encode_png_gray8(canvas, fixed_length=True)


def render_served_image(pixels: np.ndarray, *, size: int = DEFAULT_DISPLAY_SIZE) -> ServedImage:
    """:func:`normalise_for_serving` plus the digest and dimensions the web layer records."""
    png = normalise_for_serving(pixels, size=size)
    width, height = served_image_size(size)
    return ServedImage(png=png, sha256=sha256_hex(png), width=width, height=height)


def render_canvas(
    pixels: np.ndarray,
    *,
    size: int = DEFAULT_DISPLAY_SIZE,
    crop_square: bool = False,
    working_resolution: int | None = None,
    harmonise: bool = False,
) -> np.ndarray:
    """The served image as a ``size`` x ``size`` uint8 array, before PNG encoding (options as in
    :func:`normalise_for_serving`)."""
    _check_size(size)
    if working_resolution is not None:
        _check_size(working_resolution)
    image = np.asarray(pixels)
    if image.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got an array of shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"Cannot serve an empty image of shape {image.shape}.")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"Expected floating-point display values in [0, 1], got dtype {image.dtype}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("The image contains NaN or infinite values.")
    low, high = float(image.min()), float(image.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"Display values must lie in [0, 1]; got {low:g}..{high:g}.")

    if crop_square:
        image = _centre_square(image)
    # The black border is found before resampling, where its values are exact; Lanczos ringing and the blurred
    # step at its edge would otherwise count as dark content (see _fitted_content_box).
    border_box = _content_box(image) if harmonise else None
    source = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    height, width = image.shape
    spread = 0.0  # how far (fitted pixels) resampling may carry the border's edge into the content
    if working_resolution is not None and max(width, height) > working_resolution:
        scale = working_resolution / max(width, height)
        width, height = fitted_size(width, height, working_resolution)
        source = source.resize((width, height), resample=RESAMPLING_FILTER)
        spread = spread * scale + RESAMPLING_SUPPORT * max(1.0, scale)
    new_width, new_height = fitted_size(width, height, size)
    if (new_width, new_height) != (width, height):
        scale = size / max(width, height)
        source = source.resize((new_width, new_height), resample=RESAMPLING_FILTER)
        spread = spread * scale + RESAMPLING_SUPPORT * max(1.0, scale)
    fitted = np.asarray(source, dtype=np.float32)
    if border_box is not None:
        content = _fitted_content_box(border_box, image.shape, fitted.shape, spread)
        fitted = harmonise_intensities(fitted, content=content)
    resized = to_uint8(fitted)

    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas


def harmonise_intensities(image: np.ndarray, *, content: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Stretch a fitted image (2-D float, display values) so its content's 1st and 99th percentiles
    (``HARMONISE_PERCENTILES``) become 0 and 1, linearly, clipped to [0, 1].

    The content is the image without its black border: edge rows and columns whose values all lie within
    ``BORDER_TOLERANCE`` of the image's minimum (found after clipping to [0, 1]), unless ``content`` gives its
    (top, bottom, left, right) box, as :func:`render_canvas` does with the border it found before resampling.
    The stretch applies to the whole image, border included (which stays at or goes to 0). An image without
    content, or whose 99th percentile is not above its 1st (a flat image), is returned unchanged.
    """
    values = np.asarray(image, dtype=np.float32)
    top, bottom, left, right = _content_box(np.clip(values, 0.0, 1.0)) if content is None else content
    # The percentiles and the stretch use the values as resampled, before any clipping: clipping first would
    # cut the ringing below 0 of an image that reaches black but not that of one with a raised black level,
    # and the same texture would come out differently.
    region = values[top:bottom, left:right]
    if region.size == 0:
        return image
    low, high = (float(value) for value in np.percentile(region, HARMONISE_PERCENTILES))
    if high <= low:
        return image
    stretched = (values - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(stretched, 0.0, 1.0, out=stretched)


def _content_box(values: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``values`` without edge rows and columns within ``BORDER_TOLERANCE`` of its
    minimum; an empty box when every value is."""
    above = values > values.min() + BORDER_TOLERANCE
    rows = np.flatnonzero(above.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    columns = np.flatnonzero(above.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _fitted_content_box(
    box: tuple[int, int, int, int], source_shape: tuple[int, ...], fitted_shape: tuple[int, ...], spread: float
) -> tuple[int, int, int, int]:
    """A content box found on the source image, in the resampled (fitted) image's pixels: each side that is a
    border edge (not the image edge) moves inside the content by ``spread``, the reach of the resampling kernel,
    so that neither its ringing nor the blurred step from the border is taken for content. A box too small for
    that keeps its unshrunk size."""
    top, bottom, left, right = box
    if bottom <= top or right <= left:
        return 0, 0, 0, 0
    (source_height, source_width), (fitted_height, fitted_width) = source_shape, fitted_shape
    y_scale, x_scale = fitted_height / source_height, fitted_width / source_width
    for margin in (math.ceil(spread), 0):
        fitted_top = 0 if top == 0 else math.ceil(top * y_scale) + margin
        fitted_bottom = fitted_height if bottom == source_height else math.floor(bottom * y_scale) - margin
        fitted_left = 0 if left == 0 else math.ceil(left * x_scale) + margin
        fitted_right = fitted_width if right == source_width else math.floor(right * x_scale) - margin
        if fitted_bottom > fitted_top and fitted_right > fitted_left:
            return fitted_top, fitted_bottom, fitted_left, fitted_right
    return 0, 0, 0, 0


def pad_to_square(pixels: np.ndarray) -> np.ndarray:
    """A 2-D image padded with black (0) to a square whose side is its longest side, the image centred (an odd
    margin leaves the extra pixel on the right or at the bottom, as in :func:`render_canvas`).

    Nothing is resampled, cropped, flipped or rotated: column 0 of the image stays to the left of column 1, so a
    laterality marker keeps its side. The dtype is kept; a square image comes back as a copy of itself.
    """
    image = np.asarray(pixels)
    if image.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got an array of shape {image.shape}.")
    height, width = image.shape
    if height == 0 or width == 0:
        raise ValueError(f"Cannot pad an empty image of shape {image.shape}.")
    side = max(height, width)
    square = np.zeros((side, side), dtype=image.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = image
    return square


def _centre_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def describe_served(png_bytes: bytes) -> ServedImageStats:
    """Measure a served PNG (any PNG is accepted) for the blinding audit."""
    chunks = read_png_chunks(png_bytes)
    if not chunks or chunks[0].type != "IHDR":
        raise ValueError("The PNG stream does not start with an IHDR chunk.")
    bit_depth, colour_type = png_bytes[24], png_bytes[25]
    with Image.open(io.BytesIO(png_bytes), formats=["PNG"]) as image:
        gray = np.asarray(image.convert("L") if image.mode != "L" else image)
    height, width = gray.shape
    levels = gray.astype(np.float64) / 255.0

    rows = np.flatnonzero(gray.any(axis=1))
    columns = np.flatnonzero(gray.any(axis=0))
    if rows.size:
        top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    else:
        top = bottom = left = right = 0
    content = levels[top:bottom, left:right]
    content_area = content.size
    return ServedImageStats(
        width=width,
        height=height,
        size_bytes=len(png_bytes),
        bit_depth=bit_depth,
        colour_type=colour_type,
        chunk_types=tuple(chunk.type for chunk in chunks),
        mean=float(levels.mean()),
        std=float(levels.std()),
        p1=float(np.percentile(levels, 1)),
        p99=float(np.percentile(levels, 99)),
        black_border_fraction=1.0 - content_area / levels.size,
        content_width=int(right - left),
        content_height=int(bottom - top),
        sharpness=_mean_abs_laplacian(content),
        bits_per_pixel=8.0 * len(png_bytes) / (width * height),
        compressed_bits_per_pixel=_compressed_bits_per_pixel(gray),
    )


def _compressed_bits_per_pixel(gray: np.ndarray) -> float:
    """8 x the length of a uint8 image's Up-filtered scanlines compressed with zlib level 6, per pixel: how
    compressible its content is (noise and texture), the size a compressed served file would have had."""
    height, width = gray.shape
    return 8.0 * len(zlib.compress(up_filtered_scanlines(gray), ZLIB_LEVEL)) / (width * height)


def _mean_abs_laplacian(image: np.ndarray) -> float:
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    laplacian = 4.0 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
    return float(np.mean(np.abs(laplacian)))


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"The display size must be a positive integer, got {size!r}.")
